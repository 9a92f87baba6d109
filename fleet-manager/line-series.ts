/**
 * The line page's chart data: `GET /api/lines/:line/series` (JSON and CSV), the before/after
 * comparison of a version, and the shift table. Pure functions over the store's grouped counts
 * (StatsRow); no I/O. Documented in docs/fleet-manager.md ("Line series").
 */
import { csvText } from './csv-cell.js';
import type { StatsRow } from './store.js';

export const MINUTE_MS = 60_000;
/** Sizes the console picks from, smallest first (`bucket=auto`). */
export const BUCKET_LADDER = ['1m', '2m', '5m', '10m', '15m', '30m', '1h', '2h', '3h', '6h', '12h', '1d', '2d', '7d'] as const;
/** `bucket=auto` picks the smallest size giving at most this many buckets. */
export const AUTO_MAX_BUCKETS = 300;
/** More buckets than this in one answer is refused (a 400), not drawn. */
export const MAX_SERIES_BUCKETS = 2000;
/** Labels or versions beyond this many (the smallest by count) are summed as `(other)`. */
export const MAX_SERIES = 20;
export const OTHER_KEY = '(other)';

export type SeriesBy = 'total' | 'label' | 'version';

export interface Series {
  line: string;
  /** `all` (by total), the label, or the model version (`name@version`). */
  key: string;
  /** Results per bucket (for a label: results with that label). */
  total: number[];
  /** Defect verdicts per bucket among those results. */
  defect: number[];
}

export interface VersionSpan {
  line: string;
  model: string;
  /** Epoch ms of the version's first and last result on the line. */
  first: number;
  last: number;
  count: number;
}

export interface LineSeries {
  line: string;
  compare: string | null;
  from: number;
  to: number;
  bucket: string;
  bucketMs: number;
  by: SeriesBy;
  /** Every bucket start in [from, to), empty ones included. */
  starts: number[];
  series: Series[];
  versions: VersionSpan[];
}

/** The bucket size `bucket=auto` gives for a span: at most AUTO_MAX_BUCKETS buckets, at least a minute. */
export function autoBucket(spanMs: number, parse: (b: string) => number | null): string {
  for (const b of BUCKET_LADDER) if (Math.ceil(spanMs / parse(b)!) <= AUTO_MAX_BUCKETS) return b;
  return BUCKET_LADDER[BUCKET_LADDER.length - 1];
}

/** [from, to) widened to whole buckets (aligned to epoch multiples of bucketMs). */
export function alignRange(from: number, to: number, bucketMs: number): { from: number; to: number } {
  return { from: Math.floor(from / bucketMs) * bucketMs, to: Math.ceil(to / bucketMs) * bucketMs };
}

function keyOf(row: StatsRow, by: SeriesBy): string {
  return by === 'label' ? row.label : by === 'version' ? row.model : 'all';
}

/** One line's rows as series over the given bucket starts, at most MAX_SERIES of them (then `(other)`). */
export function buildSeries(line: string, rows: readonly StatsRow[], starts: readonly number[], bucketMs: number, by: SeriesBy): Series[] {
  const first = starts[0] ?? 0;
  const sums = new Map<string, number>();
  for (const r of rows) sums.set(keyOf(r, by), (sums.get(keyOf(r, by)) ?? 0) + r.count);
  const ranked = [...sums.entries()].sort((a, b) => b[1] - a[1] || cmp(a[0], b[0])).map(([k]) => k);
  const kept = new Set(ranked.length > MAX_SERIES ? ranked.slice(0, MAX_SERIES - 1) : ranked);
  const series = new Map<string, Series>();
  const make = (key: string) => ({ line, key, total: starts.map(() => 0), defect: starts.map(() => 0) });
  if (by === 'total') series.set('all', make('all'));
  for (const r of rows) {
    const k = kept.has(keyOf(r, by)) ? keyOf(r, by) : OTHER_KEY;
    const s = series.get(k) ?? series.set(k, make(k)).get(k)!;
    const i = Math.round((r.bucket - first) / bucketMs);
    if (i < 0 || i >= starts.length) continue;
    s.total[i]! += r.count;
    if (r.verdict === 'defect') s.defect[i]! += r.count;
  }
  return [...series.values()].sort((a, b) => (a.key === OTHER_KEY ? 1 : b.key === OTHER_KEY ? -1 : cmp(a.key, b.key)));
}

export const SERIES_CSV_COLUMNS = ['bucket_start', 'bucket_start_ms', 'line', 'series', 'total', 'defect', 'defect_rate'] as const;

/** The view as CSV: one row per bucket × series, in the answer's order; defect_rate empty when total is 0. */
export function seriesCsv(s: LineSeries): string {
  const out = [SERIES_CSV_COLUMNS.join(',')];
  s.starts.forEach((start, i) => {
    for (const se of s.series) {
      const total = se.total[i]!;
      const defect = se.defect[i]!;
      out.push(
        [new Date(start).toISOString(), String(start), csvText(se.line), csvText(se.key), String(total), String(defect), total === 0 ? '' : (defect / total).toFixed(6)].join(','),
      );
    }
  });
  return `${out.join('\r\n')}\r\n`;
}

export interface Counts {
  total: number;
  defect: number;
  /** defect / total; null when total is 0. */
  defectRate: number | null;
  byLabel: Record<string, number>;
}

/** Sums grouped rows, whatever their bucket. */
export function sumRows(rows: readonly StatsRow[]): Counts {
  const c: Counts = { total: 0, defect: 0, defectRate: null, byLabel: {} };
  for (const r of rows) {
    c.total += r.count;
    if (r.verdict === 'defect') c.defect += r.count;
    c.byLabel[r.label] = (c.byLabel[r.label] ?? 0) + r.count;
  }
  c.defectRate = c.total === 0 ? null : c.defect / c.total;
  return c;
}

// ---- shifts ------------------------------------------------------------------------------

export interface Shift {
  name: string;
  /** Local start time `HH:MM` (the fleet manager's time zone). */
  start: string;
}

export const DEFAULT_SHIFTS: readonly Shift[] = [
  { name: 'Early', start: '06:00' },
  { name: 'Late', start: '14:00' },
  { name: 'Night', start: '22:00' },
];

export interface ShiftCell {
  shift: string;
  total: number;
  defect: number;
}

export interface ShiftDay {
  /** Local date the shifts of this row started on, YYYY-MM-DD. */
  day: string;
  shifts: ShiftCell[];
}

function minutesOf(start: string): number {
  const [h, m] = start.split(':').map(Number) as [number, number];
  return h * 60 + m;
}

/** Checks a shift calendar; the one-line problem, or null. */
export function shiftProblem(shifts: readonly Shift[]): string | null {
  const seen = new Set<number>();
  const names = new Set<string>();
  for (const [i, s] of shifts.entries()) {
    const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(s.start);
    if (!m) return `shifts/${i}/start must be HH:MM (00:00 to 23:59)`;
    if (seen.has(minutesOf(s.start))) return `shifts/${i}/start ${s.start} is another shift's start too`;
    if (names.has(s.name)) return `shifts/${i}/name ${s.name} is another shift's name too`;
    seen.add(minutesOf(s.start));
    names.add(s.name);
  }
  return null;
}

function gcd(a: number, b: number): number {
  return b === 0 ? Math.abs(a) : gcd(b, a % b);
}

/**
 * The bucket (ms) fine enough that each bucket lies within one shift: the greatest common divisor
 * of the shift starts and the hour, in local minutes (offset of the local zone included).
 */
export function shiftGrainMs(shifts: readonly Shift[], tzOffsetMinutes: number): number {
  let g = 60;
  for (const s of shifts) g = gcd(g, minutesOf(s.start));
  g = gcd(g, ((tzOffsetMinutes % 60) + 60) % 60);
  return Math.max(1, g) * MINUTE_MS;
}

function localDay(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
}

/** Rows grouped at shiftGrainMs, as a table of local days × shifts (days oldest first, shifts in calendar order). */
export function shiftTable(rows: readonly StatsRow[], shifts: readonly Shift[]): { days: ShiftDay[]; totals: ShiftCell[] } {
  const order = [...shifts].sort((a, b) => minutesOf(a.start) - minutesOf(b.start));
  const days = new Map<string, Map<string, ShiftCell>>();
  const totals = new Map(order.map((s) => [s.name, { shift: s.name, total: 0, defect: 0 }]));
  for (const r of rows) {
    const d = new Date(r.bucket);
    const m = d.getHours() * 60 + d.getMinutes();
    let idx = -1;
    for (let i = 0; i < order.length; i++) if (minutesOf(order[i]!.start) <= m) idx = i;
    // Before the first start of the day: the last shift, which began the day before.
    const shift = order[idx === -1 ? order.length - 1 : idx]!;
    const day = idx === -1 ? localDay(r.bucket - 86_400_000) : localDay(r.bucket);
    const row = days.get(day) ?? days.set(day, new Map(order.map((s) => [s.name, { shift: s.name, total: 0, defect: 0 }]))).get(day)!;
    for (const cell of [row.get(shift.name)!, totals.get(shift.name)!]) {
      cell.total += r.count;
      if (r.verdict === 'defect') cell.defect += r.count;
    }
  }
  return {
    days: [...days.entries()].sort((a, b) => cmp(a[0], b[0])).map(([day, cells]) => ({ day, shifts: [...cells.values()] })),
    totals: [...totals.values()],
  };
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
