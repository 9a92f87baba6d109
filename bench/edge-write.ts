/**
 * The edge's write path (issue 5): results persisted per second on one core with the durability
 * the edge ships (WAL, synchronous=FULL: every append fsyncs the WAL before the verdict is
 * answered), against synchronous=NORMAL, and through the retention quota check; and what a power
 * cut can cost in each mode.
 *
 * Each figure is a tight loop of `append()` on the main thread for a fixed time, in a fresh
 * results.db on the benchmark's scratch disk, rows shaped like real results.
 *
 * Standalone: `node dist/bench/edge-write.js [--quick]`.
 */
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openResultStore, type NewResult, type ResultStore } from '../edge-agent/result-store.js';
import { createRetention } from '../edge-agent/retention.js';
import { isMain, runStandalone } from './standalone.js';
import { round, summarize } from './stats.js';
import type { BenchRun, BenchSection } from './types.js';

function row(i: number): NewResult {
  const defect = i % 53 === 0;
  return {
    ts: Date.now(),
    camera: 'cam1',
    source: 'http',
    frame: `part-${String(i).padStart(8, '0')}.jpg`,
    model: 'osprey-demo-anomaly@1.0.3',
    verdict: defect ? 'defect' : 'ok',
    label: defect ? 'anomaly' : 'good',
    score: defect ? 0.83 : 0.11 + (i % 17) / 100,
    latencyMs: 18.25 + (i % 9),
  };
}

interface Loop {
  perSecond: number;
  p50Us: number;
  p99Us: number;
  appends: number;
}

/** Appends accumulated over several slices, so modes measured in turns share the disk's moods. */
class Meter {
  private readonly lat: number[] = [];
  private n = 0;
  private spentMs = 0;
  constructor(private readonly store: Pick<ResultStore, 'append'>) {}
  /** Appends for `ms` milliseconds; per-append latency sampled every 16th call. */
  slice(ms: number): void {
    const t0 = performance.now();
    const end = t0 + ms;
    while (performance.now() < end) {
      const a = performance.now();
      this.store.append(row(this.n));
      if ((this.n & 15) === 0) this.lat.push((performance.now() - a) * 1000);
      this.n++;
    }
    this.spentMs += performance.now() - t0;
  }
  result(): Loop {
    const s = summarize(this.lat);
    return { perSecond: this.n / (this.spentMs / 1000), p50Us: s.p50, p99Us: s.p99, appends: this.n };
  }
}

/**
 * WAL frames one append writes at synchronous=NORMAL, measured with automatic checkpoints off: in
 * WAL mode NORMAL syncs only at checkpoints, so a power cut can roll back every commit since the
 * last one — up to wal_autocheckpoint (1000) pages' worth.
 */
async function framesPerAppend(dir: string, appends: number): Promise<{ frames: number; pageSize: number; atRisk: number }> {
  openResultStore(dir).close();
  const file = join(dir, 'results.db');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('wal_autocheckpoint = 0');
  const pageSize = Number(db.pragma('page_size', { simple: true }));
  const autocheckpoint = 1000;
  const insert = db.prepare(
    `INSERT INTO results (ts, camera, source, frame, model, verdict, label, score, latency_ms)
     VALUES (@ts, @camera, @source, @frame, @model, @verdict, @label, @score, @latencyMs)`,
  );
  db.pragma('wal_checkpoint(TRUNCATE)');
  for (let i = 0; i < appends; i++) insert.run(row(i));
  const walBytes = await stat(`${file}-wal`).then((s) => s.size, () => 0);
  db.close();
  const frames = (walBytes - 32) / (pageSize + 24) / appends;
  return { frames, pageSize, atRisk: Math.floor(autocheckpoint / frames) };
}

const ROUNDS = (quick: boolean) => (quick ? 1 : 10);

/** The edge write-path benchmark (see the file comment). */
export const run: BenchRun = async (opts) => {
  const ms = opts.quick ? 300 : 5000;
  const dirs = ['full', 'guarded', 'normal', 'wal'].map((d) => join(opts.workDir, d));
  for (const d of dirs) await mkdir(d, { recursive: true });

  opts.log(`edge write: ${ms} ms per mode, in ${ROUNDS(opts.quick)} turns`);
  const full = openResultStore(dirs[0]!);
  const fullSettings = full.settings;
  const raw = openResultStore(dirs[1]!);
  const retention = createRetention({
    store: raw,
    config: { ackedMaxAgeMs: 7 * 24 * 3_600_000, maxBytes: 1 << 30, maxRows: 0, intervalMs: 60_000 },
    logger: pino({ level: 'silent' }),
  });
  const normal = openResultStore(dirs[2]!, { durability: 'normal' });
  const meters = [new Meter(full), new Meter(retention.store), new Meter(normal)] as const;
  // Turns, not one long run per mode: a shared disk's fsync time drifts by the minute.
  for (let r = 0; r < ROUNDS(opts.quick); r++) for (const m of meters) m.slice(ms / ROUNDS(opts.quick));
  const [fullLoop, guardedLoop, normalLoop] = meters.map((m) => m.result()) as [Loop, Loop, Loop];
  retention.close();
  for (const s of [full, raw, normal]) s.close();

  const wal = await framesPerAppend(dirs[3]!, opts.quick ? 50 : 500);
  opts.log(`  FULL ${Math.round(fullLoop.perSecond)}/s, guarded ${Math.round(guardedLoop.perSecond)}/s, NORMAL ${Math.round(normalLoop.perSecond)}/s`);

  const us = (n: number) => round(n);
  const section: BenchSection = {
    id: 'edge-write',
    title: 'Edge write path and durability',
    summary:
      `Results persisted per second by \`ResultStore.append\` in a tight loop on one core (${ms / 1000} s per mode in ` +
      `${ROUNDS(opts.quick)} turns, so the modes share the disk's moods; a fresh results.db each), rows shaped like real ` +
      'results. The edge ships WAL with `synchronous=FULL` ' +
      `(reported by SQLite: journal_mode=${fullSettings.journalMode}, synchronous=${fullSettings.synchronous}): each append ` +
      'commits and fsyncs the WAL before the verdict is answered. "Through the quota" is the same through the retention guard ' +
      "(edge-agent/retention.ts), which counts rows on every append and reads the store's size every 16th.",
    figures: [
      {
        name: 'results persisted per second, one core, synchronous=FULL (shipped)',
        value: Math.round(fullLoop.perSecond),
        unit: 'results/s',
        baseline: { name: 'synchronous=NORMAL', value: Math.round(normalLoop.perSecond) },
        note: `append p50 ${us(fullLoop.p50Us)} µs, p99 ${us(fullLoop.p99Us)} µs (fsync included)`,
      },
      {
        name: 'results persisted per second through the quota check',
        value: Math.round(guardedLoop.perSecond),
        unit: 'results/s',
        baseline: { name: 'synchronous=FULL without it', value: Math.round(fullLoop.perSecond) },
        goal: { ratio: '>=', target: 0.9 },
      },
      {
        name: 'answered results a power cut can lose, synchronous=FULL',
        value: 0,
        unit: 'results',
        note: 'every verdict is answered after its commit reached the disk',
      },
      {
        name: 'answered results a power cut can lose, synchronous=NORMAL (not shipped)',
        value: wal.atRisk,
        unit: 'results',
        note: `${round(wal.frames)} WAL frames per append; NORMAL syncs only at checkpoints (every 1000 WAL pages)`,
      },
    ],
    tables: [
      {
        title: 'Per mode',
        columns: ['mode', 'results/s', 'append p50 µs', 'append p99 µs', 'a power cut can lose'],
        rows: [
          ['WAL + FULL (shipped)', Math.round(fullLoop.perSecond), us(fullLoop.p50Us), us(fullLoop.p99Us), 'nothing answered'],
          ['WAL + FULL through the quota check', Math.round(guardedLoop.perSecond), us(guardedLoop.p50Us), us(guardedLoop.p99Us), 'nothing answered'],
          [
            'WAL + NORMAL',
            Math.round(normalLoop.perSecond),
            us(normalLoop.p50Us),
            us(normalLoop.p99Us),
            `up to ~${wal.atRisk} answered results (${round(wal.atRisk / 10)} s at 10 frames/s), whose seqs would then be issued again`,
          ],
        ],
      },
    ],
    notes: [
      'Why FULL: a station runs at 1–30 frames/s, two to three orders of magnitude below what one core persists with FULL, and ' +
        'the fsync is well under a millisecond next to decode and inference. NORMAL would survive a process crash (kill -9 is ' +
        "covered by the fault trials) but a power cut could roll back answered results — and the edge would then give their seqs to " +
        "other frames, which the fleet may already hold under those seqs.",
      'The figures depend on the disk: fsync on an industrial PC\'s SSD with power-loss protection is faster than on a laptop; a disk ' +
        'that lies about fsync makes FULL no safer than NORMAL.',
    ],
    data: { fullPerSecond: fullLoop.perSecond, normalPerSecond: normalLoop.perSecond },
  };
  return section;
};

if (isMain(import.meta.url)) await runStandalone(run);
