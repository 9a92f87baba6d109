/**
 * Who may do what on the embedded broker (issue 14): the rules, injected into aedes as its
 * `authenticate`, `authorizePublish` and `authorizeSubscribe` handlers. The same rules are
 * written for Mosquitto by `osprey fleet broker-config` (cli/broker-config.ts) from the constants
 * here, so both brokers enforce one table (docs/SECURITY.md ("MQTT: identities and topic rules")).
 *
 * - The fleet: username `osprey-fleet`, client id `osprey-fleet-…`, password the fleet's broker
 *   secret. It may publish and subscribe anything.
 * - Edge X: username X, password its edge credential (`ospe_…`), client id exactly X (so no one
 *   else can take its session over). It publishes only `osprey/v1/edges/X/{state,results,
 *   telemetry,events}` (retained only on `state`) and subscribes only to its own `{ack,desired}`.
 * - Everyone else is refused at CONNECT.
 */
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Client, AuthenticateError, AedesOptions } from 'aedes';
import type { Logger } from 'pino';
import { TOPIC_ROOT, isValidEdgeId, parseEdgeTopic, type MessageKind } from '../protocol/topics.js';
import type { EdgeCredentialRecord } from './identity-store.js';

/** The fleet manager's MQTT username (one per fleet; Mosquitto's ACL names it). */
export const FLEET_MQTT_USERNAME = 'osprey-fleet';
/** Client ids of the fleet manager start with this (the fleet makes `osprey-fleet-<random>`). */
export const FLEET_CLIENT_ID_PREFIX = 'osprey-fleet-';
/** What an edge publishes on its own topics. */
export const EDGE_PUBLISH_KINDS: readonly MessageKind[] = ['state', 'results', 'telemetry', 'events'];
/** What an edge subscribes to on its own topics; only the fleet publishes these. */
export const EDGE_SUBSCRIBE_KINDS: readonly MessageKind[] = ['ack', 'desired'];
/** The one kind an edge publishes retained (its state, and its will). */
export const EDGE_RETAINED_KINDS: readonly MessageKind[] = ['state'];

/** Who a connected client is. */
export type BrokerIdentity = { kind: 'fleet' } | { kind: 'edge'; edgeId: string; credentialId: string };

/** Why edge `edgeId` may not publish this; null when it may. */
export function edgePublishRefusal(edgeId: string, topic: string, retain: boolean): string | null {
  const t = parseEdgeTopic(topic);
  if (!t || t.edgeId !== edgeId) return 'an edge publishes only on its own topics';
  if (!EDGE_PUBLISH_KINDS.includes(t.kind)) return `an edge does not publish ${t.kind}`;
  if (retain && !EDGE_RETAINED_KINDS.includes(t.kind)) return `an edge does not retain ${t.kind}`;
  return null;
}

/** True when edge `edgeId` may subscribe to this filter: exactly its own ack or desired topic. */
export function edgeMaySubscribe(edgeId: string, filter: string): boolean {
  const t = parseEdgeTopic(filter);
  return t !== null && t.edgeId === edgeId && EDGE_SUBSCRIBE_KINDS.includes(t.kind);
}

/** A username that may be an edge's: a valid edge id, and not the fleet's name or client ids. */
export function isEdgeUsername(username: string): boolean {
  return isValidEdgeId(username) && username !== FLEET_MQTT_USERNAME && !username.startsWith(FLEET_CLIENT_ID_PREFIX);
}

export interface BrokerAuthOptions {
  /** The password of `osprey-fleet` (the embedded broker's secret, made at each fleet start). */
  fleetSecret: string;
  /** The edge credential record when the credential is valid now (identity.resolveEdgeCredential). */
  resolveEdgeCredential(credential: string): Promise<EdgeCredentialRecord | null>;
  logger: Logger;
  /** Further checks of an authorized publish (the retained caps); a refusal in one line, or null. */
  checkPublish?: (clientId: string, topic: string, retain: boolean, payloadBytes: number) => string | null;
}

export interface BrokerAuth {
  authenticate: NonNullable<AedesOptions['authenticate']>;
  authorizePublish: NonNullable<AedesOptions['authorizePublish']>;
  authorizeSubscribe: NonNullable<AedesOptions['authorizeSubscribe']>;
  /** Who an authenticated client is (undefined before it authenticated). */
  identityOf(client: Client): BrokerIdentity | undefined;
}

const sha256 = (s: string | Buffer) => createHash('sha256').update(s).digest();

function authError(returnCode: 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/** The rules as aedes handlers. Refusals log one line (client id, username, topic: never a password). */
export function createBrokerAuth(opts: BrokerAuthOptions): BrokerAuth {
  const log = opts.logger;
  const fleetDigest = sha256(opts.fleetSecret);
  const identities = new WeakMap<Client, BrokerIdentity>();

  return {
    identityOf: (client) => identities.get(client),

    authenticate(client, username, password, done) {
      const refuse = (returnCode: 4 | 5, why: string) => {
        // A username that is no identity's might be a secret pasted in the wrong field: not logged.
        log.warn({ clientId: loggable(client.id), username: loggable(username), ip: remoteAddress(client) }, `mqtt connect refused: ${why}`);
        done(authError(returnCode, why), false);
      };
      if (typeof username !== 'string' || !password) return refuse(5, 'no username or password');
      if (username === FLEET_MQTT_USERNAME) {
        if (!client.id.startsWith(FLEET_CLIENT_ID_PREFIX)) return refuse(5, `the fleet's client id starts with ${FLEET_CLIENT_ID_PREFIX}`);
        // Equal-length digests: the comparison takes the same time whatever was sent.
        if (!timingSafeEqual(sha256(password), fleetDigest)) return refuse(4, 'bad username or password');
        identities.set(client, { kind: 'fleet' });
        return done(null, true);
      }
      if (!isEdgeUsername(username)) return refuse(4, 'bad username or password');
      if (client.id !== username) return refuse(5, 'an edge connects with its edge id as client id');
      opts.resolveEdgeCredential(password.toString('utf8')).then(
        (cred) => {
          if (!cred || cred.edgeId !== username) return refuse(4, 'bad username or password');
          identities.set(client, { kind: 'edge', edgeId: cred.edgeId, credentialId: cred.id });
          done(null, true);
        },
        (err: unknown) => {
          log.error({ err, clientId: client.id }, 'mqtt connect refused: the identity store failed');
          done(authError(5, 'not authorized'), false);
        },
      );
    },

    authorizePublish(client, packet, callback) {
      const who = client ? identities.get(client) : undefined;
      let refused: string | null;
      if (!who) refused = 'publish without an identity';
      else if (who.kind === 'edge') refused = edgePublishRefusal(who.edgeId, packet.topic, packet.retain);
      else refused = null;
      refused ??= opts.checkPublish?.(client?.id ?? '', packet.topic, packet.retain, packet.payload.length) ?? null;
      if (refused) log.warn({ clientId: client?.id, topic: packet.topic, qos: packet.qos, retain: packet.retain }, `mqtt publish refused: ${refused}`);
      // MQTT 3.1.1 has no reason code for a refused PUBLISH: aedes drops the connection.
      callback(refused ? new Error(refused) : null);
    },

    authorizeSubscribe(client, sub, callback) {
      const who = identities.get(client);
      const ok = who?.kind === 'fleet' || (who?.kind === 'edge' && edgeMaySubscribe(who.edgeId, sub.topic));
      if (!ok) log.warn({ clientId: client.id, topic: sub.topic }, 'mqtt subscribe refused');
      // null: aedes answers SUBACK 128 for this filter and keeps the connection [MQTT-3.9.3].
      callback(null, ok ? sub : null);
    },
  };
}

export interface OpenBrokerRulesOptions {
  logger: Logger;
  /** As BrokerAuthOptions.checkPublish (the retained caps stay on without authentication). */
  checkPublish?: BrokerAuthOptions['checkPublish'];
}

/**
 * The rules of a fleet started with `auth.enabled: false` (it then listens on loopback only):
 * every client connects, publishes and subscribes; only the retained caps still refuse. Nobody
 * has an identity, so identityOf() is always undefined (a revoked edge has nothing to drop).
 */
export function createOpenBrokerRules(opts: OpenBrokerRulesOptions): BrokerAuth {
  const log = opts.logger;
  return {
    identityOf: () => undefined,
    authenticate: (_client, _username, _password, done) => done(null, true),
    authorizePublish(client, packet, callback) {
      const refused = opts.checkPublish?.(client?.id ?? '', packet.topic, packet.retain, packet.payload.length) ?? null;
      if (refused) log.warn({ clientId: client?.id, topic: packet.topic, retain: packet.retain }, `mqtt publish refused: ${refused}`);
      callback(refused ? new Error(refused) : null);
    },
    authorizeSubscribe: (_client, sub, callback) => callback(null, sub),
  };
}

/** A username or client id fit for the log: an identity's name, never something shaped like a bearer secret. */
function loggable(name: string | undefined): string | undefined {
  if (typeof name !== 'string' || /^osp[a-z]_/.test(name)) return undefined;
  return name === FLEET_MQTT_USERNAME || isValidEdgeId(name) ? name : undefined;
}

function remoteAddress(client: Client): string | undefined {
  return (client.conn as { remoteAddress?: string } | undefined)?.remoteAddress;
}

/** The topic filter root the fleet reads (for the Mosquitto ACL). */
export const FLEET_TOPIC_FILTER = `${TOPIC_ROOT}/#`;
