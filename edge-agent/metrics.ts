/**
 * Counters behind the edge's telemetry: frames, defects, rejections by error code, latency
 * percentiles and per-model counts. Interval figures reset on each snapshot; `failures` is
 * cumulative since start so a dropped telemetry message loses nothing of it.
 */
import os from 'node:os';
import type { ResultRecord } from '../protocol/messages.js';

export interface MetricsSnapshot {
  intervalMs: number;
  frames: number;
  defects: number;
  failed: number;
  failures: Record<string, number>;
  fps: number;
  latencyMs: { count: number; p50: number; p95: number; p99: number; max: number };
  /** Percent of the whole machine (all cores = 100). */
  cpuPercent: number;
  rssBytes: number;
  perModel: Record<string, { frames: number; defects: number }>;
}

export interface Metrics {
  result(record: Pick<ResultRecord, 'verdict' | 'model' | 'latencyMs'>): void;
  failure(code: string): void;
  /** Cumulative rejections by error code since start. */
  failures(): Record<string, number>;
  /** Figures since the previous snapshot, then starts a new interval. */
  snapshot(): MetricsSnapshot;
}

/** Latency samples kept per interval; beyond it, reservoir sampling keeps percentiles honest. */
const MAX_SAMPLES = 10_000;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)]!;
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Creates an empty set of counters; `now` is injectable for tests. */
export function createMetrics(now: () => number = () => performance.now()): Metrics {
  const failuresTotal: Record<string, number> = {};
  const cores = os.availableParallelism();
  let start = now();
  let cpuStart = process.cpuUsage();
  let frames = 0;
  let defects = 0;
  let failed = 0;
  let seen = 0;
  let maxLatency = 0;
  let samples: number[] = [];
  let perModel: Record<string, { frames: number; defects: number }> = {};

  return {
    result(record) {
      frames++;
      const m = (perModel[record.model] ??= { frames: 0, defects: 0 });
      m.frames++;
      if (record.verdict === 'defect') {
        defects++;
        m.defects++;
      }
      seen++;
      maxLatency = Math.max(maxLatency, record.latencyMs);
      if (samples.length < MAX_SAMPLES) samples.push(record.latencyMs);
      else {
        const j = Math.floor(Math.random() * seen);
        if (j < MAX_SAMPLES) samples[j] = record.latencyMs;
      }
    },
    failure(code) {
      failed++;
      failuresTotal[code] = (failuresTotal[code] ?? 0) + 1;
    },
    failures() {
      return { ...failuresTotal };
    },
    snapshot() {
      const t = now();
      const elapsed = Math.max(1, t - start);
      const cpu = process.cpuUsage(cpuStart);
      const sorted = samples.sort((a, b) => a - b);
      const snap: MetricsSnapshot = {
        intervalMs: Math.round(elapsed),
        frames,
        defects,
        failed,
        failures: { ...failuresTotal },
        fps: round((frames * 1000) / elapsed),
        latencyMs: {
          count: frames,
          p50: round(percentile(sorted, 50)),
          p95: round(percentile(sorted, 95)),
          p99: round(percentile(sorted, 99)),
          max: round(maxLatency),
        },
        cpuPercent: round(((cpu.user + cpu.system) / 1000 / elapsed / cores) * 100),
        rssBytes: process.memoryUsage.rss(),
        perModel,
      };
      start = t;
      cpuStart = process.cpuUsage();
      frames = defects = failed = seen = maxLatency = 0;
      samples = [];
      perModel = {};
      return snap;
    },
  };
}
