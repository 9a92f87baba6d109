/**
 * Per-line statistics, shaped from the store's grouped counts: the JSON answer of
 * `GET /api/lines/:line/stats` and its CSV form. Pure functions; no I/O.
 */
import { csvText } from './csv-cell.js';
import type { StatsRow } from './store.js';

export interface ModelCounts {
  total: number;
  defect: number;
  defectRate: number;
}

export interface StatsCounts {
  total: number;
  ok: number;
  defect: number;
  /** defect / total; 0 when total is 0. */
  defectRate: number;
  /** Results per label, whatever the verdict. */
  byLabel: Record<string, number>;
  /** Results per model version (`name@version`). */
  byModel: Record<string, ModelCounts>;
}

export interface StatsBucket extends StatsCounts {
  /** Bucket start, epoch ms (buckets are aligned to multiples of bucketMs since the epoch). */
  start: number;
}

export interface LineStats {
  line: string;
  from: number;
  to: number;
  bucket: string;
  bucketMs: number;
  /** Buckets with at least one result, oldest first; empty buckets are left out. */
  buckets: StatsBucket[];
  totals: StatsCounts;
}

export interface StatsWindow {
  line: string;
  from: number;
  to: number;
  bucket: string;
  bucketMs: number;
}

const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Pattern of bucket sizes: a positive count and a unit, e.g. 10s, 1m, 5m, 1h, 1d. */
export const BUCKET_PATTERN = '^[1-9][0-9]{0,5}[smhd]$';

/** Parses a bucket size such as `5m`; null when malformed. */
export function parseBucket(text: string): number | null {
  const m = /^([1-9][0-9]{0,5})([smhd])$/.exec(text);
  return m ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : null;
}

/** Parses a time given as epoch ms digits or an ISO 8601 date; null when neither. */
export function parseTime(text: string): number | null {
  if (/^\d{1,15}$/.test(text)) return Number(text);
  // Date.parse accepts many loose forms; insist on something that starts like ISO 8601.
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

function emptyCounts(): StatsCounts {
  return { total: 0, ok: 0, defect: 0, defectRate: 0, byLabel: {}, byModel: {} };
}

function add(c: StatsCounts, row: StatsRow): void {
  c.total += row.count;
  if (row.verdict === 'defect') c.defect += row.count;
  else c.ok += row.count;
  c.byLabel[row.label] = (c.byLabel[row.label] ?? 0) + row.count;
  const m = (c.byModel[row.model] ??= { total: 0, defect: 0, defectRate: 0 });
  m.total += row.count;
  if (row.verdict === 'defect') m.defect += row.count;
}

function finish<T extends StatsCounts>(c: T): T {
  c.defectRate = c.total === 0 ? 0 : c.defect / c.total;
  for (const m of Object.values(c.byModel)) m.defectRate = m.total === 0 ? 0 : m.defect / m.total;
  return c;
}

/** Folds grouped rows (ordered by bucket) into per-bucket and total counts. */
export function buildLineStats(rows: readonly StatsRow[], window: StatsWindow): LineStats {
  const buckets: StatsBucket[] = [];
  const totals = emptyCounts();
  let current: StatsBucket | undefined;
  for (const row of rows) {
    if (!current || current.start !== row.bucket) {
      current = { start: row.bucket, ...emptyCounts() };
      buckets.push(current);
    }
    add(current, row);
    add(totals, row);
  }
  buckets.forEach(finish);
  return { ...window, buckets, totals: finish(totals) };
}

/** The CSV columns, in order (documented in docs/fleet-manager.md). */
export const CSV_COLUMNS = [
  'bucket_start',
  'bucket_start_ms',
  'line',
  'verdict',
  'label',
  'count',
  'bucket_total',
  'bucket_defect_rate',
] as const;

/**
 * Long-format CSV: one row per bucket × verdict × label (models summed), with the bucket's total
 * and defect rate repeated on each row so any row stands alone in a spreadsheet pivot.
 */
export function lineStatsCsv(rows: readonly StatsRow[], stats: LineStats): string {
  const byBucket = new Map(stats.buckets.map((b) => [b.start, b]));
  const cells = new Map<string, { bucket: number; verdict: string; label: string; count: number }>();
  for (const row of rows) {
    const key = JSON.stringify([row.bucket, row.verdict, row.label]);
    const cell = cells.get(key);
    if (cell) cell.count += row.count;
    else cells.set(key, { bucket: row.bucket, verdict: row.verdict, label: row.label, count: row.count });
  }
  const ordered = [...cells.values()].sort(
    (a, b) => a.bucket - b.bucket || cmp(a.verdict, b.verdict) || cmp(a.label, b.label),
  );
  const lines = [CSV_COLUMNS.join(',')];
  for (const c of ordered) {
    const bucket = byBucket.get(c.bucket)!;
    lines.push(
      [
        new Date(c.bucket).toISOString(),
        String(c.bucket),
        csvText(stats.line),
        csvText(c.verdict),
        csvText(c.label),
        String(c.count),
        String(bucket.total),
        bucket.defectRate.toFixed(6),
      ].join(','),
    );
  }
  return `${lines.join('\r\n')}\r\n`;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
