/**
 * Benchmark 2: fleet ingest. A real fleet manager (embedded aedes, ingest, SQLite with
 * synchronous=FULL, acks) in a child process; simulated edges in worker processes, each running
 * the real edge sync code over its own MQTT connection (bench/edge-sim-worker.ts).
 *
 * - Backlog: every edge has a backlog (as after an outage) and sends it as the edge does
 *   (batches of 500, 2 in flight, the next batch on each ack). Results stored and acked per
 *   second, the fleet manager's CPU and memory meanwhile. Baseline: the same batches through
 *   `FleetStore.ingestResults` alone, in this process (the storage ceiling).
 * - Live: every edge produces results at a line's pace and syncs as it goes; the fleet's CPU per
 *   edge and the ack latency are the basis of the capacity projection.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { readdirSync, readFileSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { pino } from 'pino';
import { request, type Dispatcher } from 'undici';
import { openSqliteStore } from '../fleet-manager/store.js';
import type { ResultRecord } from '../protocol/messages.js';
import { benchScript, startChild, type BenchChild } from './child.js';
import { enrollBenchEdges, startBenchFleet, type FleetReady } from './fleet-access.js';
import type { BacklogReport, LiveReport, SimSpec } from './edge-sim-worker.js';
import type { FleetChildStats } from './fleet-child.js';
import { round } from './stats.js';
import type { BenchRun, BenchSection, Figure, Table } from './types.js';

interface LivePhase {
  edges: number;
  workers: number;
  /** Results per second per edge (a station's frame rate). */
  fps: number;
  seconds: number;
}

interface Plan {
  /** Edges of the backlog phase (and of the first live phase). */
  edges: number;
  workers: number;
  perEdge: number;
  batchSize: number;
  window: number;
  /** Live phases; the first reuses the backlog's edges, a larger one starts its own. */
  live: LivePhase[];
  /** Batches for the store-only baseline. */
  storeBatches: number;
}

function plan(quick: boolean): Plan {
  if (quick) {
    return {
      edges: 3,
      workers: 1,
      perEdge: 400,
      batchSize: 100,
      window: 2,
      live: [
        { edges: 3, workers: 1, fps: 10, seconds: 0.5 },
        { edges: 8, workers: 2, fps: 10, seconds: 0.5 },
      ],
      storeBatches: 8,
    };
  }
  return {
    edges: 100,
    workers: 2,
    perEdge: 20_000,
    batchSize: 500,
    window: 2,
    // 10 results/s is the station the capacity section asks about: 100 edges (light), then
    // 1000 edges in four simulator processes (the basis of the projection).
    live: [
      { edges: 100, workers: 2, fps: 10, seconds: 20 },
      { edges: 1000, workers: 4, fps: 10, seconds: 20 },
    ],
    storeBatches: 600,
  };
}

const MB = 1024 * 1024;

interface Usage {
  wallS: number;
  cpuS: number;
}

export function usage(a: FleetChildStats, b: FleetChildStats, wallMs: number): Usage {
  return { wallS: wallMs / 1000, cpuS: (b.cpuUserUs + b.cpuSystemUs - a.cpuUserUs - a.cpuSystemUs) / 1e6 };
}

interface HealthBody {
  ingest: { messages: number; dropped: number; resultsStored: number; acksSent: number; storeErrors: number };
}

/** CPU seconds of each thread of a process (Linux /proc; empty elsewhere), by thread id. */
function threadCpu(pid: number | undefined): Map<number, number> {
  const out = new Map<number, number>();
  if (pid === undefined) return out;
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      // Fields after the command name: utime and stime are the 12th and 13th (clock ticks, 100 a second).
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/**
 * CPU µs per result of the fleet's main thread and of its busiest other thread (the storage
 * thread) over a phase; null without /proc.
 */
function threadSplit(pid: number | undefined, a: Map<number, number>, b: Map<number, number>, results: number): { mainUs: number; storageUs: number; restUs: number } | null {
  if (pid === undefined || !b.has(pid)) return null;
  const used = [...b].map(([tid, s]) => [tid, s - (a.get(tid) ?? 0)] as const);
  const main = used.find(([tid]) => tid === pid)?.[1] ?? 0;
  const others = used.filter(([tid]) => tid !== pid).map(([, s]) => s).sort((x, y) => y - x);
  const us = (sec: number) => (sec * 1e6) / results;
  return { mainUs: us(main), storageUs: us(others[0] ?? 0), restUs: us(others.slice(1).reduce((n, x) => n + x, 0)) };
}

/** Bytes of the fleet database with its WAL. */
async function dbBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of ['fleet.db', 'fleet.db-wal']) total += await stat(join(dir, f)).then((s) => s.size, () => 0);
  return total;
}

/** The fleet's /health (public); `dispatcher` trusts its CA with TLS. */
export async function health(httpUrl: string, dispatcher?: Dispatcher): Promise<HealthBody> {
  const res = await request(`${httpUrl}/health`, dispatcher ? { dispatcher } : {});
  return (await res.body.json()) as HealthBody;
}

/** Rows shaped like the simulator's, for the store-only baseline. */
function rows(edgeId: string, from: number, count: number): ResultRecord[] {
  return Array.from({ length: count }, (_, i) => {
    const seq = from + i;
    const defect = seq % 37 === 0;
    return {
      seq,
      ts: 1_700_000_000_000 + seq * 100,
      camera: 'cam1',
      source: 'simulated' as const,
      frame: `${edgeId}-cam1-${String(seq).padStart(8, '0')}.jpg`,
      model: 'bench-resnet18-224@1.0.1',
      verdict: defect ? ('defect' as const) : ('ok' as const),
      label: defect ? 'class-3' : 'good',
      score: defect ? 0.91 : 0.02 + (seq % 13) / 100,
      latencyMs: 21.5 + (seq % 7),
    };
  });
}

/**
 * The storage ceiling: the same batches straight into FleetStore.ingestResults, in this process,
 * one batch per edge at a time with every edge's batch handed in together (as ingest does when
 * every edge has a batch waiting). JSON parsing, validation, MQTT and acks are what the full path
 * adds to it.
 */
async function storeOnly(dir: string, p: Plan): Promise<number> {
  const store = openSqliteStore({ file: join(dir, 'store-only.db'), logger: pino({ level: 'silent' }) });
  try {
    const edges = Array.from({ length: p.edges }, (_, i) => `store-edge-${i}`);
    const next = new Map(edges.map((e) => [e, 1]));
    // Pre-built, so the figure is the store's and not the row generator's.
    const batches = Array.from({ length: p.storeBatches }, (_, i) => {
      const edgeId = edges[i % edges.length]!;
      const from = next.get(edgeId)!;
      next.set(edgeId, from + p.batchSize);
      return { edgeId, results: rows(edgeId, from, p.batchSize) };
    });
    const meta = () => ({ receivedAt: Date.now() });
    await store.ingestResults('warm-up', rows('warm-up', 1, p.batchSize), meta());
    const t0 = performance.now();
    for (let i = 0; i < batches.length; i += p.edges) {
      await Promise.all(batches.slice(i, i + p.edges).map((b) => store.ingestResults(b.edgeId, b.results, meta())));
    }
    return (p.storeBatches * p.batchSize) / ((performance.now() - t0) / 1000);
  } finally {
    await store.close();
  }
}

export type Sims = BenchChild<{ edges: number }>[];

/** Starts `edges` simulated edges in `workers` processes and waits until all are connected. */
/**
 * Starts `workers` simulator processes sharing `edges` edges, each enrolled on the fleet (with
 * authentication on) and trusting its CA (with TLS).
 */
export async function startSims(fleet: BenchChild<FleetReady>, fleetDir: string, workDir: string, prefix: string, edges: number, workers: number, p: Pick<Plan, 'batchSize' | 'window'>): Promise<Sims> {
  const sims: Sims = [];
  const perWorker = Math.ceil(edges / workers);
  const { mqttUrl, access } = fleet.ready;
  const groups = Array.from({ length: workers }, (_, w) => ({
    line: `line-${w % 4}`,
    edgeIds: Array.from({ length: Math.min(perWorker, edges - w * perWorker) }, (_, i) => `${prefix}-${String(w * perWorker + i).padStart(4, '0')}`),
  }));
  // All enrolled before any edge connects: enrollment writes fleet.db from this process, and
  // SQLite refuses a write transaction whose snapshot another process's commit made stale.
  const credentialFiles = await enrollBenchEdges(access, fleetDir, join(workDir, `${prefix}-credentials`), groups.flatMap((g) => g.edgeIds.map((id) => ({ id, line: g.line }))));
  try {
    for (const [w, { line, edgeIds }] of groups.entries()) {
      const spec: SimSpec = {
        mqttUrl,
        ...(credentialFiles ? { credentialFiles } : {}),
        ...(access.caFile ? { caFile: access.caFile } : {}),
        edgeIds,
        line,
        batchSize: p.batchSize,
        window: p.window,
        telemetryIntervalMs: 10_000,
      };
      const specFile = join(workDir, `${prefix}-${w}.json`);
      await writeFile(specFile, JSON.stringify(spec));
      sims.push(await startChild<{ edges: number }>(benchScript('./edge-sim-worker.js'), [specFile], { readyTimeoutMs: 120_000 }));
    }
  } catch (err) {
    await Promise.all(sims.map((w) => w.close(10_000)));
    throw err;
  }
  return sims;
}

interface LiveOutcome extends LivePhase {
  usage: Usage;
  reports: LiveReport[];
  /** Fleet RSS with these edges connected, before the phase. */
  rssConnectedBytes: number;
  produced: number;
  ackP50: number;
  ackP99: number;
  meanBatch: number;
}

async function runLive(fleet: BenchChild<FleetReady>, sims: Sims, phase: LivePhase): Promise<LiveOutcome> {
  const a = await fleet.request<FleetChildStats>('stats');
  const t0 = performance.now();
  const reports = await Promise.all(sims.map((w) => w.request<LiveReport>('live', { fps: phase.fps, seconds: phase.seconds }, 300_000)));
  const b = await fleet.request<FleetChildStats>('stats');
  const produced = reports.reduce((n, r) => n + r.produced, 0);
  return {
    ...phase,
    // The drain after the run is part of the work; CPU over the whole window.
    usage: usage(a, b, performance.now() - t0),
    reports,
    rssConnectedBytes: a.rssBytes,
    produced,
    // Each worker's percentiles; the worst worker's stands for the fleet (a conservative merge).
    ackP50: Math.max(...reports.map((r) => r.ackLatency.p50)),
    ackP99: Math.max(...reports.map((r) => r.ackLatency.p99)),
    meanBatch: reports.reduce((n, r) => n + r.meanBatch * r.produced, 0) / Math.max(1, produced),
  };
}

/** Runs benchmark 2 (see the file comment). */
export const run: BenchRun = async (opts) => {
  const p = plan(opts.quick);
  const { log } = opts;

  log(`fleet ingest: store-only baseline (${p.storeBatches} batches of ${p.batchSize})`);
  const storeRate = await storeOnly(opts.workDir, p);
  log(`  store only: ${Math.round(storeRate)} results/s`);

  const fleetDir = join(opts.workDir, 'fleet');
  const fleet = await startBenchFleet(fleetDir, {
    start: { execArgv: process.env.OSPREY_BENCH_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir', process.env.OSPREY_BENCH_CPU_PROF] : [] },
  });
  let sims: Sims = [];
  try {
    const idle0 = await fleet.request<FleetChildStats>('stats');
    sims = await startSims(fleet, fleetDir, opts.workDir, 'sim', p.edges, p.workers, p);
    const connected = await fleet.request<FleetChildStats>('stats');
    log(`  ${p.edges} edges connected in ${p.workers} simulator process(es); fleet RSS ${Math.round(connected.rssBytes / MB)} MB`);

    // Backlog: every edge at once, as fast as its acks allow.
    const bytes0 = await dbBytes(fleetDir);
    const before = await health(fleet.ready.httpUrl);
    const simCpu = async () => (await Promise.all(sims.map((w) => w.request<{ cpuUs: number }>('usage')))).reduce((n, u) => n + u.cpuUs, 0);
    const s0 = await fleet.request<FleetChildStats>('stats');
    const threads0 = threadCpu(fleet.process.pid);
    const sim0 = await simCpu();
    const t0 = performance.now();
    const reports = await Promise.all(sims.map((w) => w.request<BacklogReport>('backlog', { perEdge: p.perEdge }, 900_000)));
    const wallMs = performance.now() - t0;
    const s1 = await fleet.request<FleetChildStats>('stats');
    const threads1 = threadCpu(fleet.process.pid);
    const simPercent = ((await simCpu()) - sim0) / 10 / wallMs;
    const after = await health(fleet.ready.httpUrl);
    const total = reports.reduce((n, r) => n + r.results, 0);
    const stored = after.ingest.resultsStored - before.ingest.resultsStored;
    if (stored !== total) throw new Error(`fleet stored ${stored} results, ${total} were sent and acked`);
    const backlog = usage(s0, s1, wallMs);
    const split = threadSplit(fleet.process.pid, threads0, threads1, total);
    const bytesPerResult = ((await dbBytes(fleetDir)) - bytes0) / total;
    const rate = total / backlog.wallS;
    log(`  backlog: ${total} results in ${backlog.wallS.toFixed(1)} s = ${Math.round(rate)} results/s, fleet CPU ${Math.round((backlog.cpuS / backlog.wallS) * 100)}%`);

    // Live: a line's pace, first with the same edges, then with many more.
    const lives: LiveOutcome[] = [];
    for (const [i, phase] of p.live.entries()) {
      if (i > 0 || phase.edges !== p.edges) {
        await Promise.all(sims.map((w) => w.close(10_000)));
        sims = [];
        sims = await startSims(fleet, fleetDir, opts.workDir, `live${i}`, phase.edges, phase.workers, p);
      }
      const l = await runLive(fleet, sims, phase);
      lives.push(l);
      log(`  live ${phase.edges} edges × ${phase.fps}/s: fleet CPU ${Math.round((l.usage.cpuS / l.usage.wallS) * 100)}%, ack p50 ${round(l.ackP50)} ms, p99 ${round(l.ackP99)} ms, mean batch ${round(l.meanBatch)}`);
    }
    const end = await health(fleet.ready.httpUrl);
    const sEnd = await fleet.request<FleetChildStats>('stats');
    const largest = lives[lives.length - 1]!;
    const rssPerEdgeKiB = ((largest.rssConnectedBytes - idle0.rssBytes) / largest.edges) / 1024;

    const figures: Figure[] = [
      {
        name: `${p.edges} edges, backlog sync: results stored and acked`,
        value: Math.round(rate),
        unit: 'results/s',
        baseline: { name: 'FleetStore.ingestResults alone', value: Math.round(storeRate) },
        goal: { value: '>=', target: 100_000 },
        note: `${total.toLocaleString('en-US')} results, batches of ${p.batchSize}, ${p.window} in flight per edge`,
      },
      {
        name: 'fleet manager CPU during backlog sync',
        value: Math.round((backlog.cpuS / backlog.wallS) * 100),
        unit: '% of one core',
        note:
          `${round((backlog.cpuS * 1e6) / total)} µs CPU per result` +
          (split ? ` (main thread ${round(split.mainUs)} µs, storage thread ${round(split.storageUs)} µs, the other threads ${round(split.restUs)} µs)` : '') +
          `; the simulated edges meanwhile: ${Math.round(simPercent)} % of one core`,
      },
      {
        name: 'fleet database growth',
        value: round(bytesPerResult),
        unit: 'bytes/result',
        note: 'fleet.db + WAL: rows, their three indexes and the per-minute line statistics',
      },
      {
        name: 'fleet manager RSS (peak)',
        value: round(sEnd.maxRssBytes / MB),
        unit: 'MB',
        note: `idle: ${round(idle0.rssBytes / MB)} MB; ${largest.edges} edges connected: ${round(largest.rssConnectedBytes / MB)} MB (${round(rssPerEdgeKiB)} KiB per edge)`,
      },
    ];
    for (const l of lives) {
      figures.push(
        {
          name: `${l.edges} edges × ${l.fps} results/s live: fleet manager CPU`,
          value: round((l.usage.cpuS / l.usage.wallS) * 100),
          unit: '% of one core',
          note: `${round((l.usage.cpuS * 1e6) / Math.max(1, l.produced))} µs CPU per result; mean batch ${round(l.meanBatch)} results`,
        },
        {
          name: `${l.edges} edges × ${l.fps} results/s live: result → ack p99`,
          value: round(l.ackP99),
          unit: 'ms',
          note: `p50 ${round(l.ackP50)} ms (from the result's creation at the edge to the fleet's ack covering it)`,
        },
      );
    }
    const table: Table = {
      title: 'Phases',
      columns: ['phase', 'results', 'wall s', 'fleet CPU s', 'CPU µs/result', 'mean batch', 'ack p50 / p99 ms'],
      rows: [
        ['store only (baseline, in process)', p.storeBatches * p.batchSize, round((p.storeBatches * p.batchSize) / storeRate), '', '', p.batchSize, ''],
        [`backlog, ${p.edges} edges`, total, round(backlog.wallS), round(backlog.cpuS), round((backlog.cpuS * 1e6) / total), p.batchSize, ''],
        ...lives.map((l) => [
          `live, ${l.edges} edges × ${l.fps}/s for ${l.seconds} s`,
          l.produced,
          round(l.usage.wallS),
          round(l.usage.cpuS),
          round((l.usage.cpuS * 1e6) / Math.max(1, l.produced)),
          round(l.meanBatch),
          `${round(l.ackP50)} / ${round(l.ackP99)}`,
        ]),
      ],
    };
    const section: BenchSection = {
      id: 'fleet-ingest',
      title: 'Fleet ingest',
      summary:
        `Simulated edges in separate processes, each edge with its own MQTT connection and the real edge sync code ` +
        '(`edge-agent/fleet-link.ts`: batches with seqs, 2 in flight, the next on each ack, resends; only the result store ' +
        'is an in-memory stand-in) → the embedded aedes broker → ingest (JSON, ajv, per-edge ordering) → the storage thread: ' +
        'SQLite (WAL, synchronous=FULL) → ack. The fleet manager runs alone in a child process, so its CPU and memory are its own. ' +
        'Every result sent in the backlog is checked stored (`/health` counters) before its rate is reported.',
      figures,
      tables: [table],
      notes: [
        'Tuned earlier (fleet-manager/store.ts): batches handed to the store in the same event-loop turn (from different ' +
          'edges) share one transaction and one fsync (group commit; each batch keeps its own savepoint, outcome and ack, ' +
          'sent after the commit); WAL checkpoints every 5000 pages instead of 1000; 8 KiB pages for new databases. Before ' +
          'them this benchmark gave about 45,000 results/s on the 2-core dev machine, bound by commits.',
        'Tuned for issue 6 (fleet-manager/store-db.ts): line statistics come from `line_minutes`, counts per line × minute × ' +
          'verdict × label × model kept in the same transaction as the rows, instead of the covering index results_line_ts ' +
          '(a fifth B-tree entry per result, the widest); stats with whole-minute buckets read the aggregate plus the rows of ' +
          'the partial minutes at either end, finer buckets read the rows (results_ts). The ack walk goes over the batch\'s ' +
          'own seqs instead of reading them back, and a result without a shadow outcome binds 13 values instead of 19. ' +
          'Before (same code otherwise, on the AMD EPYC machine): 84,393 results/s at 11.6 µs CPU per result on a quiet ' +
          'machine, 81,624 results/s in a same-day run; the store alone (the baseline) went from ~119,000 to ' +
          '150,000–180,000 results/s in same-day runs; after, 142,494 results/s at 6.91 µs. This run: ' +
          `${round((backlog.cpuS * 1e6) / total)} µs CPU per result on the machine above (CPUs differ between runs: ` +
          'compare the ratio to the store alone).',
        'Issue 18: the whole SQLite storage runs on one storage thread (fleet-manager/storage.ts, docs/storage.md): every ' +
          'store over one connection, so every writer of fleet.db is behind that thread (an earlier try with only the ' +
          'results store on a worker, beside the main thread\'s own connections, stalled their writes on the WAL lock). ' +
          'The main thread keeps the broker, MQTT, JSON + ajv and the acks; the storage thread the inserts, the commits ' +
          'and their fsyncs. A batch crosses as one message with its results as columns (numbers in one Float64Array): ' +
          'structured clone of the 500 objects cost ~5 µs a result on the two threads together, the columns about a third. ' +
          'A group commit takes at most 40,000 rows, so the acks of one group go out (and the edges send again) while ' +
          'the next is written; without the cap the whole window of every edge (100 × 2 × 500 results) became one group ' +
          'and the threads took turns instead of overlapping (1M-result backlogs in same-load pairs on the loaded dev ' +
          'machine: no cap ~40k results/s, 10,000 rows ~46k, 40,000 ~63k, 80,000 ~56k).',
        'Issue 18, the storage thread\'s cost per result (same-machine `--only fleet-ingest` runs, 2M results, one change ' +
          'at a time): a batch of new rows goes 20 rows per INSERT, falling back to row by row when a chunk inserts fewer ' +
          'rows than it holds (fleet-manager/result-insert.ts): 91.6k → 98.2k results/s. `results` keyed by an integer ' +
          'store key (schema 5) instead of the 36-character store id in every row and in the UNIQUE key: 101.8k, and 211 ' +
          'instead of 294 bytes a result. The columns carry cameras, sources, models, verdicts and labels as codes into the ' +
          'batch\'s distinct words, and the aggregates build no key string per row: 121.1k (storage thread 8.7 → 6.3 µs ' +
          'a result).',
        'What limits the rest (per-thread CPU from /proc, profiles with `OSPREY_BENCH_CPU_PROF`): in the backlog the ' +
          'storage thread has no idle sample between its first and last second, so its cost per result is the ceiling: ' +
          'SQLite\'s insert into the table and its three indexes (~55 % of its time), the commit (~13 %), garbage ' +
          'collection (~11 %). The main thread (MQTT through the embedded broker, JSON.parse + ajv, the columns, the ' +
          'acks) is idle about 40 % of the time; the simulated edges take ~3 µs a result.',
        ...(end.ingest.dropped > 0 ? [`${end.ingest.dropped} messages dropped by ingest (see the fleet log)`] : []),
      ],
      data: {
        backlogResultsPerSecond: rate,
        backlogCpuUsPerResult: (backlog.cpuS * 1e6) / total,
        ...(split ? { backlogMainThreadUsPerResult: split.mainUs, backlogStorageThreadUsPerResult: split.storageUs } : {}),
        backlogBatch: p.batchSize,
        edges: p.edges,
        storeOnlyResultsPerSecond: storeRate,
        bytesPerResult,
        fleetRssIdleMB: idle0.rssBytes / MB,
        fleetRssPeakMB: sEnd.maxRssBytes / MB,
        rssPerEdgeKiB,
        ...Object.fromEntries(
          lives.flatMap((l, i) => {
            const key = i === lives.length - 1 ? 'scale' : `live${i}`;
            return [
              [`${key}.edges`, l.edges],
              [`${key}.fps`, l.fps],
              [`${key}.cpuPercent`, (l.usage.cpuS / l.usage.wallS) * 100],
              [`${key}.cpuUsPerResult`, (l.usage.cpuS * 1e6) / Math.max(1, l.produced)],
              [`${key}.resultsPerSecond`, l.produced / l.seconds],
              [`${key}.ackP50Ms`, l.ackP50],
              [`${key}.ackP99Ms`, l.ackP99],
              [`${key}.meanBatch`, l.meanBatch],
            ];
          }),
        ),
      },
    };
    return section;
  } finally {
    await Promise.all(sims.map((w) => w.close(10_000)));
    await fleet.close();
  }
};
