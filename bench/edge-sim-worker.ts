/**
 * Simulated edges for the ingest benchmark: one process runs many edges, each with the real
 * edge sync code (edge-agent/fleet-link.ts: results batches with seqs, window, application acks,
 * resends, state, telemetry) over its own mqtt.js connection. Only the result store is
 * synthetic: an in-memory log whose rows are generated on demand, so a backlog of millions costs
 * nothing to set up and the simulator spends its CPU on what a real edge spends it on (reading a
 * batch, encoding it, MQTT).
 *
 * argv[2]: JSON `SimSpec`. Messages from the parent:
 * - `{ type: 'backlog', perEdge }`: every edge gets `perEdge` new results at once (an edge back
 *   from an outage); answered with `{ type: 'backlog', ms, results }` once all are acked.
 * - `{ type: 'live', fps, seconds }`: every edge produces `fps` results/s for `seconds` (staggered),
 *   syncing as it goes; answered with `{ type: 'live', ... }` once the last is acked.
 * - `{ type: 'usage' }`: answered with `{ type: 'usage', cpuUs }` (this process's CPU so far).
 * - `{ type: 'close' }`.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { destination, pino } from 'pino';
import { createFleetLink, type FleetLink } from '../edge-agent/fleet-link.js';
import { readFleetCredential } from '../edge-agent/fleet-credential.js';
import { loadEdgeFleetTls } from '../edge-agent/fleet-tls.js';
import type { EdgeConfig } from '../edge-agent/config.js';
import type { ResultStore } from '../edge-agent/result-store.js';
import type { ResultRecord } from '../protocol/messages.js';
import { oneLine } from '../protocol/errors.js';

export interface SimSpec {
  mqttUrl: string;
  /** Edge id → its credential file (bench/fleet-access.ts enrollBenchEdges); absent: authentication off. */
  credentialFiles?: Record<string, string>;
  /** The fleet's CA (mqtts:// URL): as an edge's fleet.caFile. */
  caFile?: string;
  edgeIds: string[];
  line: string;
  batchSize: number;
  window: number;
  telemetryIntervalMs: number;
}

export interface BacklogReport {
  type: 'backlog';
  ms: number;
  results: number;
}

export interface LiveReport {
  type: 'live';
  produced: number;
  /** Results acked within the run plus the drain after it. */
  acked: number;
  /** Time from a result's creation to the fleet's ack covering it (ms). */
  ackLatency: { p50: number; p99: number; max: number };
  /** Mean results per batch sent during the run. */
  meanBatch: number;
  /** Largest backlog of one edge seen at a production tick. */
  maxPending: number;
  drainMs: number;
}

const MODEL = 'bench-resnet18-224@1.0.1';

/**
 * The part of ResultStore the fleet link uses, in memory. Rows are a pure function of the seq,
 * apart from `ts`, which is the creation time recorded for live results.
 */
class SyntheticStore {
  lastSeq = 0;
  ackedSeq = 0;
  readonly storeId = randomUUID().replace(/-/g, '');
  readonly file = ':synthetic:';
  /** Creation time of live results not yet acked, in seq order (for the ack latency). */
  private readonly born: { seq: number; at: number }[] = [];
  private readonly tsBase = Date.now();
  constructor(
    private readonly edgeId: string,
    private readonly onAckLatency: (ms: number) => void,
  ) {}

  get pending(): number {
    return this.lastSeq - this.ackedSeq;
  }

  produce(count: number, live: boolean): void {
    if (live) this.born.push({ seq: this.lastSeq + count, at: performance.now() });
    this.lastSeq += count;
  }

  pendingAfter(afterSeq: number, limit: number): ResultRecord[] {
    const rows: ResultRecord[] = [];
    const end = Math.min(this.lastSeq, afterSeq + limit);
    for (let seq = afterSeq + 1; seq <= end; seq++) {
      const defect = seq % 37 === 0;
      rows.push({
        seq,
        ts: this.tsBase + seq * 100,
        camera: 'cam1',
        source: 'simulated',
        frame: `${this.edgeId}-cam1-${String(seq).padStart(8, '0')}.jpg`,
        model: MODEL,
        verdict: defect ? 'defect' : 'ok',
        label: defect ? 'class-3' : 'good',
        score: defect ? 0.91 : 0.02 + (seq % 13) / 100,
        latencyMs: 21.5 + (seq % 7),
      });
    }
    return rows;
  }

  markAcked(seq: number): number {
    const target = Math.min(seq, this.lastSeq);
    if (target > this.ackedSeq) this.ackedSeq = target;
    const now = performance.now();
    while (this.born.length > 0 && this.born[0]!.seq <= this.ackedSeq) this.onAckLatency(now - this.born.shift()!.at);
    return this.ackedSeq;
  }
}

interface SimEdge {
  id: string;
  store: SyntheticStore;
  link: FleetLink;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as SimSpec;
  const logger = pino({ level: 'warn' }, destination(2));
  let ackLatencies: number[] = [];
  // As a real edge: its enrolled credential, and the fleet's CA (the download dispatcher is not used here).
  const tls = spec.caFile ? await loadEdgeFleetTls({ fleet: { mqttUrl: spec.mqttUrl, caFile: spec.caFile } } as Pick<EdgeConfig, 'fleet'>) : undefined;
  await tls?.dispatcher.close();
  const credentials = new Map<string, { username: string; password: string }>();
  for (const id of spec.edgeIds) {
    const file = spec.credentialFiles?.[id];
    if (file) credentials.set(id, (await readFleetCredential(file, undefined)).mqtt(id));
  }
  const edges: SimEdge[] = spec.edgeIds.map((id) => {
    const store = new SyntheticStore(id, (ms) => ackLatencies.push(ms));
    const login = credentials.get(id);
    const link = createFleetLink({
      edgeId: id,
      mqttUrl: spec.mqttUrl,
      ...(login ? { credentials: login } : {}),
      ...(tls ? { tls } : {}),
      // The link reads and acks through the ResultStore surface only; the rest is never called.
      store: store as unknown as ResultStore,
      sync: { batchSize: spec.batchSize, window: spec.window, intervalMs: 2000, ackTimeoutMs: 10_000 },
      telemetryIntervalMs: spec.telemetryIntervalMs,
      logger: logger.child({ edgeId: id }),
      state: () => ({
        line: spec.line,
        cameras: ['cam1'],
        agentVersion: 'bench',
        startedAt: Date.now(),
        active: { name: 'bench-resnet18-224', version: '1.0.1' },
      }),
      telemetry: () => ({
        intervalMs: spec.telemetryIntervalMs,
        frames: 0,
        defects: 0,
        failed: 0,
        failures: {},
        fps: 0,
        latencyMs: { count: 0, p50: 0, p95: 0, p99: 0, max: 0 },
        queueDepth: 0,
        lastSeq: store.lastSeq,
        ackedSeq: store.ackedSeq,
        pendingResults: store.pending,
        cpuPercent: 0,
        rssBytes: 0,
        perModel: {},
      }),
    });
    return { id, store, link };
  });
  for (const e of edges) e.link.start();
  const deadline = Date.now() + 60_000;
  while (edges.some((e) => !e.link.connected)) {
    if (Date.now() > deadline) throw new Error(`${edges.filter((e) => !e.link.connected).length} edges not connected after 60 s`);
    await new Promise((r) => setTimeout(r, 20));
  }

  const allAcked = () => edges.every((e) => e.store.ackedSeq >= e.store.lastSeq);
  async function drained(timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!allAcked()) {
      if (Date.now() > end) throw new Error(`not all results acked after ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }
  const batches = () => edges.reduce((n, e) => n + e.link.stats.batchesSent, 0);

  process.on('message', (msg: { type?: string; perEdge?: number; fps?: number; seconds?: number }) => {
    if (msg.type === 'backlog') {
      void (async () => {
        const t0 = performance.now();
        for (const e of edges) {
          e.store.produce(msg.perEdge!, false);
          e.link.notifyResults();
        }
        await drained(600_000);
        const report: BacklogReport = { type: 'backlog', ms: performance.now() - t0, results: msg.perEdge! * edges.length };
        process.send?.(report);
      })().catch((err: unknown) => process.send?.({ type: 'error', message: oneLine(err) }));
    } else if (msg.type === 'live') {
      void (async () => {
        ackLatencies = [];
        const period = 1000 / msg.fps!;
        const batches0 = batches();
        const sent0 = edges.reduce((n, e) => n + e.link.stats.resultsSent, 0);
        let produced = 0;
        let maxPending = 0;
        const timers: NodeJS.Timeout[] = [];
        // Staggered like cameras that were not switched on in the same millisecond.
        for (const [i, e] of edges.entries()) {
          const start = setTimeout(() => {
            timers.push(
              setInterval(() => {
                e.store.produce(1, true);
                produced++;
                if (e.store.pending > maxPending) maxPending = e.store.pending;
                e.link.notifyResults();
              }, period),
            );
          }, (i * period) / edges.length);
          timers.push(start);
        }
        await new Promise((r) => setTimeout(r, msg.seconds! * 1000));
        for (const t of timers) clearInterval(t);
        const t1 = performance.now();
        await drained(120_000);
        const sent = edges.reduce((n, e) => n + e.link.stats.resultsSent, 0) - sent0;
        const sorted = [...ackLatencies].sort((a, b) => a - b);
        const report: LiveReport = {
          type: 'live',
          produced,
          acked: sorted.length,
          ackLatency: { p50: percentile(sorted, 50), p99: percentile(sorted, 99), max: sorted[sorted.length - 1] ?? 0 },
          meanBatch: sent / Math.max(1, batches() - batches0),
          maxPending,
          drainMs: performance.now() - t1,
        };
        process.send?.(report);
      })().catch((err: unknown) => process.send?.({ type: 'error', message: oneLine(err) }));
    } else if (msg.type === 'usage') {
      const cpu = process.cpuUsage();
      process.send?.({ type: 'usage', cpuUs: cpu.user + cpu.system });
    } else if (msg.type === 'close') {
      void Promise.all(edges.map((e) => e.link.close({ finalSyncMs: 0 }))).finally(() => process.exit(0));
    }
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ type: 'ready', edges: edges.length });
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: oneLine(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
