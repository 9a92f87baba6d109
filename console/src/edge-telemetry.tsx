/**
 * An edge's telemetry over time: the fleet's per-minute history (`GET /api/edges/:id/telemetry`,
 * the last six hours) followed by every report that arrives while the page is open (the event
 * stream). Six uPlot charts with local time axes, units and legends: throughput, latency, queue,
 * CPU, memory and storage. The points also carry the image health and score drift figures, which
 * edge-monitor.tsx draws with the same chart (`TimeChart`) under its own section (`after`).
 */
import type { ComponentChildren } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import type { Api, EdgeView } from './api.js';
import type { MonitorMinute } from '../../fleet-manager/http-schemas.js';


/** One point of every series, at `t` (epoch ms). */
export interface Point {
  t: number;
  fps: number;
  p50: number;
  p95: number;
  queue: number;
  cpu: number;
  rssMiB: number;
  resultMiB: number | null;
  imageMiB: number | null;
  monitor: MonitorMinute | null;
}

interface Minute {
  minute: number;
  at: number;
  fps: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  queueDepth: number;
  cpuPercent: number;
  rssBytes: number;
  resultBytes: number | null;
  imageBytes: number | null;
  monitor: MonitorMinute | null;
}

const MiB = 1024 * 1024;
const HISTORY_MS = 6 * 3_600_000;
/** Live points kept after the history (at a 10 s period: over five hours). */
const MAX_LIVE = 2000;

export interface ChartSpec {
  key: string;
  title: string;
  unit: string;
  series: { label: string; value: (p: Point) => number | null; stroke: string; dash?: number[] }[];
  /** The value axis from the data's [min, max]; default from 0 to a little above the highest value. */
  range?: (min: number, max: number) => [number, number];
}

const CHARTS: ChartSpec[] = [
  { key: 'fps', title: 'Throughput', unit: 'frames/s', series: [{ label: 'fps', value: (p) => p.fps, stroke: '#2563eb' }] },
  {
    key: 'latency',
    title: 'Latency',
    unit: 'ms',
    series: [
      { label: 'p50 ms', value: (p) => p.p50, stroke: '#059669' },
      { label: 'p95 ms', value: (p) => p.p95, stroke: '#d97706', dash: [6, 4] },
    ],
  },
  { key: 'queue', title: 'Queue', unit: 'frames', series: [{ label: 'queue depth', value: (p) => p.queue, stroke: '#7c3aed' }] },
  { key: 'cpu', title: 'CPU', unit: '%', series: [{ label: 'CPU %', value: (p) => p.cpu, stroke: '#dc2626' }] },
  { key: 'memory', title: 'Memory', unit: 'MiB', series: [{ label: 'RSS MiB', value: (p) => p.rssMiB, stroke: '#0891b2' }] },
  {
    key: 'storage',
    title: 'Storage',
    unit: 'MiB',
    series: [
      { label: 'results MiB', value: (p) => p.resultMiB, stroke: '#4b5563' },
      { label: 'images MiB', value: (p) => p.imageMiB, stroke: '#db2777', dash: [6, 4] },
    ],
  },
];

/** A tick of the time axis: the local time of day, 24 h, as the rest of the console writes it (seconds when ticks are closer than a minute). */
function timeLabel(s: number, seconds: boolean): string {
  return new Date(s * 1000).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', ...(seconds && { second: '2-digit' }), hour12: false });
}

function fromMinute(m: Minute): Point {
  return {
    t: m.at,
    fps: m.fps,
    p50: m.latencyP50Ms,
    p95: m.latencyP95Ms,
    queue: m.queueDepth,
    cpu: m.cpuPercent,
    rssMiB: m.rssBytes / MiB,
    resultMiB: m.resultBytes === null ? null : m.resultBytes / MiB,
    imageMiB: m.imageBytes === null ? null : m.imageBytes / MiB,
    monitor: m.monitor,
  };
}

function fromLive(t: NonNullable<EdgeView['telemetry']>): Point {
  return {
    t: t.at,
    fps: t.fps,
    p50: t.latencyP50Ms,
    p95: t.latencyP95Ms,
    queue: t.queueDepth,
    cpu: t.cpuPercent,
    rssMiB: t.rssBytes / MiB,
    resultMiB: t.storage ? t.storage.resultBytes / MiB : null,
    imageMiB: t.storage ? t.storage.imageBytes / MiB : null,
    monitor: t.monitor ? monitorPoint(t.monitor) : null,
  };
}

function monitorPoint(m: NonNullable<NonNullable<EdgeView['telemetry']>['monitor']>): MonitorMinute {
  return {
    brightness: m.brightness ?? null,
    brightnessReference: m.brightnessReference ?? null,
    contrast: m.contrast ?? null,
    contrastReference: m.contrastReference ?? null,
    sharpness: m.sharpness ?? null,
    sharpnessReference: m.sharpnessReference ?? null,
    shiftX: m.shiftX ?? null,
    shiftY: m.shiftY ?? null,
    scorePsi: m.scorePsi ?? null,
    defectRate: m.defectRate ?? null,
    defectRateReference: m.defectRateReference ?? null,
  };
}

/** `after` renders below the telemetry section from the same points (null while loading). */
export function TelemetryCharts({ api, edge, after }: { api: Api; edge: EdgeView; after?: (points: Point[] | null) => ComponentChildren }) {
  const [points, setPoints] = useState<Point[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let gone = false;
    setPoints(null);
    const to = Date.now() + 60_000;
    api.get<{ minutes: Minute[] }>(`/api/edges/${encodeURIComponent(edge.id)}/telemetry?from=${to - HISTORY_MS}&to=${to}`).then(
      (r) => !gone && setPoints(r.minutes.map(fromMinute)),
      (err: Error) => !gone && (setError(err.message), setPoints([])),
    );
    return () => {
      gone = true;
    };
  }, [api, edge.id]);
  const t = edge.telemetry;
  useEffect(() => {
    if (!t || points === null) return;
    const last = points[points.length - 1];
    if (last && last.t >= t.at) return;
    setPoints([...points.slice(-MAX_LIVE), fromLive(t)]);
  }, [t?.at, points === null]);
  return (
    <>
      <section class="edge-telemetry">
        <h2>
          Telemetry <span class="muted">last 6 h per minute, then live</span>
        </h2>
        {error && <p class="error">{error}</p>}
        {points === null ? (
          <p class="muted">Loading telemetry…</p>
        ) : (
          <div class="chart-grid">
            {CHARTS.map((c) => (
              <TimeChart key={c.key} spec={c} points={points} />
            ))}
          </div>
        )}
      </section>
      {after?.(points)}
    </>
  );
}

/** One uPlot chart of `spec`'s series over `points`, local time axis; the figure carries its tick labels and its plotted points (`data-points`, of the first series). */
export function TimeChart({ spec, points }: { spec: ChartSpec; points: Point[] }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const data = (): uPlot.AlignedData => [points.map((p) => p.t / 1000), ...spec.series.map((s) => points.map((p) => s.value(p)))];
  useEffect(() => {
    const el = box.current!;
    const width = () => Math.max(280, el.clientWidth);
    plot.current = new uPlot(
      {
        width: width(),
        height: 170,
        series: [{ label: 'time' }, ...spec.series.map((s) => ({ label: s.label, stroke: s.stroke, width: 2, ...(s.dash && { dash: s.dash }), points: { show: true, size: 4 }, spanGaps: false }))],
        axes: [{ space: 70, values: (_u, splits, _axis, _space, incr) => splits.map((v) => timeLabel(v, incr < 60)) }, { label: spec.unit, size: 56 }],
        // At least a minute wide (one point alone would stretch the axis over years); the value axis from 0.
        scales: { x: { time: true, range: (_u, min, max) => (Number.isFinite(min) && Number.isFinite(max) ? [Math.min(min, max - 60), max + 5] : [Date.now() / 1000 - 60, Date.now() / 1000]) }, y: { range: (_u, min, max) => (spec.range ? spec.range(min, max) : [0, max > 0 ? max * 1.15 : 1]) } },
        legend: { live: true },
        // The axes are drawn on the canvas: their tick labels also go on the figure, for screen readers and tests.
        hooks: {
          draw: [
            (u) => {
              const ticks = (i: number) => ((u.axes[i] as { _values?: (string | number | null)[] })._values ?? []).filter((v) => v !== null && v !== '').join(' · ');
              const fig = el.parentElement!;
              fig.dataset.xTicks = ticks(0);
              fig.dataset.yTicks = ticks(1);
              fig.dataset.points = String(Array.from(u.data[1] ?? [], (v: number | null | undefined) => v).filter((v) => v !== null && v !== undefined).length);
            },
          ],
        },
      },
      data(),
      el,
    );
    const resize = () => plot.current?.setSize({ width: width(), height: 170 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  useEffect(() => {
    plot.current?.setData(data());
  }, [points]);
  return (
    <figure class="chart" data-chart={spec.key}>
      <figcaption>
        {spec.title} <span class="muted">({spec.unit})</span>
      </figcaption>
      <div ref={box} />
    </figure>
  );
}
