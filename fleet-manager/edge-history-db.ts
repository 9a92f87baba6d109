/**
 * An edge's recent past, in the fleet database: its telemetry downsampled to one row per minute
 * (`telemetry_minutes`, kept for TELEMETRY_RETENTION_MS), and its latest verdicts with their scores
 * (read from `results`) for threshold previews and a live rollout stage's baseline defect rate.
 * Each minute also keeps the edge's image health and score drift figures (telemetry `monitor`). Synchronous (better-sqlite3); store.ts puts
 * FleetStore's asynchronous interface on top.
 */
import type Database from 'better-sqlite3';
import type { TelemetryMessage } from '../protocol/messages.js';
import type { TelemetryMinute, VerdictScore } from './store.js';
import { addMissingColumns } from './store-migrations.js';

/** Telemetry history kept per edge: 7 days of minutes (at most 10 080 rows an edge). */
export const TELEMETRY_RETENTION_MS = 7 * 86_400_000;
const MINUTE_MS = 60_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS telemetry_minutes (
  edge_id TEXT NOT NULL,
  minute INTEGER NOT NULL,
  samples INTEGER NOT NULL,
  at INTEGER NOT NULL,
  fps REAL NOT NULL,
  p50 REAL NOT NULL,
  p95 REAL NOT NULL,
  queue INTEGER NOT NULL,
  cpu REAL NOT NULL,
  rss INTEGER NOT NULL,
  frames INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  result_bytes INTEGER,
  image_bytes INTEGER,
  PRIMARY KEY (edge_id, minute)
) WITHOUT ROWID;
`;

/** A row of `telemetry_minutes` as either database reads it. */
export interface TelemetryMinuteRow {
  minute: number;
  samples: number;
  at: number;
  fps: number;
  p50: number;
  p95: number;
  queue: number;
  cpu: number;
  rss: number;
  frames: number;
  failed: number;
  result_bytes: number | null;
  image_bytes: number | null;
  brightness: number | null;
  brightness_ref: number | null;
  contrast: number | null;
  contrast_ref: number | null;
  sharpness: number | null;
  sharpness_ref: number | null;
  shift_x: number | null;
  shift_y: number | null;
  score_psi: number | null;
  defect_rate: number | null;
  defect_rate_ref: number | null;
}

/**
 * The edge's image health and score drift figures (telemetry `monitor`, issue 17): nullable
 * columns added to tables made by older builds. Within a minute each keeps its latest reported
 * value (they are rolling medians and rates already).
 */
export const MONITOR_COLUMNS = [
  ['brightness', 'brightness', 'brightness'],
  ['brightness_ref', 'brightnessRef', 'brightnessReference'],
  ['contrast', 'contrast', 'contrast'],
  ['contrast_ref', 'contrastRef', 'contrastReference'],
  ['sharpness', 'sharpness', 'sharpness'],
  ['sharpness_ref', 'sharpnessRef', 'sharpnessReference'],
  ['shift_x', 'shiftX', 'shiftX'],
  ['shift_y', 'shiftY', 'shiftY'],
  ['score_psi', 'scorePsi', 'scorePsi'],
  ['defect_rate', 'defectRate', 'defectRate'],
  ['defect_rate_ref', 'defectRateRef', 'defectRateReference'],
] as const;

export interface EdgeHistoryDb {
  /** Folds one telemetry report into its minute and drops the edge's minutes past retention. */
  recordTelemetry(edgeId: string, t: TelemetryMessage, receivedAt: number): void;
  /** The edge's minutes in [from, to), oldest first. */
  telemetryHistory(edgeId: string, from: number, to: number): TelemetryMinute[];
  /** The edge's latest `limit` results' verdict, label and score, newest first. */
  recentVerdicts(edgeId: string, limit: number): VerdictScore[];
  /** How many of the edge's latest `limit` results not produced by `excludeModel` there are, and how many are defects. */
  recentDefectRate(edgeId: string, excludeModel: string, limit: number): { frames: number; defects: number };
}

/** Creates or upgrades the telemetry history table (part of the fleet schema, store-db.ts). */
export function migrateEdgeHistorySchema(db: Database.Database): void {
  db.exec(SCHEMA);
  addMissingColumns(db, 'telemetry_minutes', MONITOR_COLUMNS.map(([column]) => [column, 'REAL'] as const));
}

/**
 * Prepares the statements (the table made by migrateEdgeHistorySchema). Within a minute: fps,
 * p50 and CPU are averaged over the reports, p95, queue depth and memory are the worst, frames
 * and rejections are summed, storage and the monitor figures are the latest reported.
 */
export function createEdgeHistoryDb(db: Database.Database): EdgeHistoryDb {
  const monitorColumns = MONITOR_COLUMNS.map(([column]) => `, ${column}`).join('');
  const monitorParams = MONITOR_COLUMNS.map(([, param]) => `, @${param}`).join('');
  const monitorUpdates = MONITOR_COLUMNS.map(([column]) => `\n         ${column} = coalesce(excluded.${column}, ${column}),`).join('');
  const st = {
    upsert: db.prepare(
      `INSERT INTO telemetry_minutes (edge_id, minute, samples, at, fps, p50, p95, queue, cpu, rss, frames, failed, result_bytes, image_bytes${monitorColumns})
       VALUES (@edgeId, @minute, 1, @at, @fps, @p50, @p95, @queue, @cpu, @rss, @frames, @failed, @resultBytes, @imageBytes${monitorParams})
       ON CONFLICT (edge_id, minute) DO UPDATE SET
         fps = (fps * samples + excluded.fps) / (samples + 1),
         p50 = (p50 * samples + excluded.p50) / (samples + 1),
         cpu = (cpu * samples + excluded.cpu) / (samples + 1),
         p95 = max(p95, excluded.p95),
         queue = max(queue, excluded.queue),
         rss = max(rss, excluded.rss),
         frames = frames + excluded.frames,
         failed = failed + excluded.failed,
         result_bytes = coalesce(excluded.result_bytes, result_bytes),
         image_bytes = coalesce(excluded.image_bytes, image_bytes),${monitorUpdates}
         at = max(at, excluded.at),
         samples = samples + 1`,
    ),
    prune: db.prepare<[string, number]>('DELETE FROM telemetry_minutes WHERE edge_id = ? AND minute < ?'),
    range: db.prepare<[string, number, number], TelemetryMinuteRow>(
      'SELECT * FROM telemetry_minutes WHERE edge_id = ? AND minute >= ? AND minute < ? ORDER BY minute',
    ),
    // results_edge_ts walks the edge's newest rows first.
    recent: db.prepare<[string, number], VerdictScore>(
      'SELECT verdict, label, score FROM results WHERE edge_id = ? ORDER BY ts DESC, id DESC LIMIT ?',
    ),
    // The same newest-first walk, skipping one model's rows (a rollout's live baseline).
    recentDefects: db.prepare<[string, string, number], { frames: number; defects: number | null }>(
      `SELECT count(*) AS frames, sum(verdict = 'defect') AS defects
       FROM (SELECT verdict FROM results WHERE edge_id = ? AND model != ? ORDER BY ts DESC LIMIT ?)`,
    ),
  };
  const record = db.transaction((edgeId: string, t: TelemetryMessage, receivedAt: number) => {
    const minute = Math.floor(receivedAt / MINUTE_MS) * MINUTE_MS;
    const monitor: Record<string, number | null> = {};
    for (const [, param, field] of MONITOR_COLUMNS) monitor[param] = t.monitor?.[field] ?? null;
    st.upsert.run({
      ...monitor,
      edgeId,
      minute,
      at: receivedAt,
      fps: t.fps,
      p50: t.latencyMs.p50,
      p95: t.latencyMs.p95,
      queue: t.queueDepth,
      cpu: t.cpuPercent,
      rss: t.rssBytes,
      frames: t.frames,
      failed: t.failed,
      resultBytes: t.storage?.resultBytes ?? null,
      imageBytes: t.storage?.imageBytes ?? null,
    });
    st.prune.run(edgeId, minute - TELEMETRY_RETENTION_MS);
  });
  return {
    recordTelemetry: (edgeId, t, receivedAt) => record(edgeId, t, receivedAt),
    telemetryHistory: (edgeId, from, to) =>
      st.range.all(edgeId, from, to).map(toTelemetryMinute),
    recentVerdicts: (edgeId, limit) => st.recent.all(edgeId, limit),
    recentDefectRate(edgeId, excludeModel, limit) {
      const row = st.recentDefects.get(edgeId, excludeModel, limit)!;
      return { frames: row.frames, defects: row.defects ?? 0 };
    },
  };
}

/** A stored minute as FleetStore answers it (shared with the PostgreSQL store). */
export function toTelemetryMinute(r: TelemetryMinuteRow): TelemetryMinute {
  return {
    minute: r.minute,
    samples: r.samples,
    at: r.at,
    fps: r.fps,
    latencyP50Ms: r.p50,
    latencyP95Ms: r.p95,
    queueDepth: r.queue,
    cpuPercent: r.cpu,
    rssBytes: r.rss,
    frames: r.frames,
    failed: r.failed,
    resultBytes: r.result_bytes,
    imageBytes: r.image_bytes,
    monitor: MONITOR_COLUMNS.some(([column]) => r[column] !== null)
      ? {
          brightness: r.brightness,
          brightnessReference: r.brightness_ref,
          contrast: r.contrast,
          contrastReference: r.contrast_ref,
          sharpness: r.sharpness,
          sharpnessReference: r.sharpness_ref,
          shiftX: r.shift_x,
          shiftY: r.shift_y,
          scorePsi: r.score_psi,
          defectRate: r.defect_rate,
          defectRateReference: r.defect_rate_ref,
        }
      : null,
  };
}
