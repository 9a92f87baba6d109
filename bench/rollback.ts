/**
 * Rollback of a line: from `POST /api/lines/:line/rollback` to every edge of the line reporting
 * its previous version, as the broker sees their states (goal: ≤ 2 s for 50 edges).
 *
 * The fleet manager runs in its own process (bench/fleet-child.ts). The edges run in this one,
 * each with the real edge code on the desired-state path — fleet-link.ts (MQTT, state, desired)
 * and model-manager.ts (persisted desired state, signature check, download with undici, sha256,
 * content-addressed cache, pointer switch) — over its own MQTT connection and data directory.
 * Only the model runner is a stand-in (a rollback never runs a frame; the pointer switch is the
 * same whatever the model), so fifty edges fit in one process.
 *
 * Set-up: two versions rolled out to every edge (v1, then v2), so each edge has v2 active and v1
 * loaded as previous. Then the line is rolled back, and rolled back again (back to v2: "previous"
 * is whatever ran before the last change), `rounds` times; each round is one figure sample.
 *
 * Runs under the bench runner (`npm run bench -- --only rollback`) or alone:
 * `node dist/bench/rollback.js [--quick] [--edges N]` prints the figures.
 */
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { fetch, type Response } from 'undici';
import { destination, pino, type Logger } from 'pino';
import { createFleetLink, type FleetLink } from '../edge-agent/fleet-link.js';
import { createModelManager, type ModelManager, type ModelSlots } from '../edge-agent/model-manager.js';
import { createMetrics } from '../edge-agent/metrics.js';
import { openResultStore, type ResultStore } from '../edge-agent/result-store.js';
import { tinyAnomalyModel } from '../models/tiny-model.js';
import { BENCH_PUBLISHER_ID, benchPublisher } from './publisher.js';
import { createPublicKey } from 'node:crypto';
import { readManifest, sha256Hex } from '../models/package-reader.js';
import { parseManifest } from '../models/manifest-check.js';
import type { Manifest } from '../protocol/manifest.js';
import type { ModelRunner } from '../models/types.js';
import { apiHeaders, enrollBenchEdges, fleetDispatcher, fleetMqttOptions, startBenchFleet, type FleetChildSecurity } from './fleet-access.js';
import { readFleetCredential, type FleetCredential } from '../edge-agent/fleet-credential.js';
import { loadEdgeFleetTls, type EdgeFleetTls } from '../edge-agent/fleet-tls.js';
import type { EdgeConfig } from '../edge-agent/config.js';
import { watchStates, type StateWatch } from './state-watch.js';
import { percentile } from './stats.js';
import type { BenchOptions, BenchRun, BenchSection } from './types.js';

const MODEL = 'bench-rollback';
const LINE = 'line-R';

/** A valid package (manifest + a real tiny model) that the registry accepts; never run at the edges. */
function fakePackage(version: string): Map<string, Uint8Array> {
  const model = tinyAnomalyModel({ offset: Number(version) / 10 });
  const manifest = parseManifest({
    schemaVersion: 1,
    name: MODEL,
    version,
    task: 'anomaly',
    model: { file: 'model.onnx', sha256: sha256Hex(model), size: model.length },
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch' },
    outputs: { anomaly: { format: 'osprey', score: 'score' } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  });
  return new Map<string, Uint8Array>([['manifest.json', Buffer.from(JSON.stringify(manifest))], ['model.onnx', model]]);
}

/** A runner that is only ever switched to, never run. */
function standIn(manifest: Manifest): ModelRunner {
  return {
    manifest,
    id: `${manifest.name}@${manifest.version}`,
    inspect: () => Promise.reject(new Error('the rollback benchmark runs no frames')),
    close: () => Promise.resolve(),
  };
}

interface SimEdge {
  id: string;
  store: ResultStore;
  models: ModelManager;
  link: FleetLink;
}

/** How an edge reaches the fleet: its enrolled credential (authentication on) and the fleet's CA (TLS). */
interface EdgeAccess {
  credential?: FleetCredential;
  tls?: EdgeFleetTls;
}

async function startEdge(id: string, dir: string, mqttUrl: string, httpUrl: string, publicKey: string, log: Logger, access: EdgeAccess = {}): Promise<SimEdge> {
  await mkdir(dir, { recursive: true });
  const store = openResultStore(dir, { durability: 'normal' });
  const metrics = createMetrics();
  let active: ModelRunner = standIn({ ...parseLocal(), version: '0' });
  let shadow: ModelRunner | undefined;
  // The pipeline's part in a switch: swap the pointer, hand back the old one.
  const slots: ModelSlots = {
    setModel(runner) {
      const old = active;
      active = runner;
      return old;
    },
    setShadow(runner) {
      const old = shadow;
      shadow = runner;
      return old;
    },
    setThresholds() {},
  };
  const edgeLog = log.child({ edgeId: id });
  let link: FleetLink | undefined;
  const models = createModelManager({
    dataDir: dir,
    slots,
    localModel: active,
    // The packages are signed by the benchmark's publisher key (bench/publisher.ts).
    trustedKeys: new Map([[BENCH_PUBLISHER_ID, createPublicKey(publicKey)]]),
    loadModel: async (packageDir) => standIn(await readManifest(packageDir)),
    download: {
      baseUrl: httpUrl,
      retryBaseMs: 50,
      retryMaxMs: 500,
      ...(access.tls ? { dispatcher: access.tls.dispatcher } : {}),
      ...(access.credential ? { authHeaders: access.credential.headersFor } : {}),
    },
    logger: edgeLog.child({ component: 'model-manager' }),
    onEvent: (kind, level, message, data) => link?.publishEvent(kind, level, message, data),
    onStateChange: () => link?.publishState(),
  });
  await models.start();
  link = createFleetLink({
    edgeId: id,
    mqttUrl,
    ...(access.credential ? { credentials: access.credential.mqtt(id) } : {}),
    ...(access.tls ? { tls: access.tls } : {}),
    store,
    sync: { batchSize: 500, window: 2, intervalMs: 2000, ackTimeoutMs: 10_000 },
    telemetryIntervalMs: 60_000,
    logger: edgeLog.child({ component: 'fleet-link' }),
    state: () => ({ line: LINE, cameras: ['cam1'], agentVersion: 'bench', ...models.state() }),
    telemetry: () => ({ ...metrics.snapshot(), queueDepth: 0, lastSeq: store.lastSeq, ackedSeq: store.ackedSeq, pendingResults: store.pending }),
    onDesired: (desired) => models.applyDesired(desired),
  });
  link.start();
  return { id, store, models, link };
}

/** The edges' local model: a stand-in named like the benchmark model, version 0. */
function parseLocal(): Manifest {
  return parseManifest({
    schemaVersion: 1,
    name: MODEL,
    version: '0',
    task: 'anomaly',
    model: { file: 'model.onnx', sha256: '0'.repeat(64) },
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch' },
    outputs: { anomaly: { format: 'osprey', score: 'score' } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  });
}

/**
 * The floor under any rollback: the same broker carrying one message to each of `n` plain
 * mqtt.js clients and one back from each, with no Osprey code on either side. Median of `rounds`.
 * The clients log in as the fleet identity (the only one that may use topics outside the protocol).
 */
async function bareFanOut(mqttUrl: string, n: number, rounds: number, login: (name: string) => Promise<IClientOptions>): Promise<number> {
  const clients: MqttClient[] = [];
  const fleet = await connectAsync(mqttUrl, await login('bare'));
  try {
    for (let i = 0; i < n; i++) {
      const c = await connectAsync(mqttUrl, await login(`bare-${i}`));
      c.on('message', (_t, payload) => void c.publishAsync(`bench/bare/${i}/out`, payload, { qos: 1 }));
      await c.subscribeAsync(`bench/bare/${i}/in`, { qos: 1 });
      clients.push(c);
    }
    let seen = 0;
    let done: (() => void) | undefined;
    fleet.on('message', () => {
      if (++seen === n) done?.();
    });
    await fleet.subscribeAsync('bench/bare/+/out', { qos: 1 });
    const samples: number[] = [];
    for (let r = 0; r < rounds; r++) {
      seen = 0;
      const all = new Promise<void>((resolve) => (done = resolve));
      const t0 = performance.now();
      await Promise.all(clients.map((_, i) => fleet.publishAsync(`bench/bare/${i}/in`, Buffer.from(`round ${r}`), { qos: 1 })));
      await all;
      samples.push(performance.now() - t0);
    }
    return percentile(samples, 50);
  } finally {
    await Promise.all([fleet, ...clients].map((c) => c.endAsync(true)));
  }
}

async function json<T>(res: Response): Promise<T> {
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  return (await res.json()) as T;
}

export interface RollbackMeasure {
  /** Each line rollback: to every edge reporting the target version, and the HTTP answer alone. */
  samples: { totalMs: number; httpMs: number; to: string }[];
  /** Each set-up rollout (v1, then v2, to every edge): from `POST /api/rollouts` to every edge reporting it active. */
  rollouts: { version: string; ms: number }[];
  bareMs: number;
}

/**
 * Measures line rollbacks of `edges` edges, `rounds` times. `security` (default: authentication
 * on, plain TCP) is the fleet's; the edges are enrolled and trust its CA as real ones do.
 */
export async function measureRollback(opts: { edges: number; rounds: number; workDir: string; log: (m: string) => void; security?: Partial<FleetChildSecurity> }): Promise<RollbackMeasure> {
  const quiet = pino({ level: 'warn' }, destination(2));
  const publisher = await benchPublisher(join(opts.workDir, 'publisher'));
  const fleetDir = join(opts.workDir, 'fleet');
  const fleet = await startBenchFleet(fleetDir, { ...opts.security, publisherKeyFile: publisher.publicKeyFile });
  const edges: SimEdge[] = [];
  let observer: StateWatch | undefined;
  let edgeTls: EdgeFleetTls | undefined;
  const dispatcher = await fleetDispatcher(fleet.ready.access);
  try {
    const { httpUrl, mqttUrl, access } = fleet.ready;
    const headers = apiHeaders(access);
    const via = dispatcher ? { dispatcher } : {};
    const post = (path: string, body?: unknown) =>
      fetch(`${httpUrl}${path}`, {
        method: 'POST',
        ...via,
        ...(body === undefined ? { headers } : { body: JSON.stringify(body), headers: { ...headers, 'content-type': 'application/json' } }),
      });
    for (const version of ['1', '2']) {
      await json(await fetch(`${httpUrl}/api/models/${MODEL}/versions`, { method: 'POST', ...via, body: publisher.signedArchive(fakePackage(version)), headers: { ...headers, 'content-type': 'application/x-tar' } }));
    }
    const publicKey = publisher.publicKeyPem;
    observer = await watchStates(mqttUrl, await fleetMqttOptions(access, 'rollback-observer'));
    // Every edge as a real one: enrolled on the fleet, trusting its CA (one dispatcher for all, as the simulator shares one).
    const ids = Array.from({ length: opts.edges }, (_, i) => `r${String(i).padStart(3, '0')}`);
    const credentialFiles = await enrollBenchEdges(access, fleetDir, join(opts.workDir, 'credentials'), ids.map((id) => ({ id, line: LINE })));
    edgeTls = access.caFile ? await loadEdgeFleetTls({ fleet: { mqttUrl, caFile: access.caFile } } as Pick<EdgeConfig, 'fleet'>) : undefined;

    opts.log(`starting ${opts.edges} edges`);
    for (const id of ids) {
      const credential = credentialFiles ? await readFleetCredential(credentialFiles[id]!, httpUrl) : undefined;
      edges.push(await startEdge(id, join(opts.workDir, 'edges', id), mqttUrl, httpUrl, publicKey, quiet, { ...(credential && { credential }), ...(edgeTls && { tls: edgeTls }) }));
    }
    await observer.allOn(`${MODEL}@0`, opts.edges);

    // v1 then v2 everywhere: each edge ends with v2 active and v1 loaded as previous.
    const rollouts: RollbackMeasure['rollouts'] = [];
    for (const version of ['1', '2']) {
      const t0 = performance.now();
      const r = await json<{ id: string }>(await post('/api/rollouts', { model: MODEL, version, target: { lines: [LINE] }, stages: [{ mode: 'live' }] }));
      rollouts.push({ version, ms: (await observer.allOn(`${MODEL}@${version}`, opts.edges)) - t0 });
      // The next rollout may only start once this one has let go of the edges.
      for (let status = ''; status !== 'completed'; ) {
        status = (await json<{ status: string }>(await fetch(`${httpUrl}/api/rollouts/${r.id}`, { ...via, headers }))).status;
        if (status !== 'completed') await new Promise((resolve) => setTimeout(resolve, 20));
      }
      opts.log(`rollout ${r.id}: every edge on ${MODEL}@${version}`);
    }

    const samples: { totalMs: number; httpMs: number; to: string }[] = [];
    let current = '2';
    for (let round = 0; round < opts.rounds; round++) {
      const target = current === '2' ? '1' : '2';
      const t0 = performance.now();
      const res = await json<{ edges: unknown[] }>(await post(`/api/lines/${LINE}/rollback`));
      const httpMs = performance.now() - t0;
      if (res.edges.length !== opts.edges) throw new Error(`rollback moved ${res.edges.length} edges, expected ${opts.edges}`);
      const t1 = await observer.allOn(`${MODEL}@${target}`, opts.edges);
      samples.push({ totalMs: t1 - t0, httpMs, to: target });
      opts.log(`round ${round + 1}: ${opts.edges} edges on ${MODEL}@${target} after ${(t1 - t0).toFixed(0)} ms (HTTP answer ${httpMs.toFixed(0)} ms)`);
      current = target;
    }
    const bareMs = await bareFanOut(mqttUrl, opts.edges, opts.rounds, (name) => fleetMqttOptions(access, `bench-${name}`));
    opts.log(`bare MQTT fan-out and echo, ${opts.edges} clients: ${bareMs.toFixed(0)} ms`);
    return { samples, rollouts, bareMs };
  } finally {
    await observer?.close();
    await Promise.all(edges.map(async (e) => {
      await e.link.close();
      await e.models.close();
      e.store.close();
    }));
    await edgeTls?.dispatcher.close();
    await dispatcher?.close();
    await fleet.close();
  }
}

export const run: BenchRun = async (opts: BenchOptions): Promise<BenchSection> => {
  const edges = opts.quick ? 10 : 50;
  const rounds = opts.quick ? 2 : 10;
  const { samples, bareMs } = await measureRollback({ edges, rounds, workDir: opts.workDir, log: opts.log });
  const total = spread(samples.map((s) => s.totalMs));
  const http = spread(samples.map((s) => s.httpMs));
  return {
    id: 'rollback',
    title: 'Line rollback',
    summary:
      `From \`POST /api/lines/:line/rollback\` to every edge of the line reporting its previous version (its retained state on the ` +
      `broker), ${edges} edges on one line, ${rounds} rollbacks (alternating between two versions, each the other's previous). ` +
      'The fleet manager runs in its own process; the edges run in one process with the real desired-state code ' +
      '(fleet-link.ts and model-manager.ts: one MQTT connection, data directory and artifact cache each), with a stand-in ' +
      'model runner. A rollback is a pointer switch at the edge: both versions are loaded. Baseline: the same broker carrying ' +
      'one message to each of as many plain mqtt.js clients and one back, with no Osprey code.',
    figures: [
      {
        name: `rollback of ${edges} edges, median`,
        value: round1(total.p50),
        unit: 'ms',
        baseline: { name: `bare MQTT: one message to each of ${edges} clients and one back`, value: round1(bareMs) },
        goal: { value: '<=', target: 2000 },
        note: `${rounds} rounds`,
      },
      { name: `rollback of ${edges} edges, worst`, value: round1(total.max), unit: 'ms', goal: { value: '<=', target: 2000 } },
      { name: 'HTTP answer (desired states stored and handed to MQTT)', value: round1(http.p50), unit: 'ms', note: 'median' },
    ],
    tables: [{ title: 'Rounds', columns: ['round', 'to version', 'all edges reported (ms)', 'HTTP answer (ms)'], rows: samples.map((s, i) => [i + 1, s.to, round1(s.totalMs), round1(s.httpMs)]) }],
    data: { rollbackMedianMs: total.p50, rollbackMaxMs: total.max, bareFanOutMs: bareMs, edges },
  };
};

const round1 = (n: number) => Math.round(n * 10) / 10;
const spread = (xs: number[]) => ({ p50: percentile(xs, 50), max: Math.max(...xs) });

// Alone: prints the figures.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, edges: { type: 'string' } } });
  const workDir = await mkdtemp(join(tmpdir(), 'osprey-bench-rollback-'));
  try {
    const edges = values.edges ? Number(values.edges) : values.quick ? 10 : 50;
    const { samples, bareMs } = await measureRollback({ edges, rounds: values.quick ? 2 : 10, workDir, log: (m) => process.stderr.write(`${m}\n`) });
    const total = spread(samples.map((s) => s.totalMs));
    process.stdout.write(
      `rollback of ${edges} edges: median ${total.p50.toFixed(0)} ms, worst ${total.max.toFixed(0)} ms (goal ≤ 2000 ms; bare MQTT fan-out and echo ${bareMs.toFixed(0)} ms)\n`,
    );
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
