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
  /**
   * Per model id in the interval, the shadow candidate included: frames it judged, its defects,
   * frames it failed, p95 of its own inspect time (decode → post-process, no queue wait, so the
   * active model and a shadow candidate compare like for like) and, for a shadow candidate,
   * frames whose verdict matched the active model's.
   */
  perModel: Record<string, ModelFigures>;
}

export interface ModelFigures {
  frames: number;
  defects: number;
  errors?: number;
  latencyP95Ms?: number;
  agreed?: number;
}

export interface Metrics {
  /**
   * One stored result; `modelMs` is the active model's own inspect time. A `shadow` outcome on the
   * record is counted for the candidate.
   */
  result(record: Pick<ResultRecord, 'verdict' | 'model' | 'latencyMs' | 'shadow'>, modelMs?: number): void;
  /** A frame that model `model` (name@version) failed. */
  modelError(model: string): void;
  failure(code: string): void;
  /** Cumulative rejections by error code since start. */
  failures(): Record<string, number>;
  /** Figures since the previous snapshot, then starts a new interval. */
  snapshot(): MetricsSnapshot;
}

/** Latency samples kept per interval; beyond it, reservoir sampling keeps percentiles honest. */
const MAX_SAMPLES = 10_000;
/** The same per model (a p95 needs far fewer). */
const MAX_MODEL_SAMPLES = 1000;

interface ModelCounters {
  frames: number;
  defects: number;
  errors: number;
  agreed: number;
  shadow: boolean;
  seen: number;
  samples: number[];
}

function sample(c: ModelCounters, ms: number): void {
  c.seen++;
  if (c.samples.length < MAX_MODEL_SAMPLES) c.samples.push(ms);
  else {
    const j = Math.floor(Math.random() * c.seen);
    if (j < MAX_MODEL_SAMPLES) c.samples[j] = ms;
  }
}

function modelFigures(c: ModelCounters): ModelFigures {
  const out: ModelFigures = { frames: c.frames, defects: c.defects };
  if (c.errors > 0) out.errors = c.errors;
  if (c.samples.length > 0) out.latencyP95Ms = round(percentile(c.samples.sort((a, b) => a - b), 95));
  if (c.shadow) out.agreed = c.agreed;
  return out;
}

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
  let perModel = new Map<string, ModelCounters>();
  const counters = (model: string) => {
    let c = perModel.get(model);
    if (!c) perModel.set(model, (c = { frames: 0, defects: 0, errors: 0, agreed: 0, shadow: false, seen: 0, samples: [] }));
    return c;
  };

  return {
    result(record, modelMs) {
      frames++;
      const m = counters(record.model);
      m.frames++;
      if (modelMs !== undefined) sample(m, modelMs);
      if (record.verdict === 'defect') {
        defects++;
        m.defects++;
      }
      if (record.shadow) {
        const s = counters(record.shadow.model);
        s.shadow = true;
        if (record.shadow.error !== undefined || record.shadow.verdict === undefined) s.errors++;
        else {
          s.frames++;
          if (record.shadow.verdict === 'defect') s.defects++;
          if (record.shadow.verdict === record.verdict) s.agreed++;
          if (record.shadow.latencyMs !== undefined) sample(s, record.shadow.latencyMs);
        }
      }
      seen++;
      maxLatency = Math.max(maxLatency, record.latencyMs);
      if (samples.length < MAX_SAMPLES) samples.push(record.latencyMs);
      else {
        const j = Math.floor(Math.random() * seen);
        if (j < MAX_SAMPLES) samples[j] = record.latencyMs;
      }
    },
    modelError(model) {
      counters(model).errors++;
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
        perModel: Object.fromEntries([...perModel].map(([id, c]) => [id, modelFigures(c)])),
      };
      start = t;
      cpuStart = process.cpuUsage();
      frames = defects = failed = seen = maxLatency = 0;
      samples = [];
      perModel = new Map();
      return snap;
    },
  };
}
