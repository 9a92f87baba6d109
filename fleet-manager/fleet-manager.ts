/**
 * The fleet manager process in one object: store, embedded broker (unless an external broker
 * URL is given), the fleet's own MQTT client, ingest, and the HTTP API. Started in that order
 * and closed in reverse.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { connectAsync, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import { OspreyError } from '../protocol/errors.js';
import { resolveFleetConfig, type FleetConfig, type FleetConfigInput } from './config.js';
import { openSqliteStore, type FleetStore } from './store.js';
import { localHost, startBroker, type EmbeddedBroker } from './broker.js';
import { createIngest, type Ingest } from './ingest.js';
import { buildApp } from './app.js';

export interface FleetManagerOptions extends Omit<FleetConfigInput, 'brokerUrl'> {
  /** External broker; absent or null embeds aedes (so a resolved FleetConfig can be passed as is). */
  brokerUrl?: string | null;
  /** The process's pino logger; each component logs through a child. Created from logLevel if absent. */
  logger?: Logger;
  /** MQTT client id of the fleet manager; unique per instance by default. */
  clientId?: string;
  /** Base for a relative dataDir (default: the current directory). */
  baseDir?: string;
}

export interface FleetManagerAddresses {
  /** Where the HTTP API and dashboard answer, reachable from this machine. */
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
}

/**
 * Creates a fleet manager. Options are the fleet config (validated: a bad value throws
 * OSP_ERR_CONFIG naming the field) plus a logger.
 */
export function createFleetManager(opts: FleetManagerOptions = {}): FleetManager {
  const { logger, clientId, baseDir, brokerUrl, ...rest } = opts;
  const config = resolveFleetConfig(brokerUrl == null ? rest : { ...rest, brokerUrl }, baseDir);
  const log = logger ?? pino({ level: config.logLevel });
  const child = (component: string) => log.child({ component });

  // Everything started so far, each with its close, in start order.
  const started: { name: string; close: () => Promise<void> }[] = [];
  let starting: Promise<FleetManagerAddresses> | undefined;
  let closing: Promise<void> | undefined;

  async function startAll(): Promise<FleetManagerAddresses> {
    mkdirSync(config.dataDir, { recursive: true });
    const dbFile = join(config.dataDir, 'fleet.db');
    const store: FleetStore = openSqliteStore({ file: dbFile, logger: child('store') });
    started.push({ name: 'store', close: () => store.close() });
    log.info({ dbFile }, 'fleet store opened');

    let mqttUrl = config.brokerUrl;
    if (mqttUrl === null) {
      let broker: EmbeddedBroker;
      try {
        broker = await startBroker({ ...config.mqtt, logger: child('broker') });
      } catch (err) {
        throw new OspreyError('OSP_ERR_BROKER', `cannot start the MQTT broker on ${config.mqtt.host}:${config.mqtt.port}: ${(err as Error).message}`, { cause: err });
      }
      started.push({ name: 'broker', close: () => broker.close() });
      mqttUrl = broker.url;
      // A fresh broker has no clients and no retained states: nobody can be online yet, and an
      // edge that never returns would otherwise look online forever (its will died with the old one).
      const wasOnline = await store.markAllOffline();
      if (wasOnline > 0) log.info({ edges: wasOnline }, 'edges marked offline until they report');
    }

    const client = await connectClient(mqttUrl, clientId ?? `osprey-fleet-${randomUUID().slice(0, 8)}`, child('mqtt'));
    started.push({ name: 'mqtt', close: () => endClient(client) });

    const ingest: Ingest = createIngest({ client, store, logger: child('ingest') });
    started.push({ name: 'ingest', close: () => ingest.stop() });
    await ingest.start();

    const app: FastifyInstance = await buildApp({
      store,
      logger: child('http'),
      status: () => ({ mqttConnected: client.connected, ingest: ingest.counters() }),
    });
    started.push({ name: 'http', close: () => app.close() });
    await app.listen({ host: config.http.host, port: config.http.port });
    const { port } = app.server.address() as AddressInfo;
    const httpUrl = `http://${localHost(config.http.host)}:${port}`;
    log.info({ httpUrl, mqttUrl }, 'fleet manager started');
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
    log.info('fleet manager closed');
  }

  return {
    config,
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

/**
 * Connects the fleet's MQTT client. The first connection must succeed (a wrong URL should stop
 * start-up with a clear error); after that mqtt.js reconnects by itself and resubscribes.
 */
async function connectClient(url: string, clientId: string, log: Logger): Promise<MqttClient> {
  let client: MqttClient;
  try {
    client = await connectAsync(url, { clientId, clean: true, reconnectPeriod: 1000, connectTimeout: 10_000 }, false);
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
  client.on('error', (err) => log.warn({ err, url }, 'mqtt error'));
  log.info({ url, clientId }, 'mqtt connected');
  return client;
}

/** Disconnects gracefully (in-flight acks finish), but never waits long on a dead broker. */
async function endClient(client: MqttClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const graceful = client.endAsync().then(() => true);
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), 2000);
  });
  const done = await Promise.race([graceful, late]);
  clearTimeout(timer);
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
