/**
 * The embedded MQTT broker: aedes on its own TCP port (MQTTS when given a certificate). The fleet
 * manager never talks to it in-process; it connects over TCP like every edge
 * (docs/ARCHITECTURE.md), so the same code runs against Mosquitto or a broker cluster.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { once } from 'node:events';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'pino';
import { watchPacketSizes } from '../protocol/mqtt-packet-limit.js';
import { FLEET_DEFAULTS } from './config.js';
import { createBrokerAuth, createOpenBrokerRules } from './broker-auth.js';
import type { EdgeCredentialRecord } from './identity-store.js';

export interface BrokerOptions {
  /** Interface to listen on; '0.0.0.0' for every IPv4 interface. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  logger: Logger;
  /** Largest packet a client may send; a bigger one drops its connection before it is buffered. */
  maxPacketBytes?: number;
  /** Retained topics kept at most; a retained publish to a new topic beyond it is refused. */
  maxRetainedMessages?: number;
  /** Retained payload bytes kept at most; a retained publish that would exceed it is refused. */
  maxRetainedBytes?: number;
  /** PEM certificate and key: only MQTTS listens (docs/SECURITY.md ("Transport: TLS")). */
  tls?: { cert: Buffer; key: Buffer };
  /** The password of the fleet's own client (username osprey-fleet); made at each fleet start. */
  fleetSecret: string;
  /** True (config `auth.enabled: false`): any client, any topic (createOpenBrokerRules); the retained caps stay. */
  open?: boolean;
  /** Resolves an edge credential (identity.resolveEdgeCredential): every edge authenticates with one. */
  resolveEdgeCredential(credential: string): Promise<EdgeCredentialRecord | null>;
}

export interface EmbeddedBroker {
  /** The port actually bound. */
  port: number;
  /** A URL a client on this machine can connect to. */
  url: string;
  /**
   * Drops the connections of this edge (after its credentials were revoked: it cannot come
   * back, because every CONNECT checks the credential again). Returns how many were dropped.
   */
  disconnectEdge(edgeId: string): number;
  /** MQTT clients connected now (edges and the fleet's own client; the fleet's /metrics). */
  clientCount(): number;
  /** Disconnects every client and stops listening. Idempotent. */
  close(): Promise<void>;
}

/** Starts aedes on a TCP port and resolves once it accepts connections. */
export async function startBroker(opts: BrokerOptions): Promise<EmbeddedBroker> {
  const log = opts.logger;
  const d = FLEET_DEFAULTS.mqtt;
  const maxPacketBytes = opts.maxPacketBytes ?? d.maxPacketBytes;
  const retained = createRetainedCap(opts.maxRetainedMessages ?? d.maxRetainedMessages, opts.maxRetainedBytes ?? d.maxRetainedBytes);
  const checkPublish = (_clientId: string, topic: string, retain: boolean, bytes: number) => retained(topic, retain ? bytes : undefined);
  const auth = opts.open
    ? createOpenBrokerRules({ logger: log, checkPublish })
    : createBrokerAuth({ fleetSecret: opts.fleetSecret, resolveEdgeCredential: opts.resolveEdgeCredential, logger: log, checkPublish });
  const aedes = await Aedes.createBroker({ authenticate: auth.authenticate, authorizePublish: auth.authorizePublish, authorizeSubscribe: auth.authorizeSubscribe });
  aedes.on('clientError', (client, err) => log.debug({ clientId: client?.id, err }, 'mqtt client error'));
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client?.id, err }, 'mqtt connection error'));
  aedes.on('client', (client) => log.debug({ clientId: client.id }, 'mqtt client connected'));
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'mqtt client disconnected'));

  const onSocket = (socket: Socket) => {
    // Small packets (acks, PUBACKs) must not wait for Nagle: stop-and-wait sync would stall ~40 ms each.
    socket.setNoDelay(true);
    const client = aedes.handle(socket);
    // After handle(): aedes reads on 'readable', so watching 'data' does not switch the socket to flowing.
    watchPacketSizes(socket, maxPacketBytes, (bytes) => {
      log.warn({ clientId: client.id || undefined, bytes, maxPacketBytes }, 'mqtt packet over maxPacketBytes; connection dropped');
      socket.destroy();
    });
  };
  // With TLS the handler gets the TLS socket after the handshake: aedes and the size watch read
  // the decrypted stream. A client that fails the handshake (plain MQTT, an untrusted CA) never gets that far.
  const server = opts.tls ? createTlsServer({ cert: opts.tls.cert, key: opts.tls.key, handshakeTimeout: 10_000 }, onSocket) : createServer(onSocket);
  if (opts.tls) {
    server.on('tlsClientError', (err: Error, socket: Socket) => log.debug({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code }, remote: socket.remoteAddress }, 'mqtts handshake failed'));
  }
  try {
    server.listen(opts.port, opts.host);
    await once(server, 'listening');
  } catch (err) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `${opts.tls ? 'mqtts' : 'mqtt'}://${localHost(opts.host)}:${port}`;
  log.info({ host: opts.host, port, tls: opts.tls !== undefined }, 'mqtt broker listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    url,
    disconnectEdge(edgeId) {
      let dropped = 0;
      for (const client of Object.values((aedes as unknown as { clients: Record<string, Client> }).clients)) {
        const who = auth.identityOf(client);
        if (who?.kind === 'edge' && who.edgeId === edgeId) {
          client.close();
          dropped++;
        }
      }
      if (dropped > 0) log.info({ edgeId, dropped }, 'mqtt connections of a revoked edge dropped');
      return dropped;
    },
    clientCount: () => aedes.connectedClients,
    close() {
      closing ??= (async () => {
        // Stop accepting first; server.close resolves once aedes has closed every client.
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        await serverClosed;
        log.info({ port }, 'mqtt broker closed');
      })();
      return closing;
    },
  };
}

/**
 * Bookkeeping of retained messages (topic → payload bytes) against the count and byte caps.
 * Returns a function called for every PUBLISH: `retainedBytes` undefined for a non-retained one;
 * it answers a one-line refusal, or null and records the change. An empty retained payload
 * deletes the topic's message [MQTT-3.3.1-10]; replacing a message counts the difference.
 */
export function createRetainedCap(maxMessages: number, maxBytes: number): (topic: string, retainedBytes: number | undefined) => string | null {
  const sizes = new Map<string, number>();
  let total = 0;
  return (topic, bytes) => {
    if (bytes === undefined) return null;
    const before = sizes.get(topic);
    if (bytes === 0) {
      if (before !== undefined) {
        sizes.delete(topic);
        total -= before;
      }
      return null;
    }
    if (before === undefined && sizes.size >= maxMessages) return `retained message refused: ${maxMessages} retained topics already (mqtt.maxRetainedMessages)`;
    const next = total - (before ?? 0) + bytes;
    if (next > maxBytes && bytes > (before ?? 0)) {
      return `retained message refused: retained payloads would reach ${next} bytes, over ${maxBytes} (mqtt.maxRetainedBytes)`;
    }
    sizes.set(topic, bytes);
    total = next;
    return null;
  };
}

/** A host a local client can reach: wildcard binds become loopback; IPv6 gets brackets. */
export function localHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
