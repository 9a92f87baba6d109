/**
 * The edge agent: wires the result store, the model, the inspection pipeline, the HTTP API, the
 * hot folder and the fleet link, and takes them down again in reverse order.
 */
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import type { FastifyInstance } from 'fastify';
import type { Dispatcher } from 'undici';
import { oneLine, type OspreyError } from '../protocol/errors.js';
import type { Thresholds } from '../protocol/messages.js';
import type { GoldenSetReport } from '../protocol/monitoring.js';
import { withTimeout } from '../protocol/timeout.js';
import { createOptimizedModelCache, loadModelPackage, type OptimizedModelCache } from '../models/runtime.js';
import type { ModelRunner } from '../models/types.js';
import { artifactOrigins, readTrustedKeys, type EdgeConfig } from './config.js';
import { readFleetCredential, type FleetCredential } from './fleet-credential.js';
import { createFleetLink, type FleetLink } from './fleet-link.js';
import { loadEdgeFleetTls, type EdgeFleetTls } from './fleet-tls.js';
import { createHotFolder, type HotFolder } from './hot-folder.js';
import { buildHttpServer, type Health } from './http-server.js';
import { createMetrics } from './metrics.js';
import { createEdgePrometheus } from './edge-prometheus.js';
import { createMetricsListener, type MetricsListener } from './metrics-listener.js';
import { createModelManager, isModelFault, type ModelManager } from './model-manager.js';
import { createGoldenSetMonitor, type GoldenSetMonitor } from './golden-set.js';
import { addGoldenSetRoute } from './golden-set-http.js';
import { createMonitor, type Monitor } from './monitor.js';
import { createEdgeStorage, type EdgeStorage, type EdgeStorageOptions } from './edge-storage.js';
import { createPipeline, type FrameMeta, type InspectOutcome, type Pipeline } from './pipeline.js';
import { openResultStore, type ResultStore } from './result-store.js';

export interface EdgeAgentOptions {
  /** Parent logger; the agent logs under `component: 'edge-agent'`. Default: pino at config.logLevel. */
  logger?: Logger;
  /** An already loaded model to use instead of loading config.model.dir (the caller closes it). */
  model?: ModelRunner;
  /** Longest wait for queued frames at close (default 10 s). */
  drainTimeoutMs?: number;
  /** Longest wait for the fleet to ack the last results at close (default 2 s). */
  finalSyncMs?: number;
  /** mqtt.js reconnect period (default 1 s). */
  reconnectPeriodMs?: number;
  /** undici dispatcher for artifact downloads (default: the global one). */
  downloadDispatcher?: Dispatcher;
  /**
   * false: no HTTP server (frames come through the hot folder or `inspect()`); start() then
   * resolves `httpUrl: ''`. The fleet simulator runs hundreds of agents in one process this way.
   */
  listen?: boolean;
  /**
   * The result store's fsync policy (default 'full': a stored result survives a power cut).
   * 'normal' is for simulators only, where hundreds of agents share one disk and a power cut is
   * not part of the experiment.
   */
  durability?: 'full' | 'normal';
  /**
   * Where optimised graphs of the models are kept (models/optimized-model.ts). Default: a cache
   * under dataDir/onnxruntime. Agents of one process on one machine may share one (the simulator).
   */
  optimizedModels?: OptimizedModelCache;
}

export interface EdgeAgent {
  readonly id: string;
  /**
   * Opens the store, loads the model, listens, connects; resolves once frames are accepted.
   * `metricsUrl`: the metrics listener's /metrics (config `metrics`), when there is one.
   */
  start(): Promise<{ httpUrl: string; metricsUrl?: string }>;
  /** Stops inputs, drains the queue, syncs briefly, says offline, closes all. Idempotent. */
  close(): Promise<void>;
  /** The same figures as GET /health (only after start). */
  health(): Health;
  /** Inspects one encoded image, as POST /inspect does: resolves once its result is stored. */
  inspect(image: Buffer, meta: FrameMeta): Promise<InspectOutcome>;
  /** Switches the active model for frames not yet started (issue 4); returns the previous one. */
  setModel(runner: ModelRunner): ModelRunner;
  /** Replaces the edge thresholds (desired state does this through the model manager). */
  setThresholds(thresholds: Thresholds | undefined): void;
  /** The desired-state side (model-manager.ts), once started: state(), status(), idle(). */
  readonly models: ModelManager | undefined;
}

const INPUT_REJECTED_EVERY_MS = 10_000;

async function readAgentVersion(): Promise<string> {
  try {
    // dist/edge-agent/edge-agent.js → package.json at the project root.
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** The state's `goldenSet` part, when the active model has a report. */
function withReport(report: GoldenSetReport | undefined): { goldenSet?: GoldenSetReport } {
  return report ? { goldenSet: report } : {};
}

function urlOf(address: AddressInfo | string | null, host: string): string {
  if (!address || typeof address === 'string') return `http://${host}`;
  const wildcard = address.address === '0.0.0.0' || address.address === '::';
  const h = wildcard ? '127.0.0.1' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${h}:${address.port}`;
}

/** Creates an edge agent for a validated config; nothing runs until start(). */
export function createEdgeAgent(config: EdgeConfig, opts: EdgeAgentOptions = {}): EdgeAgent {
  const base = opts.logger ?? pino({ level: config.logLevel ?? 'info' });
  // Children of the base, not of `log`: pino would otherwise print `component` twice.
  const log = base.child({ component: 'edge-agent' });
  const metrics = createMetrics();
  // Prometheus (GET /metrics): counters per frame, gauges read from health() at scrape time.
  const prometheus = createEdgePrometheus({ edgeId: config.edgeId, line: config.line, health: () => health() });
  const startedAt = Date.now();
  let agentVersion = '0.0.0';
  let store: ResultStore | undefined;
  let runner: ModelRunner | undefined;
  let ownsRunner = false;
  let pipeline: Pipeline | undefined;
  let storage: EdgeStorage | undefined;
  let monitor: Monitor | undefined;
  let models: ModelManager | undefined;
  let goldenSet: GoldenSetMonitor | undefined;
  let app: FastifyInstance | undefined;
  let link: FleetLink | undefined;
  let fleetTls: EdgeFleetTls | undefined;
  let hotFolder: HotFolder | undefined;
  let metricsListener: MetricsListener | undefined;
  let starting: Promise<{ httpUrl: string; metricsUrl?: string }> | undefined;
  let closing: Promise<void> | undefined;
  let stopping = false;
  const rejectionLimiter = new Map<string, { sentAt: number; suppressed: number }>();

  /** Every refused frame: counted always; an input-rejected event at most every 10 s per code. */
  function onRejected(err: OspreyError, source: string): void {
    metrics.failure(err.code);
    prometheus.rejected(err.code);
    if (!link || err.code === 'OSP_ERR_SHUTTING_DOWN') return;
    const now = Date.now();
    const slot = rejectionLimiter.get(err.code) ?? { sentAt: 0, suppressed: 0 };
    if (now - slot.sentAt < INPUT_REJECTED_EVERY_MS) {
      slot.suppressed++;
      rejectionLimiter.set(err.code, slot);
      return;
    }
    link.publishEvent('input-rejected', 'warn', oneLine(err), { code: err.code, source, suppressed: slot.suppressed });
    rejectionLimiter.set(err.code, { sentAt: now, suppressed: 0 });
  }

  function health(): Health {
    if (!pipeline || !store) throw new Error('edge agent not started');
    return {
      status: stopping ? 'stopping' : 'ok',
      edgeId: config.edgeId,
      line: config.line,
      agentVersion,
      uptimeS: Math.round((Date.now() - startedAt) / 1000),
      model: pipeline.model.id,
      queue: { depth: pipeline.depth, running: pipeline.running, max: pipeline.maxDepth },
      lastSeq: store.lastSeq,
      ackedSeq: store.ackedSeq,
      pendingResults: store.pending,
      fleet: {
        configured: config.fleet !== undefined,
        connected: link?.connected ?? false,
        messagesDropped: link?.stats.messagesDropped ?? 0,
        acksRejected: link?.stats.acksRejected ?? 0,
        ...(link?.lastError !== undefined && { lastError: link.lastError }),
      },
      failures: metrics.failures(),
      ...(storage ? { storeId: store.storeId ?? null, alarms: [...storage.alarms(), ...(goldenSet?.alarms() ?? []), ...(monitor?.alarms() ?? [])], storage: storage.figures() } : {}),
      ...(monitor ? { monitor: monitor.figures() } : {}),
    };
  }

  async function shutdown(): Promise<void> {
    stopping = true;
    const step = async (what: string, fn: () => Promise<unknown> | unknown) => {
      try {
        await fn();
      } catch (err) {
        log.error({ err, step: what }, 'close step failed');
      }
    };
    link?.publishEvent('stopping', 'info', 'edge agent stopping');
    // Inputs first: new HTTP frames get 503, the hot folder stops taking files.
    pipeline?.stop();
    await step('hot folder', () => hotFolder?.close());
    await step('drain', async () => {
      if (!pipeline) return;
      const timedOut = await withTimeout(
        pipeline.drain().then(() => false),
        opts.drainTimeoutMs ?? 10_000,
        () => true,
      );
      if (timedOut) log.warn({ depth: pipeline.depth }, 'queue not drained in time');
    });
    await step('http', () => app?.close());
    // Before the link: its last report still goes out; before the models it runs.
    await step('golden set', () => goldenSet?.close());
    await step('metrics listener', () => metricsListener?.close());
    await step('fleet link', () => link?.close({ finalSyncMs: opts.finalSyncMs ?? 2000 }));
    await step('storage', () => storage?.close());
    // The manager closes every runner it holds, the config's model included when it loaded it.
    if (models) await step('models', () => models?.close());
    else if (ownsRunner) await step('model', () => runner?.close());
    await step('store', () => store?.close());
    await step('fleet tls', () => fleetTls?.dispatcher.close());
    log.info({ lastSeq: store?.lastSeq, ackedSeq: store?.ackedSeq }, 'edge agent stopped');
  }

  async function startup(): Promise<{ httpUrl: string; metricsUrl?: string }> {
    // 1. What the parts need: files, the fleet key, the result store and the local model.
    agentVersion = await readAgentVersion();
    const tls = (fleetTls = await loadEdgeFleetTls(config));
    let credential: FleetCredential | undefined;
    if (config.fleet?.credentialFile) credential = await readFleetCredential(config.fleet.credentialFile, config.fleet.httpUrl);
    else if (config.fleet) log.warn('fleet.credentialFile is not set: a fleet that requires credentials refuses this edge (see "osprey edge enroll")');
    const trustedKeys = await readTrustedKeys(config);
    const allowPlugins = config.model.allowPlugins === true;
    const s = (store = openResultStore(config.dataDir, opts.durability ? { durability: opts.durability } : {}));
    const optimizedCache =
      opts.optimizedModels ?? createOptimizedModelCache({ dir: join(config.dataDir, 'onnxruntime'), logger: base.child({ component: 'models' }) });
    const loadOptions = {
      maxPixels: config.maxPixels,
      allowPlugins,
      optimizedCache,
      ...(config.model.threads ? { intraOpThreads: config.model.threads } : {}),
    };
    const loadLocal = () => loadModelPackage(config.model.dir, loadOptions);
    const active = opts.model ?? (await loadLocal());
    ownsRunner = opts.model === undefined;
    runner = active;
    log.info({ model: active.id, lastSeq: s.lastSeq, ackedSeq: s.ackedSeq }, 'model loaded');

    // 2. Every part built before any starts, each given its collaborators now: an event raised
    // while a part starts (a restored model, a refused one, a storage alarm) always finds the
    // link, which keeps it until the fleet is reachable. No callback runs before step 3.
    const fleetLink = config.fleet
      ? createFleetLink({
          edgeId: config.edgeId,
          mqttUrl: config.fleet.mqttUrl,
          ...(tls && { tls }),
          ...(config.fleet.maxPacketBytes !== undefined ? { maxPacketBytes: config.fleet.maxPacketBytes } : {}),
          ...(credential ? { credentials: credential.mqtt(config.edgeId) } : {}),
          store: s,
          sync: config.sync,
          telemetryIntervalMs: config.telemetry.intervalMs,
          logger: base.child({ component: 'fleet-link' }),
          ...(opts.reconnectPeriodMs !== undefined ? { reconnectPeriodMs: opts.reconnectPeriodMs } : {}),
          state: () => ({
            line: config.line,
            cameras: config.cameras,
            agentVersion,
            startedAt,
            ...m.state(),
            ...withReport(golden.report()),
          }),
          telemetry: () => ({
            ...metrics.snapshot(),
            queueDepth: p.depth,
            lastSeq: s.lastSeq,
            ackedSeq: s.ackedSeq,
            pendingResults: s.pending,
            alarms: [...st.alarms(), ...golden.alarms(), ...mon.alarms()],
            storage: st.figures(),
            monitor: mon.figures(),
          }),
          onUp: () => st.online(),
          onDesired: (desired) => m.applyDesired(desired),
        })
      : undefined;
    link = fleetLink;
    const publishEvent: NonNullable<EdgeStorageOptions['publishEvent']> = (kind, level, message, data) => fleetLink?.publishEvent(kind, level, message, data);

    // Retention, the result quota and kept images (issue 5); the pipeline writes through its quota.
    const st = (storage = createEdgeStorage({
      edgeId: config.edgeId,
      dataDir: config.dataDir,
      store: s,
      ...(config.retention ? { retention: config.retention } : {}),
      ...(config.images ? { images: config.images } : {}),
      ...(config.disk ? { disk: config.disk } : {}),
      ...(config.fleet?.httpUrl ? { fleetHttpUrl: config.fleet.httpUrl } : {}),
      ...(tls && { dispatcher: tls.dispatcher }),
      ...(credential ? { fleetAuthHeaders: credential.headersFor } : {}),
      logger: base.child({ component: 'storage' }),
      publishEvent,
    }));
    // Image health and score drift on every answered frame (issue 17).
    const mon = (monitor = createMonitor({ logger: base.child({ component: 'monitor' }), publishEvent, ...(config.monitoring && { settings: config.monitoring }) }));
    const p = (pipeline = createPipeline({
      store: st.pipelineStore,
      model: active,
      ...(config.thresholds ? { thresholds: config.thresholds } : {}),
      concurrency: config.queue.concurrency,
      maxDepth: config.queue.maxDepth,
      maxBytes: config.queue.maxBytes,
      logger: base.child({ component: 'pipeline' }),
      ...(config.model.shadowWaitMs !== undefined ? { shadowWaitMs: config.model.shadowWaitMs } : {}),
      onResult: (outcome, image) => {
        const { record, inspection } = outcome;
        st.onResult(outcome, image);
        mon.observe(outcome, p.model.id === record.model ? p.model : undefined);
        metrics.result(record, inspection.timings.totalMs);
        prometheus.frame(record.camera, record.verdict, record.latencyMs);
        m.observeResult(record);
        fleetLink?.notifyResults();
      },
      onFailure: (err, meta, model) => {
        onRejected(err, meta.source);
        if (model !== undefined && isModelFault(err.code)) metrics.modelError(model);
        m.observeFailure(err, model);
      },
      onSlotFree: () => folder?.poke(),
      wantsHeatmap: (runner) => st.wantsHeatmap(runner),
      thumbnail: () => mon.thumbnailSize(),
    }));

    // Golden-set self-test (issue 17): after activations, on its schedule, on demand.
    const golden = (goldenSet = createGoldenSetMonitor({
      serving: () => m.serving(),
      publishEvent,
      onStateChange: () => fleetLink?.publishState(),
      logger: base.child({ component: 'golden-set' }),
    }));
    if (config.goldenSet) golden.applySettings(config.goldenSet);

    // Desired state: restores the last active version before the first frame is accepted.
    const m = (models = createModelManager({
      dataDir: config.dataDir,
      slots: p,
      localModel: active,
      ...(ownsRunner ? { loadLocalModel: loadLocal, localModelDir: config.model.dir } : {}),
      ...(config.thresholds ? { localThresholds: config.thresholds } : {}),
      trustedKeys,
      allowPlugins,
      maxPixels: config.maxPixels,
      loadModel: (dir) => loadModelPackage(dir, loadOptions),
      ...(config.model.cacheVersions !== undefined ? { cacheVersions: config.model.cacheVersions } : {}),
      ...(config.model.probationFrames !== undefined ? { probationFrames: config.model.probationFrames } : {}),
      ...(config.model.probationErrors !== undefined ? { probationErrors: config.model.probationErrors } : {}),
      download: {
        ...(opts.downloadDispatcher ? { dispatcher: opts.downloadDispatcher } : tls ? { dispatcher: tls.dispatcher } : {}),
        ...(config.model.downloadTimeoutMs !== undefined ? { attemptTimeoutMs: config.model.downloadTimeoutMs } : {}),
        ...(config.model.retryBaseMs !== undefined ? { retryBaseMs: config.model.retryBaseMs } : {}),
        ...(config.model.retryMaxMs !== undefined ? { retryMaxMs: config.model.retryMaxMs } : {}),
        ...(config.disk ? { minFreeBytes: config.disk.minFreeBytes } : {}),
        ...(config.fleet?.httpUrl ? { baseUrl: config.fleet.httpUrl } : {}),
        ...(credential ? { authHeaders: credential.headersFor } : {}),
        origins: artifactOrigins(config),
      },
      logger: base.child({ component: 'model-manager' }),
      onEvent: publishEvent,
      onStateChange: () => {
        golden.servingChanged();
        fleetLink?.publishState();
      },
      onConfigApplied: (settings) => {
        st.setSampling(settings.sampling);
        // The fleet's settings replace the file's when it has any (as thresholds do).
        golden.applySettings(settings.goldenSet ?? config.goldenSet);
        mon.setSettings(settings.monitoring ?? config.monitoring);
      },
      onModelReady: (role) => golden.onModelReady(role),
    }));

    const server =
      opts.listen !== false
        ? buildHttpServer({
            pipeline: p,
            cameras: config.cameras,
            bodyLimitBytes: config.http.bodyLimitBytes,
            ...(config.http.maxInFlightBytes !== undefined ? { maxInFlightBytes: config.http.maxInFlightBytes } : {}),
            logger: base.child({ component: 'http' }),
            health,
            monitor: mon,
            onReject: (err) => onRejected(err, 'http'),
            metrics: prometheus.scrape,
          })
        : undefined;
    app = server;
    if (server) addGoldenSetRoute(server, golden);
    const listener = (metricsListener = config.metrics
      ? createMetricsListener({ ...config.metrics, scrape: prometheus.scrape, logger: base.child({ component: 'metrics' }) })
      : undefined);

    const folder = config.inputDir
      ? createHotFolder({
          dir: config.inputDir,
          pipeline: p,
          camera: config.cameras[0]!,
          settleMs: config.hotFolder.settleMs,
          rescanMs: config.hotFolder.rescanMs,
          inFlight: config.hotFolder.inFlight,
          maxFileBytes: config.http.bodyLimitBytes,
          logger: base.child({ component: 'hot-folder' }),
          onFailure: (err) => onRejected(err, 'folder'),
        })
      : undefined;
    hotFolder = folder;

    // 3. Started in order: storage, models (restored before the first frame), HTTP, fleet, folder.
    await st.start();
    await m.start();
    golden.start();
    let httpUrl = '';
    if (server) {
      await server.listen({ host: config.http.host, port: config.http.port });
      httpUrl = urlOf(server.server.address(), config.http.host);
    }
    const metricsUrl = listener ? await listener.start() : undefined;
    if (fleetLink) {
      fleetLink.start();
      fleetLink.publishEvent('started', 'info', 'edge agent started', { httpUrl, model: p.model.id, lastSeq: s.lastSeq });
    }
    if (folder) await folder.start();
    log.info({ httpUrl, fleet: config.fleet?.mqttUrl ?? null, inputDir: config.inputDir ?? null }, 'edge agent ready');
    return { httpUrl, ...(metricsUrl !== undefined && { metricsUrl }) };
  }

  return {
    id: config.edgeId,
    start() {
      if (closing) return Promise.reject(new Error('edge agent closed'));
      starting ??= startup().catch(async (err: unknown) => {
        log.error({ err }, 'edge agent failed to start');
        await shutdown();
        throw err;
      });
      return starting;
    },
    close() {
      closing ??= (starting ?? Promise.resolve()).then(
        () => shutdown(),
        () => undefined, // a failed start already closed what it had opened
      );
      return closing;
    },
    health,
    inspect(image, meta) {
      if (!pipeline) return Promise.reject(new Error('edge agent not started'));
      return pipeline.submit(image, meta);
    },
    setModel(next) {
      if (!pipeline) throw new Error('edge agent not started');
      const previous = pipeline.setModel(next);
      link?.publishState();
      return previous;
    },
    setThresholds(thresholds) {
      if (!pipeline) throw new Error('edge agent not started');
      pipeline.setThresholds(thresholds);
    },
    get models() {
      return models;
    },
  };
}
