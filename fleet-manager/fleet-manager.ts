/**
 * The fleet manager process in one object: storage, embedded broker (unless an external broker
 * URL is given), the fleet's own MQTT client, ingest, the HTTP API and the rollout engine. Every
 * part is built before any of them starts; they start in that order and close in reverse.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connect, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { OspreyError } from '../protocol/errors.js';
import { withTimeout } from '../protocol/timeout.js';
import { resolveFleetConfig, type FleetConfig, type FleetConfigInput } from './config.js';
import { openStorage, type Storage } from './storage.js';
import { localHost, startBroker, type EmbeddedBroker } from './broker.js';
import { createIngest, type Ingest } from './ingest.js';
import { buildApp } from './app.js';
import type { RouteRecord } from './auth/authorize.js';
import { loadOrCreateSigningKeys } from './signing-keys.js';
import { createRegistry } from './registry.js';
import { loadTrustedKeys } from '../models/trusted-keys.js';
import { createDesiredPublisher } from './desired-state.js';
import { createRolloutEngine } from './rollout-engine.js';
import { createRolloutMembership } from './rollout-membership.js';
import { createConvergenceMonitor } from './convergence.js';
import { createEdgeFeed } from './edge-feed.js';
import { limitClientPackets } from '../protocol/mqtt-packet-limit.js';
import { loadFleetTls } from './tls-files.js';
import { FLEET_CLIENT_ID_PREFIX, FLEET_MQTT_USERNAME } from './broker-auth.js';
import { BROKER_SECRET_FILE, newBrokerSecret, readBrokerSecret } from './broker-secret.js';
import { createBackbones } from './backbones.js';
import { createTrainingRunner } from './training-runner.js';
import { createAlerts } from './alerts.js';
import { createWebhookSender } from './webhook-sender.js';
import { goldenSetReportListener } from './golden-set-reports.js';
import { createFleetMetrics } from './fleet-metrics.js';
import { clearExplainCache, createExplainer } from './explainer.js';
import { pgLeadership, singleLeadership } from './leadership.js';
import { createLeaderWork } from './leader-work.js';
import { advertiseUrlOf, checkAdvertiseUrl } from './leader-forward.js';

export interface FleetManagerOptions extends Omit<FleetConfigInput, 'brokerUrl' | 'tls'> {
  /** External broker; absent or null embeds aedes (so a resolved FleetConfig can be passed as is). */
  brokerUrl?: string | null;
  /** TLS of both listeners; absent or null: plain HTTP and MQTT. */
  tls?: FleetConfigInput['tls'] | null;
  /** The process's pino logger; each component logs through a child. Created from logLevel if absent. */
  logger?: Logger;
  /** MQTT client id of the fleet manager; unique per instance by default. */
  clientId?: string;
  /**
   * The password of the fleet identity `osprey-fleet` on the embedded broker (default: 256 random
   * bits made at each start). For code that runs the fleet in-process and must also connect as
   * the fleet (a test's observer, a monitoring tool); ignored with `brokerUrl`.
   */
  fleetBrokerSecret?: string;
  /** Base for a relative dataDir (default: the current directory). */
  baseDir?: string;
  /** Clock of the alert rules (tests move it instead of waiting); default Date.now. */
  alertClock?: () => number;
}

export interface FleetManagerAddresses {
  /** Where the HTTP API and console answer, reachable from this machine. */
  httpUrl: string;
  /** The broker edges should use: the embedded one, or the external brokerUrl. */
  mqttUrl: string;
}

export interface FleetManager {
  /** Starts everything; rejects (having closed what had started) if any part fails. */
  start(): Promise<FleetManagerAddresses>;
  /** Closes in reverse start order. Idempotent; safe after a failed start. */
  close(): Promise<void>;
  /** The resolved configuration. */
  readonly config: FleetConfig;
  /** Every HTTP route with the permission it declares (empty before start): what the route-walker test reads. */
  routes(): readonly RouteRecord[];
  /**
   * Drops the embedded broker's connections of this edge (call after revoking its credentials;
   * its next CONNECT is refused). Returns how many; 0 with an external broker or before start.
   */
  disconnectEdge(edgeId: string): number;
}

/**
 * Creates a fleet manager. Options are the fleet config (validated: a bad value throws
 * OSP_ERR_CONFIG naming the field) plus a logger.
 */
export function createFleetManager(opts: FleetManagerOptions = {}): FleetManager {
  const { logger, clientId, baseDir, brokerUrl, tls, fleetBrokerSecret, alertClock, ...rest } = opts;
  const config = resolveFleetConfig({ ...rest, ...(brokerUrl != null && { brokerUrl }), ...(tls != null && { tls }) }, baseDir);
  if (fleetBrokerSecret !== undefined && fleetBrokerSecret.length < 16) throw new OspreyError('OSP_ERR_CONFIG', 'fleetBrokerSecret must have at least 16 characters');
  // Followers must be able to reach whichever instance leads.
  checkAdvertiseUrl(config, config.storage.url !== undefined);
  const instanceId = clientId ?? `${FLEET_CLIENT_ID_PREFIX}${randomUUID().slice(0, 8)}`;
  const log = logger ?? pino({ level: config.logLevel });
  const child = (component: string) => log.child({ component });

  // Everything started so far, each with its close, in start order.
  const started: { name: string; close: () => Promise<void> }[] = [];
  let starting: Promise<FleetManagerAddresses> | undefined;
  let closing: Promise<void> | undefined;
  let httpApp: FastifyInstance | undefined;
  let embedded: EmbeddedBroker | undefined;

  async function startAll(): Promise<FleetManagerAddresses> {
    let baseUrl = config.publicUrl ?? '';
    // What this instance announces when it leads; set once HTTP listens.
    let advertiseUrl = '';
    mkdirSync(config.dataDir, { recursive: true });
    // Every store over one database, opened and migrated once: SQLite (dataDir/fleet.db) on a
    // storage thread of its own, or PostgreSQL with storage.url (docs/storage.md).
    const storage: Storage = await openStorage({
      ...(config.storage.url !== undefined && { url: config.storage.url }),
      dataDir: config.dataDir,
      imagesMaxBytes: config.images.maxBytes,
      maxAlerts: config.alerts.maxAlerts,
      maxOutbox: config.webhooks.maxOutbox,
      logger: log,
    });
    started.push({ name: 'storage', close: () => storage.close() });
    log.info({ storage: storage.kind, ...(storage.kind === 'sqlite' && { dbFile: join(config.dataDir, 'fleet.db') }) }, 'fleet storage opened');
    const { fleet: store, control, images, reviews, goldenSets, identity, training: trainingStore, backbones: backboneStore, alerts: alertStore, webhooks: webhookStore } = storage;
    // Secure by default: with nobody to sign in yet, or authentication switched off, nothing
    // beyond this machine may reach the fleet.
    const authOn = config.auth.enabled;
    const secured = authOn && (await identity.countUsers()) > 0;
    const httpHost = secured ? config.http.host : loopbackOnly(config.http.host);
    const mqttHost = secured ? config.mqtt.host : loopbackOnly(config.mqtt.host);
    if (!authOn) {
      log.warn({ httpHost, mqttHost }, 'authentication is off (auth.enabled false): every request and MQTT client is let in without a credential; the fleet listens on loopback only');
    } else if (!secured && (httpHost !== config.http.host || mqttHost !== config.mqtt.host)) {
      log.warn(
        { httpHost, mqttHost },
        'no users yet: the fleet listens on loopback only; create the first admin with "osprey fleet init" and restart to serve the network',
      );
    }
    const keys = await loadOrCreateSigningKeys(config.dataDir, child('registry'));
    const publisherKeys = await loadTrustedKeys(config.registry.publisherKeys, 'registry.publisherKeys');
    if (config.registry.requirePublisherSignature && publisherKeys.size === 0) {
      log.warn('registry.requirePublisherSignature is on and registry.publisherKeys is empty: every model upload will be refused');
    }
    const registry = createRegistry({
      store: control,
      dataDir: config.dataDir,
      keys,
      logger: child('registry'),
      maxBytes: config.registry.maxBytes,
      requirePublisherSignature: config.registry.requirePublisherSignature,
      allowFleetPacked: config.registry.allowFleetPacked,
      publisherKeys,
      check: { timeoutMs: config.registry.checkTimeoutMs, maxRssBytes: config.registry.checkMaxRssBytes },
      blobs: storage.blobs,
    });
    await registry.resignLegacy();
    // Training jobs (issue 15): their store and backbones beside the registry; the runner starts with the rest.
    const backbones = createBackbones({ store: backboneStore, dataDir: config.dataDir, logger: child('training'), blobs: storage.blobs });
    const configuredBackbone = await backbones.ensureDefault(config.training.defaultBackbone, process.env.OSPREY_DATA);
    const trainer = createTrainingRunner({
      store: trainingStore,
      registry,
      control,
      backbones,
      workRoot: join(config.dataDir, 'training'),
      logger: child('training'),
      timeoutMs: config.training.timeoutMs,
      maxRssBytes: config.training.maxRssBytes,
      // This process's id: the owner of the training jobs it claims (several instances, issue 18).
      instanceId: randomUUID(),
    });
    // With TLS only HTTPS and MQTTS listen; the files are checked before anything starts.
    const tlsFiles = config.tls ? await loadFleetTls(config.tls) : undefined;

    let mqttUrl = config.brokerUrl;
    let brokerPassword: string | null;
    if (mqttUrl === null) {
      // The embedded broker's fleet password lives only in this process, new at each start.
      brokerPassword = fleetBrokerSecret ?? newBrokerSecret();
      let broker: EmbeddedBroker;
      try {
        broker = await startBroker({
          ...config.mqtt,
          host: mqttHost,
          logger: child('broker'),
          ...(tlsFiles && { tls: tlsFiles }),
          fleetSecret: brokerPassword,
          open: !authOn,
          resolveEdgeCredential: (credential) => identity.resolveEdgeCredential(credential),
        });
      } catch (err) {
        throw new OspreyError('OSP_ERR_BROKER', `cannot start the MQTT broker on ${config.mqtt.host}:${config.mqtt.port}: ${(err as Error).message}`, { cause: err });
      }
      started.push({ name: 'broker', close: () => broker.close() });
      embedded = broker;
      mqttUrl = broker.url;
      // A fresh broker has no clients and no retained states: nobody can be online yet, and an
      // edge that never returns would otherwise look online forever (its will died with the old one).
      const wasOnline = await store.markAllOffline();
      if (wasOnline > 0) log.info({ edges: wasOnline }, 'edges marked offline until they report');
    } else {
      brokerPassword = await externalBrokerPassword(config, log);
    }

    const brokerForEdges = mqttUrl;
    // Several instances share one PostgreSQL database (storage.url): ingest is shared through the
    // external broker with MQTT 5 shared subscriptions, and leader work runs on one instance.
    const pgUrl = storage.kind === 'postgres' ? config.storage.url! : null;
    const shareGroup = pgUrl !== null && config.brokerUrl !== null ? config.instances.shareGroup : undefined;
    const client = await connectClient(
      mqttUrl,
      instanceId,
      brokerPassword === null ? null : { username: FLEET_MQTT_USERNAME, password: brokerPassword },
      config.mqtt.maxPacketBytes,
      child('mqtt'),
      tlsFiles?.ca,
      shareGroup !== undefined,
    );
    started.push({ name: 'mqtt', close: () => endClient(client) });

    // Every part built before any starts, each given its collaborators now: the publisher asks
    // the rollouts' membership for shadows, and reads the artifact base URL once HTTP is up.
    const membership = createRolloutMembership();
    const publisher = createDesiredPublisher({
      client,
      store: control,
      fleet: store,
      registry,
      logger: child('desired'),
      shadowOf: membership.shadowOf,
      baseUrl: () => baseUrl,
    });
    // Which rollouts changed (the console's rollout stream): the engine tells it after each save.
    const rolloutFeed = createEdgeFeed();
    started.push({ name: 'rollout-feed', close: async () => rolloutFeed.close() });
    const engine = createRolloutEngine({ control, fleet: store, publisher, membership, goldenSets, logger: child('rollouts'), tickMs: config.rollouts.tickMs, onChange: (id) => rolloutFeed.notify(id) });
    const convergence = createConvergenceMonitor({ control, fleet: store, publisher, logger: child('convergence'), graceMs: config.convergence.graceMs });
    // Live views of edges (the console's event stream): states, telemetry and events change them.
    const feed = createEdgeFeed();
    started.push({ name: 'edge-feed', close: async () => feed.close() });
    // Alerts (issue 17): edge alarms and the fleet's own, told to webhooks through a durable outbox.
    const webhooks = createWebhookSender({ store: webhookStore, alerts: alertStore, privateKey: keys.privateKey, settings: config.webhooks, logger: child('webhooks') });
    const alerts = createAlerts({
      store: alertStore,
      fleet: store,
      settings: config.alerts,
      logger: child('alerts'),
      convergence,
      rollouts: { get: (id) => engine.get(id), changes: rolloutFeed },
      ...(alertClock && { now: alertClock }),
    });
    // The sender reads the alerts' change log: this only wakes it (the log, not this call, is what makes it durable).
    alerts.onChange((change) => {
      if (change.event !== 'updated') webhooks.changed();
    });
    const onGoldenSet = goldenSetReportListener(goldenSets, child('golden-set'));
    // Prometheus metrics (GET /metrics): gauges read the stores at scrape time; ingest and HTTP feed the rest.
    const metrics = createFleetMetrics({
      store,
      control,
      training: trainingStore,
      ...(embedded && { mqttClients: embedded.clientCount }),
      mqttConnected: () => client.connected,
      openAlerts: () => alertStore.openAlertsByType(),
    });
    // Rollouts, convergence, the fleet's alert rules, webhook deliveries and training: one instance runs them.
    const leadership = pgUrl === null ? singleLeadership() : pgLeadership({ url: pgUrl, logger: child('leader'), retryMs: config.instances.leaderRetryMs, announce: () => ({ url: advertiseUrl, instance: instanceId }) });
    const leaderWork = createLeaderWork({
      leadership,
      failFast: pgUrl === null,
      logger: child('leader'),
      parts: [
        { name: 'rollouts', start: () => engine.start(), stop: () => engine.stop() },
        { name: 'convergence', start: () => convergence.start(), stop: () => convergence.stop() },
        { name: 'alerts', start: () => alerts.start(), stop: () => alerts.stop() },
        { name: 'webhooks', start: () => webhooks.start(), stop: () => webhooks.stop() },
        { name: 'training', start: () => trainer.start(), stop: () => trainer.stop() },
      ],
    });
    const ingest: Ingest = createIngest({
      client,
      store,
      logger: child('ingest'),
      observer: metrics.ingest,
      ...(shareGroup !== undefined && { shareGroup }),
      // Once per message, by the instance that stored it (the golden-set gate reads what this stores).
      onReport: (report) => onGoldenSet(report),
      // On every instance that should know of it (without a share group: right after onReport).
      onSeen: (report) => {
        // Alone, the engine and alert rules hear every report, from the retained states on (as before leadership).
        if (pgUrl === null || leaderWork.isLeader()) {
          engine.onReport(report);
          alerts.onReport(report);
        }
        if (report.kind !== 'results') feed.notify(report.edgeId);
      },
    });
    started.push({ name: 'ingest', close: () => ingest.stop() });
    // Packages extracted for occlusion maps: re-extracted on demand, so versions no longer explained do not pile up.
    await clearExplainCache(join(config.dataDir, 'explain-cache'));
    const app: FastifyInstance = await buildApp({
      store,
      identity,
      disconnectEdge: (edgeId) => embedded?.disconnectEdge(edgeId) ?? 0,
      logger: child('http'),
      status: () => ({ mqttConnected: client.connected, ingest: ingest.counters() }),
      control: { store: control, registry, publisher, engine, convergence, maxPackageBytes: config.registry.maxPackageBytes, check: { timeoutMs: config.registry.checkTimeoutMs, maxRssBytes: config.registry.checkMaxRssBytes }, baseUrl: () => baseUrl },
      images: { images, maxImageBytes: config.images.maxImageBytes, maxInFlightBytes: config.images.maxInFlightBytes },
      ...(tlsFiles && { https: { cert: tlsFiles.cert, key: tlsFiles.key } }),
      enroll: { info: () => ({ mqttUrl: brokerForEdges }) },
      events: { feed, rollouts: rolloutFeed },
      reviews,
      alerts: { store: alertStore, alerts, webhooks: { store: webhookStore, sender: webhooks } },
      goldenSets,
      metrics,
      explainer: createExplainer({
        results: store,
        images,
        control,
        registry,
        cacheDir: join(config.dataDir, 'explain-cache'),
        logger: child('explain'),
        timeoutMs: config.registry.checkTimeoutMs,
        maxRssBytes: config.registry.checkMaxRssBytes,
      }),
      auth: { sessionTtlMs: config.auth.sessionTtlMs, enabled: authOn },
      shifts: config.shifts,
      training: {
        jobs: trainingStore,
        runner: trainer,
        backbones,
        defaultBackbone: () => backbones.defaultName(configuredBackbone),
        control,
        results: store,
        images,
        reviewOf: (key) => reviews.get(key),
        uploadDir: join(config.dataDir, 'training-uploads'),
        limits: config.training,
        now: Date.now,
      },
      leaderWrites: { isLeader: () => leaderWork.isLeader(), leader: () => leadership.leader(), instance: instanceId, ...(tlsFiles?.ca && { ca: tlsFiles.ca }) },
    });
    httpApp = app;
    started.push({ name: 'http', close: () => app.close() });

    // Started in order: ingest, HTTP (its address makes the artifact URLs), rollouts.
    await ingest.start();
    await app.listen({ host: httpHost, port: config.http.port });
    const { port } = app.server.address() as AddressInfo;
    const httpUrl = `${tlsFiles ? 'https' : 'http'}://${localHost(httpHost)}:${port}`;
    // Artifact URLs go to edges on other machines: the listen address is only a default.
    baseUrl = config.publicUrl ?? httpUrl;
    advertiseUrl = advertiseUrlOf(config, tlsFiles ? 'https' : 'http', localHost(httpHost), port);
    if (!config.publicUrl) log.info({ baseUrl }, 'artifact URLs use the listen address; set publicUrl if edges reach the fleet by another name');
    // Alone (SQLite) this instance leads at once and its leader work has started on return.
    started.push({ name: 'leader-work', close: () => leaderWork.stop() });
    await leaderWork.start();
    log.info({ httpUrl, mqttUrl, leader: leaderWork.isLeader(), ...(shareGroup !== undefined && { shareGroup }) }, 'fleet manager started');
    return { httpUrl, mqttUrl };
  }

  async function closeAll(): Promise<void> {
    if (starting) await starting.catch(() => undefined);
    for (const part of started.reverse()) {
      try {
        await part.close();
      } catch (err) {
        // Keep closing the rest: a half-closed fleet manager would hold ports and the database.
        log.error({ err, part: part.name }, 'close failed');
      }
    }
    started.length = 0;
    embedded = undefined;
    log.info('fleet manager closed');
  }

  return {
    config,
    routes: () => httpApp?.authorization.routes() ?? [],
    disconnectEdge: (edgeId) => embedded?.disconnectEdge(edgeId) ?? 0,
    start() {
      if (closing) return Promise.reject(new OspreyError('OSP_ERR_SHUTTING_DOWN', 'the fleet manager is closed'));
      starting ??= startAll().catch(async (err: unknown) => {
        log.error({ err }, 'fleet manager failed to start');
        // Closing here (not in close()) so a failed start leaves nothing listening.
        starting = undefined;
        await closeAll();
        throw err;
      });
      return starting;
    },
    close() {
      closing ??= closeAll();
      return closing;
    },
  };
}


/** The host itself when it is a loopback address, else 127.0.0.1. */
export function loopbackOnly(host: string): string {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host) ? host : '127.0.0.1';
}

/**
 * The fleet's password on an external broker: `brokerPasswordFile`, which must exist, or else
 * `dataDir/keys/broker-fleet.secret` when `osprey fleet broker-config` wrote one; null (connect
 * without a username) only when neither is there, with a warning.
 */
async function externalBrokerPassword(config: FleetConfig, log: Logger): Promise<string | null> {
  if (config.brokerPasswordFile !== null) {
    const secret = await readBrokerSecret(config.brokerPasswordFile);
    if (secret === null) throw new OspreyError('OSP_ERR_CONFIG', `brokerPasswordFile ${config.brokerPasswordFile} does not exist`);
    return secret;
  }
  const file = join(config.dataDir, BROKER_SECRET_FILE);
  const secret = await readBrokerSecret(file);
  if (secret === null) log.warn({ file }, 'no broker password file: connecting to the external broker without a username (run "osprey fleet broker-config" to secure it)');
  return secret;
}

/**
 * Connects the fleet's MQTT client. The first connection must succeed (a wrong URL should stop
 * start-up with a clear error); after that mqtt.js reconnects by itself and resubscribes.
 */
async function connectClient(
  url: string,
  clientId: string,
  login: { username: string; password: string } | null,
  maxPacketBytes: number,
  log: Logger,
  ca?: Buffer,
  mqtt5 = false,
): Promise<MqttClient> {
  // mqtts:// verifies the broker's certificate against `ca` (tls.caFile) or the system's roots.
  // MQTT 5 where ingest is shared ($share/… subscriptions and subscription identifiers).
  const client = connect(url, { clientId, clean: true, reconnectPeriod: 1000, connectTimeout: 10_000, ...login, ...(ca && { ca }), ...(mqtt5 && { protocolVersion: 5 as const }) });
  // Before any byte arrives: a packet over the limit drops the connection instead of being buffered.
  limitClientPackets(client, maxPacketBytes, (bytes) => log.warn({ url, bytes, maxPacketBytes }, 'mqtt packet over maxPacketBytes; reconnecting'));
  try {
    await firstConnect(client);
  } catch (err) {
    throw new OspreyError('OSP_ERR_BROKER', `cannot connect to the MQTT broker at ${url}: ${(err as Error).message}`, { cause: err });
  }
  noDelay(client);
  client.on('reconnect', () => log.warn({ url }, 'mqtt reconnecting'));
  client.on('connect', () => {
    noDelay(client);
    log.info({ url }, 'mqtt connected');
  });
  client.on('offline', () => log.warn({ url }, 'mqtt offline'));
  client.on('error', (err) => {
    // After end(): mqtt.js may still try to PUBACK a publish that arrived meanwhile. Nothing is
    // lost (results the fleet did not ack are sent again by their edge), so no warning.
    if (client.disconnecting) log.debug({ err, url }, 'mqtt error while disconnecting');
    else log.warn({ err, url }, 'mqtt error');
  });
  log.info({ url, clientId }, 'mqtt connected');
  return client;
}

/** Resolves on the first CONNACK; rejects (and ends the client) on the first error or close before it. */
function firstConnect(client: MqttClient): Promise<void> {
  return new Promise((resolve, reject) => {
    const settle = (err?: Error) => {
      client.off('connect', onConnect).off('error', settle).off('close', onClose);
      if (!err) return resolve();
      client.end(true);
      reject(err);
    };
    const onConnect = () => settle();
    const onClose = () => settle(new Error("Couldn't connect to server"));
    client.on('connect', onConnect).on('error', settle).on('close', onClose);
  });
}

/** Disconnects gracefully (in-flight acks finish), but never waits long on a dead broker. */
async function endClient(client: MqttClient): Promise<void> {
  const done = await withTimeout(
    client.endAsync().then(() => true),
    2000,
    () => false,
  );
  if (!done) await client.endAsync(true);
}

/**
 * Turns off Nagle on the client's socket (a new one after each reconnect). An ack written right
 * after a PUBACK would otherwise wait for the broker's delayed TCP ACK, about 40 ms per batch.
 */
function noDelay(client: MqttClient): void {
  const stream = client.stream as { setNoDelay?: (on: boolean) => unknown } | undefined;
  stream?.setNoDelay?.(true);
}
