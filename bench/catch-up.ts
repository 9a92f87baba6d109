/**
 * Catch-up after an outage (issue 5): an edge that was offline for 24 h at 10 frames/s holds
 * 864,000 unsynced results; it reconnects and must be fully synced within 60 s while it keeps
 * inspecting at 10 frames/s, without hurting the line's verdict latency.
 *
 * A real fleet manager (embedded aedes, SQLite FULL) and a real edge agent (built-in ONNX model)
 * run in their own processes; the backlog is written into the edge's results.db before it starts.
 * This process is the line: it posts a frame every 100 ms and times each answer. Catch-up time is
 * from the agent being ready (it connects in the background) to the fleet's ack covering the
 * whole backlog; "idle" latency is the same load once nothing is left to sync.
 *
 * Standalone: `node dist/bench/catch-up.js [--quick]`.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { writeFile } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import { createFleetLink } from '../edge-agent/fleet-link.js';
import { openResultStore, type ResultStore } from '../edge-agent/result-store.js';
import { ensureDemoModel } from '../models/fixtures.js';
import { benchScript, startChild, type BenchChild } from './child.js';
import type { EdgeChildStats } from './edge-agent-child.js';
import type { FleetChildStats } from './fleet-child.js';
import { apiHeaders, enrollBenchEdges, startBenchFleet, type FleetReady } from './fleet-access.js';
import { readFleetCredential } from '../edge-agent/fleet-credential.js';
import { benchFrames } from './frames.js';
import { isMain, runStandalone } from './standalone.js';
import { startTcpProxy } from '../simulator/tcp-proxy.js';
import { round, summarize, type LatencySummary } from './stats.js';
import type { BenchRun, BenchSection, Figure, Table } from './types.js';

interface Variant {
  name: string;
  batchSize: number;
  window: number;
  /** 0: no cap. */
  maxResultsPerSecond: number;
}

interface Plan {
  backlog: number;
  fps: number;
  idleS: number;
  /** Inspecting with the link down first: warms the model up, and is the offline baseline. */
  offlineS: number;
  variants: Variant[];
}

/** The shipped defaults first (edge-agent/config.ts), then what the knobs change. */
function plan(quick: boolean): Plan {
  const defaults: Variant = { name: 'defaults (500 × 2, cap 20,000/s)', batchSize: 500, window: 2, maxResultsPerSecond: 20_000 };
  if (quick) return { backlog: 20_000, fps: 10, idleS: 2, offlineS: 2, variants: [defaults] };
  return {
    backlog: 864_000,
    fps: 10,
    idleS: 20,
    offlineS: 10,
    variants: [
      defaults,
      { name: 'no cap (500 × 2)', batchSize: 500, window: 2, maxResultsPerSecond: 0 },
      { name: 'cap 10,000/s', batchSize: 500, window: 2, maxResultsPerSecond: 10_000 },
    ],
  };
}

/**
 * Writes `count` unsynced results covering the last 24 h into a new results.db, in one
 * transaction (the agent's own append would take minutes at synchronous=FULL).
 */
function seedBacklog(dataDir: string, count: number, edgeId: string): void {
  openResultStore(dataDir).close(); // schema and storeId, as the agent creates them
  const db = new Database(join(dataDir, 'results.db'));
  const insert = db.prepare(
    `INSERT INTO results (ts, camera, source, frame, model, verdict, label, score, latency_ms)
     VALUES (?, 'cam1', 'folder', ?, 'osprey-demo-anomaly@1.0.3', ?, ?, ?, ?)`,
  );
  const start = Date.now() - 24 * 3_600_000;
  const step = (24 * 3_600_000) / count;
  db.transaction(() => {
    for (let i = 0; i < count; i++) {
      const defect = i % 53 === 0;
      insert.run(Math.round(start + i * step), `${edgeId}-${String(i).padStart(7, '0')}.jpg`, defect ? 'defect' : 'ok', defect ? 'anomaly' : 'good', defect ? 0.83 : 0.11 + (i % 17) / 100, 18 + (i % 9));
    }
  })();
  db.close();
}

interface Health {
  lastSeq: number;
  ackedSeq: number;
}

async function edgeHealth(httpUrl: string): Promise<Health> {
  return (await (await request(`${httpUrl}/health`)).body.json()) as Health;
}

interface Outcome {
  variant: Variant;
  catchUpS: number;
  resultsPerS: number;
  during: LatencySummary;
  idle: LatencySummary;
  offline: LatencySummary;
  framesDuring: number;
  failedFrames: number;
  edgeCpuPct: number;
  fleetCpuPct: number;
  fleetAcked: number;
  edgeLast: number;
}

async function runVariant(
  opts: Parameters<BenchRun>[0],
  p: Plan,
  v: Variant,
  index: number,
  fleet: BenchChild<FleetReady>,
  modelDir: string,
  frames: Buffer[],
  credentials: Record<string, string> | undefined,
): Promise<Outcome> {
  const edgeId = `catch-up-${index}`;
  const dataDir = join(opts.workDir, edgeId);
  await mkdir(dataDir, { recursive: true });
  opts.log(`catch-up [${v.name}]: seeding ${p.backlog} results`);
  seedBacklog(dataDir, p.backlog, edgeId);
  // The edge reaches the broker through a proxy that starts cut: the outage, then the reconnect.
  const link = await startTcpProxy(Number(new URL(fleet.ready.mqttUrl).port));
  link.cut();
  const spec = {
    baseDir: opts.workDir,
    config: {
      edgeId,
      line: 'line-bench',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: `mqtt://127.0.0.1:${link.port}`, ...(credentials ? { credentialFile: credentials[edgeId] } : {}) },
      model: { dir: modelDir },
      sync: { batchSize: v.batchSize, window: v.window, maxResultsPerSecond: v.maxResultsPerSecond },
      telemetry: { intervalMs: 10_000 },
      logLevel: 'warn',
    },
  };
  const specFile = join(opts.workDir, `${edgeId}.json`);
  await writeFile(specFile, JSON.stringify(spec));

  const edge = await startChild<{ httpUrl: string }>(benchScript('edge-agent-child.js'), [specFile]);
  const httpUrl = edge.ready.httpUrl;

  // The line: one frame every 1/fps s, each answer timed, tagged with the phase it fell in.
  const samples: { at: number; ms: number }[] = [];
  let failed = 0;
  let running = true;
  const line = (async () => {
    const gap = 1000 / p.fps;
    let next = performance.now();
    for (let i = 0; running; i++) {
      const t = performance.now();
      try {
        const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: frames[i % frames.length]!, headers: { 'content-type': 'image/jpeg' } });
        await res.body.dump();
        if (res.statusCode === 200) samples.push({ at: t, ms: performance.now() - t });
        else failed++;
      } catch {
        failed++;
      }
      next += gap;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();

  await new Promise((r) => setTimeout(r, p.offlineS * 1000));
  const fleetBefore = await fleet.request<FleetChildStats>('stats');
  const edgeBefore = await edge.request<EdgeChildStats>('stats');
  link.restore();
  const t0 = performance.now();
  opts.log('  link restored; catching up');

  // Poll the edge's ack (a benchmark may poll; the figure is rounded to the poll period).
  let caughtUpAt = 0;
  const deadline = t0 + 600_000;
  while (performance.now() < deadline) {
    const h = await edgeHealth(httpUrl);
    if (h.ackedSeq >= p.backlog) {
      caughtUpAt = performance.now();
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!caughtUpAt) throw new Error(`catch-up not finished within 600 s (${v.name})`);
  const edgeAfter = await edge.request<EdgeChildStats>('stats');
  const fleetAfter = await fleet.request<FleetChildStats>('stats');
  const catchUpMs = caughtUpAt - t0;
  opts.log(`  caught up in ${round(catchUpMs / 1000)} s; idle phase ${p.idleS} s`);

  await new Promise((r) => setTimeout(r, p.idleS * 1000));
  running = false;
  await line;
  const final = await edgeHealth(httpUrl);
  const edges = (await (await request(`${fleet.ready.httpUrl}/api/edges`, { headers: apiHeaders(fleet.ready.access) })).body.json()) as { edges: { id: string; ackedSeq: number }[] };
  await edge.close();
  await link.close();

  // The first two frames warm the model up; they are nobody's baseline.
  const offline = samples.slice(2).filter((s) => s.at < t0).map((s) => s.ms);
  const during = samples.filter((s) => s.at >= t0 && s.at < caughtUpAt).map((s) => s.ms);
  const idle = samples.filter((s) => s.at >= caughtUpAt + 1000).map((s) => s.ms);
  const cpu = (a: { cpuUserUs: number; cpuSystemUs: number }, b: { cpuUserUs: number; cpuSystemUs: number }) =>
    (100 * (b.cpuUserUs + b.cpuSystemUs - a.cpuUserUs - a.cpuSystemUs)) / 1000 / catchUpMs;
  return {
    variant: v,
    catchUpS: catchUpMs / 1000,
    resultsPerS: p.backlog / (catchUpMs / 1000),
    during: summarize(during),
    idle: summarize(idle),
    offline: summarize(offline),
    framesDuring: during.length,
    failedFrames: failed,
    edgeCpuPct: cpu(edgeBefore, edgeAfter),
    fleetCpuPct: cpu(fleetBefore, fleetAfter),
    fleetAcked: edges.edges.find((e) => e.id === edgeId)?.ackedSeq ?? 0,
    edgeLast: final.lastSeq,
  };
}

interface LinkAlone {
  results: number;
  perSecond: number;
  loopP50: number;
  loopP99: number;
  loopMax: number;
  readP50: number;
  readP99: number;
  ackP50: number;
  ackP99: number;
}

/**
 * The sync loop alone in this process (no agent, no inspection) against the same fleet: its event
 * loop delay and the time of its two synchronous steps per batch, to tell the edge's own cost
 * from contention with the fleet manager on a shared machine.
 */
async function linkAlone(opts: Parameters<BenchRun>[0], p: Plan, fleet: FleetReady, credentials: Record<string, string> | undefined): Promise<LinkAlone> {
  const results = opts.quick ? 20_000 : 200_000;
  const dataDir = join(opts.workDir, 'link-alone');
  await mkdir(dataDir, { recursive: true });
  const login = credentials ? (await readFleetCredential(credentials['link-alone']!, undefined)).mqtt('link-alone') : undefined;
  seedBacklog(dataDir, results, 'link-alone');
  const store = openResultStore(dataDir);
  const reads: number[] = [];
  const acks: number[] = [];
  const timed = <A extends unknown[], R>(fn: (...a: A) => R, into: number[]) => (...a: A): R => {
    const t = performance.now();
    try {
      return fn(...a);
    } finally {
      into.push(performance.now() - t);
    }
  };
  const measured: ResultStore = Object.create(store, {
    pendingAfter: { value: timed(store.pendingAfter.bind(store), reads) },
    markAcked: { value: timed(store.markAcked.bind(store), acks) },
  }) as ResultStore;
  const v = p.variants[0]!;
  const link = createFleetLink({
    edgeId: 'link-alone',
    mqttUrl: fleet.mqttUrl,
    ...(login ? { credentials: login } : {}),
    store: measured,
    sync: { batchSize: v.batchSize, window: v.window, intervalMs: 2000, ackTimeoutMs: 10_000, maxResultsPerSecond: v.maxResultsPerSecond },
    telemetryIntervalMs: 3_600_000,
    logger: pino({ level: 'silent' }),
    state: () => ({ line: 'line-bench' }),
    telemetry: () => {
      throw new Error('no telemetry in this benchmark');
    },
  });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const t0 = performance.now();
  link.start();
  const done = await link.waitForAck(results, 600_000);
  const seconds = (performance.now() - t0) / 1000;
  loop.disable();
  await link.close({ finalSyncMs: 0 });
  store.close();
  if (!done) throw new Error('link-alone catch-up did not finish');
  const r = summarize(reads);
  const a = summarize(acks);
  return {
    results,
    perSecond: results / seconds,
    loopP50: loop.percentile(50) / 1e6,
    loopP99: loop.percentile(99) / 1e6,
    loopMax: loop.max / 1e6,
    readP50: r.p50,
    readP99: r.p99,
    ackP50: a.p50,
    ackP99: a.p99,
  };
}

/** The catch-up benchmark (see the file comment). */
export const run: BenchRun = async (opts) => {
  const p = plan(opts.quick);
  const modelDir = await ensureDemoModel(join(opts.modelCache, 'demo'));
  const frameSet = await benchFrames(opts.modelCache, 8, 640, 480);
  const fleet = await startBenchFleet(join(opts.workDir, 'fleet'));
  const outcomes: Outcome[] = [];
  let alone: LinkAlone;
  try {
    // Every edge enrolled up front, while the fleet writes nothing (see fleet-ingest.ts startSims).
    const edges = [...p.variants.map((_, i) => `catch-up-${i}`), 'link-alone'].map((id) => ({ id, line: 'line-bench' }));
    const credentials = await enrollBenchEdges(fleet.ready.access, join(opts.workDir, 'fleet'), join(opts.workDir, 'credentials'), edges);
    for (const [i, v] of p.variants.entries()) outcomes.push(await runVariant(opts, p, v, i, fleet, modelDir, frameSet.images, credentials));
    alone = await linkAlone(opts, p, fleet.ready, credentials);
  } finally {
    await fleet.close();
  }
  const main = outcomes[0]!;
  const ms = (n: number) => round(n);
  const figures: Figure[] = [
    {
      name: `catch-up of ${p.backlog.toLocaleString('en-US')} results (24 h at 10 frames/s), while inspecting at ${p.fps} frames/s`,
      value: round(main.catchUpS),
      unit: 's',
      goal: { value: '<=', target: 60 },
      note: `${main.variant.name}; ${Math.round(main.resultsPerS).toLocaleString('en-US')} results/s`,
    },
    {
      name: 'verdict latency p50 during catch-up',
      value: ms(main.during.p50),
      unit: 'ms',
      baseline: { name: 'idle, same load', value: ms(main.idle.p50) },
      goal: { delta: '<=', target: 5 },
      note: `${main.during.count} frames during catch-up, ${main.idle.count} idle`,
    },
    {
      name: 'verdict latency p99 during catch-up',
      value: ms(main.during.p99),
      unit: 'ms',
      baseline: { name: 'idle, same load', value: ms(main.idle.p99) },
      note: 'the fleet manager shares the two cores here; see the link-alone table',
    },
    {
      name: "edge event-loop delay p99 while its link sends at the cap (the link alone)",
      value: ms(alone.loopP99),
      unit: 'ms',
      note: `${alone.results.toLocaleString('en-US')} results at ${Math.round(alone.perSecond).toLocaleString('en-US')}/s; max ${ms(alone.loopMax)} ms`,
    },
  ];
  const table: Table = {
    title: 'Catch-up settings (batch size × batches in flight, results/s cap)',
    columns: ['sync settings', 'catch-up s', 'results/s', 'p50 offline / idle / during ms', 'p99 offline / idle / during ms', 'edge CPU %', 'fleet CPU %', 'frames refused', 'fleet ack = edge last seq'],
    rows: outcomes.map((o) => [
      o.variant.name,
      round(o.catchUpS),
      Math.round(o.resultsPerS),
      `${ms(o.offline.p50)} / ${ms(o.idle.p50)} / ${ms(o.during.p50)}`,
      `${ms(o.offline.p99)} / ${ms(o.idle.p99)} / ${ms(o.during.p99)}`,
      Math.round(o.edgeCpuPct),
      Math.round(o.fleetCpuPct),
      o.failedFrames,
      o.fleetAcked === o.edgeLast ? 'yes' : `no (${o.fleetAcked} / ${o.edgeLast})`,
    ]),
  };
  const aloneTable: Table = {
    title: "The edge's main thread while its link catches up alone (no inspection, same fleet)",
    columns: ['results', 'cap', 'results/s', 'event-loop delay p50 / p99 / max ms', 'read a batch (pendingAfter) p50 / p99 ms', 'record an ack (fsync) p50 / p99 ms'],
    rows: [
      [
        alone.results,
        p.variants[0]!.maxResultsPerSecond,
        Math.round(alone.perSecond),
        `${ms(alone.loopP50)} / ${ms(alone.loopP99)} / ${ms(alone.loopMax)}`,
        `${ms(alone.readP50)} / ${ms(alone.readP99)}`,
        `${ms(alone.ackP50)} / ${ms(alone.ackP99)}`,
      ],
    ],
  };
  const section: BenchSection = {
    id: 'catch-up',
    title: 'Catch-up after a 24 h outage',
    summary:
      `An edge agent (built-in ONNX model, its own process) starts with ${p.backlog.toLocaleString('en-US')} unsynced results in ` +
      'results.db, as after 24 h offline at 10 frames/s, and a fleet manager (embedded aedes, SQLite synchronous=FULL, its own ' +
      'process) to sync them to, reached through a TCP proxy that is cut at first. The line posts a 640×480 JPEG every ' +
      `${1000 / p.fps} ms to \`POST /inspect\` throughout and times each verdict: ${p.offlineS} s offline, then the proxy is ` +
      'restored and the catch-up runs, then ' + `${p.idleS} s idle (connected, nothing left to sync). Catch-up time runs from the ` +
      "link coming back (the agent notices within its 1 s reconnect period) to the fleet's ack covering the whole backlog (polled " +
      'every 100 ms). CPU is percent of one core over the catch-up.',
    figures,
    tables: [table, aloneTable],
    notes: [
      'The cap (`sync.maxResultsPerSecond`, default 20,000) exists so a catch-up leaves the CPU to inspection on a weaker PC; ' +
        'on this machine the uncapped rate is shown for comparison. Lower it where verdict latency suffers.',
      'Every results message, ack and state in this run went through the same code as in production; the fleet stored every row ' +
        'in one transaction per batch with synchronous=FULL.',
      "Profile: the edge's own work per batch of 500 is reading it (~1.5 ms) and recording the ack (one fsync, ~0.4 ms); with the " +
        'link alone its event loop stays within a few ms at p99. The p99 rise in the main figures is the fleet manager ingesting ' +
        '20,000 results/s with fsyncs on the same two cores and disk (and, on this machine, other people\'s work); in a plant the ' +
        'fleet runs elsewhere. Uncapped, the edge spends ~3× the CPU and the line sees it at p50 already, hence the default cap.',
    ],
    data: { catchUpS: main.catchUpS, resultsPerSecond: main.resultsPerS },
  };
  return section;
};

if (isMain(import.meta.url)) await runStandalone(run);
