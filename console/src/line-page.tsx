/**
 * One line (`#/lines/NAME`), for a product manager: its defect rate over time (uPlot, local-time
 * axis, % axis, legend), zoomable by dragging or by span buttons; counts by label; by model
 * version with markers where each version started and a before/after comparison; a second line
 * overlaid; its shifts side by side; and the exact view as CSV. Every figure comes from
 * `GET /api/lines/:line/series|compare|shifts`; the view refreshes when the line's edges report.
 */
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import { LineRollback } from './line-rollback.js';
import { AccuracyPanel } from './accuracy-panel.js';
import type { Fleet } from './live.js';
import { clock, num } from './format.js';
import { SeriesChart, seriesName, type By, type LineSeries } from './line-chart.js';
import type { CompareView, ShiftTableView } from '../../fleet-manager/line-series-schemas.js';

const MIN = 60_000;
const SPANS = [
  { label: '15 min', ms: 15 * MIN },
  { label: '1 h', ms: 60 * MIN },
  { label: '8 h', ms: 8 * 60 * MIN },
  { label: '1 d', ms: 1440 * MIN },
  { label: '7 d', ms: 7 * 1440 * MIN },
  { label: '30 d', ms: 30 * 1440 * MIN },
  { label: '90 d', ms: 90 * 1440 * MIN },
] as const;
/** A live view is fetched again at most this often while its edges report. */
const REFRESH_MS = 5000;

/** A span ending now (follows the clock), or a fixed window (after a zoom). */
type Range = { span: number } | { from: number; to: number };

type Compare = CompareView;
type ShiftTable = ShiftTableView;

/** The query of a view; the CSV link is the same query with format=csv. */
function seriesQuery(line: string, from: number, to: number, by: By, compare: string, bucket = 'auto'): string {
  const q = new URLSearchParams({ from: String(from), to: String(to), bucket, by });
  if (compare) q.set('compare', compare);
  return `/api/lines/${encodeURIComponent(line)}/series?${q}`;
}

function pct(defect: number, total: number): string {
  return total === 0 ? '–' : `${num((100 * defect) / total, 2)} %`;
}

/** The view a link names (`#/lines/NAME?from=&to=&by=&compare=`, times in epoch ms); else the last day. */
function initialView(query: string): { range: Range; by: By; compare: string } {
  const q = new URLSearchParams(query);
  const from = Number(q.get('from'));
  const to = Number(q.get('to'));
  const by = q.get('by');
  return {
    range: q.get('from') && q.get('to') && from < to ? { from, to } : { span: Number(q.get('span')) > 0 ? Number(q.get('span')) : 1440 * MIN },
    by: by === 'label' || by === 'version' ? by : 'total',
    compare: q.get('compare') ?? '',
  };
}

export function LinePage({ api, session, fleet, line, query }: { api: Api; session: SessionInfo; fleet: Fleet; line: string; query: string }) {
  const initial = useMemo(() => initialView(query), []);
  const [range, setRange] = useState<Range>(initial.range);
  const [by, setBy] = useState<By>(initial.by);
  const [compare, setCompare] = useState(initial.compare);
  // The address names the view, so a link (or a reload) opens this very view.
  useEffect(() => {
    const q = new URLSearchParams('span' in range ? { span: String(range.span) } : { from: String(range.from), to: String(range.to) });
    if (by !== 'total') q.set('by', by);
    if (compare) q.set('compare', compare);
    history.replaceState(null, '', `#/lines/${encodeURIComponent(line)}?${q}`);
  }, [line, range, by, compare]);
  // The view shown, and whether it was asked for as a span ending now (live) or a fixed window.
  const [view, setView] = useState<(LineSeries & { live: boolean }) | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [lines, setLines] = useState<string[]>([]);
  const live = 'span' in range;
  // The line's edges reporting (over the event stream) refresh a view that ends now, at most every REFRESH_MS.
  const lastSeen = useMemo(() => {
    let last = 0;
    for (const e of fleet.edges?.values() ?? []) if (e.line === line || e.line === compare) last = Math.max(last, e.lastSeen);
    return last;
  }, [fleet.edges, line, compare]);
  const [refresh, setRefresh] = useState(0);
  const fetchedAt = useRef(0);
  useEffect(() => {
    if (!live || fetchedAt.current === 0) return;
    const timer = setTimeout(() => setRefresh((n) => n + 1), Math.max(0, fetchedAt.current + REFRESH_MS - Date.now()));
    return () => clearTimeout(timer);
  }, [lastSeen, live]);

  useEffect(() => {
    api.get<{ lines: { line: string }[] }>('/api/lines').then((r) => setLines(r.lines.map((l) => l.line)), () => setLines([]));
  }, [api]);

  useEffect(() => {
    let gone = false;
    const to = 'span' in range ? Date.now() + fleet.skewMs : range.to;
    const from = 'span' in range ? to - range.span : range.from;
    fetchedAt.current = Date.now();
    api.get<LineSeries>(seriesQuery(line, Math.round(from), Math.round(to), by, compare)).then(
      (v) => !gone && (setView({ ...v, live: 'span' in range }), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, line, range, by, compare, refresh]);

  const csv = view && `${seriesQuery(line, view.from, view.to, view.by, view.compare ?? '', view.bucket)}&format=csv`;
  return (
    <section class="line-page" data-line={line}>
      <p class="crumbs">
        <a href="#/">Plant overview</a> › line {line}
      </p>
      <h1>Line {line}</h1>
      <LineRollback api={api} session={session} line={line} />
      <div class="line-toolbar" role="toolbar" aria-label="Time range and view">
        <span class="spans">
          {SPANS.map((s) => (
            <button type="button" class="quiet" aria-pressed={'span' in range && range.span === s.ms} onClick={() => setRange({ span: s.ms })}>
              {s.label}
            </button>
          ))}
        </span>
        <label>
          Show{' '}
          <select value={by} onChange={(e) => setBy((e.target as HTMLSelectElement).value as By)}>
            <option value="total">Defect rate</option>
            <option value="version">Defect rate by model version</option>
            <option value="label">Counts by label</option>
          </select>
        </label>
        <label>
          Compare with{' '}
          <select value={compare} onChange={(e) => setCompare((e.target as HTMLSelectElement).value)}>
            <option value="">no other line</option>
            {lines
              .filter((l) => l !== line)
              .map((l) => (
                <option value={l}>{l}</option>
              ))}
          </select>
        </label>
        {csv && (
          <a class="button" href={csv} download data-testid="export-csv">
            Export CSV
          </a>
        )}
      </div>
      {error && <p class="error">{error}</p>}
      {view && (
        <>
          <p class="range" data-testid="range">
            {clock(view.from)} – {clock(view.to)} · {view.starts.length} buckets of {view.bucket} · {view.live ? 'live' : 'zoomed: drag again or pick a span'}
          </p>
          <SeriesChart view={view} onZoom={(from, to) => setRange({ from, to })} />
          <Totals view={view} />
          <BeforeAfter api={api} line={line} view={view} />
          <Shifts api={api} line={line} from={view.from} to={view.to} />
        </>
      )}
      {session.permissions.includes('results:read') && <AccuracyPanel api={api} line={line} />}
    </section>
  );
}


/** The view's series summed over its range: a table beside the chart. */
function Totals({ view }: { view: LineSeries }) {
  const sum = (a: number[]) => a.reduce((x, y) => x + y, 0);
  return (
    <table class="line-totals" data-testid="totals">
      <thead>
        <tr>
          <th>{view.by === 'label' ? 'Label' : view.by === 'version' ? 'Model version' : 'Series'}</th>
          <th>Results</th>
          <th>Defects</th>
          <th>Defect rate</th>
        </tr>
      </thead>
      <tbody>
        {view.series.map((s) => (
          <tr data-series={`${s.line}/${s.key}`}>
            <td>{s.key === 'all' ? `${s.line}: all results` : seriesName(view, s)}</td>
            <td class="figure">{sum(s.total)}</td>
            <td class="figure">{sum(s.defect)}</td>
            <td class="figure">{pct(sum(s.defect), sum(s.total))}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** Before vs after a version's first result on the line, over the view's range. */
function BeforeAfter({ api, line, view }: { api: Api; line: string; view: LineSeries }) {
  const versions = view.versions.filter((v) => v.line === line);
  const [version, setVersion] = useState('');
  const [result, setResult] = useState<Compare | null>(null);
  const [error, setError] = useState<string | null>(null);
  const chosen = version || versions[versions.length - 1]?.model || '';
  useEffect(() => {
    if (!chosen) return;
    const v = versions.find((x) => x.model === chosen);
    if (!v) return;
    // The view's range when it holds the version's start; else the view's length either side of it.
    const inside = v.first > view.from && v.first < view.to;
    const span = view.to - view.from;
    const from = inside ? view.from : Math.max(0, v.first - span);
    const to = inside ? view.to : v.first + span;
    const q = new URLSearchParams({ version: chosen, from: String(from), to: String(to) });
    let gone = false;
    api.get<Compare>(`/api/lines/${encodeURIComponent(line)}/compare?${q}`).then(
      (r) => !gone && (setResult(r), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, line, chosen, view.from, view.to]);
  if (versions.length === 0) return null;
  return (
    <section class="before-after" data-testid="before-after">
      <h2>
        Before / after{' '}
        <select aria-label="Version" value={chosen} onChange={(e) => setVersion((e.target as HTMLSelectElement).value)}>
          {versions.map((v) => (
            <option value={v.model}>{v.model}</option>
          ))}
        </select>
      </h2>
      {error && <p class="error">{error}</p>}
      {result && result.version === chosen && (
        <table>
          <thead>
            <tr>
              <th />
              <th>From</th>
              <th>To</th>
              <th>Frames</th>
              <th>Defects</th>
              <th>Defect rate</th>
            </tr>
          </thead>
          <tbody>
            {(['before', 'after'] as const).map((k) => (
              <tr data-part={k}>
                <th>{k === 'before' ? 'Before' : 'After'}</th>
                <td>{clock(result[k].from)}</td>
                <td>{clock(result[k].to)}</td>
                <td class="figure">{result[k].total}</td>
                <td class="figure">{result[k].defect}</td>
                <td class="figure">{pct(result[k].defect, result[k].total)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** The view's range by local day and shift (the fleet's shift calendar). */
function Shifts({ api, line, from, to }: { api: Api; line: string; from: number; to: number }) {
  const [table, setTable] = useState<ShiftTable | null>(null);
  useEffect(() => {
    let gone = false;
    api.get<ShiftTable>(`/api/lines/${encodeURIComponent(line)}/shifts?from=${from}&to=${to}`).then((t) => !gone && setTable(t), () => !gone && setTable(null));
    return () => {
      gone = true;
    };
  }, [api, line, from, to]);
  if (!table) return null;
  return (
    <section class="shifts" data-testid="shifts">
      <h2>Shifts side by side</h2>
      <table>
        <thead>
          <tr>
            <th>Day</th>
            {table.shifts.map((s) => (
              <th>
                {s.name} <span class="muted">from {s.start}</span>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {table.days.map((d) => (
            <tr>
              <td>{d.day}</td>
              {d.shifts.map((c) => (
                <td class="figure" title={`${c.defect} of ${c.total} frames`}>
                  {pct(c.defect, c.total)} <span class="muted">of {c.total}</span>
                </td>
              ))}
            </tr>
          ))}
          <tr class="total">
            <td>All days</td>
            {table.totals.map((c) => (
              <td class="figure">
                {pct(c.defect, c.total)} <span class="muted">of {c.total}</span>
              </td>
            ))}
          </tr>
        </tbody>
      </table>
    </section>
  );
}
