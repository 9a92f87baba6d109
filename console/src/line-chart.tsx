/**
 * The line page's chart: a view of `GET /api/lines/:line/series` drawn with uPlot (local-time x
 * axis, % or count y axis, legend), markers where versions started and rollouts were created,
 * drag to zoom. Also the view's types, shared with line-page.tsx.
 */
import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import { clock, num } from './format.js';
import type { LineSeriesView } from '../../fleet-manager/line-series-schemas.js';

const MIN = 60_000;
const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#65a30d', '#9333ea', '#ea580c'];
const CHART_HEIGHT = 300;

export type LineSeries = LineSeriesView;
export type By = LineSeries['by'];
export type Series = LineSeries['series'][number];

/** Tick labels in local time, as precise as the visible span needs. */
function timeTicks(spanMs: number): (u: uPlot, splits: number[]) => string[] {
  const day = spanMs > 36 * 60 * MIN;
  return (_u, splits) =>
    splits.map((s) => {
      const d = new Date(s * 1000);
      const hm = d.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
      if (!day) return hm;
      const md = d.toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
      return d.getHours() === 0 && d.getMinutes() === 0 ? md : `${md} ${hm}`;
    });
}

export function seriesName(view: LineSeries, s: Series): string {
  const key = s.key === 'all' ? 'defect rate' : s.key;
  return view.compare ? `${s.line}: ${key}` : key;
}

interface Marker {
  at: number;
  text: string;
  color: string;
}

/** uPlot's data of a view: x in seconds, then one array per series (rates in %, or counts). */
function plotData(view: LineSeries): uPlot.AlignedData {
  const counts = view.by === 'label';
  const ys = view.series.map((s) => (counts ? s.total : s.total.map((t, i) => (t === 0 ? null : (100 * s.defect[i]!) / t))));
  return [view.starts.map((s) => s / 1000), ...ys] as uPlot.AlignedData;
}

function markersOf(view: LineSeries): Marker[] {
  return [
    ...view.versions.filter((v) => v.first >= view.from && v.first < view.to).map((v) => ({ at: v.first, text: `${view.compare ? `${v.line}: ` : ''}${v.model} starts`, color: '#111827' })),
    ...view.rollouts.filter((r) => r.createdAt >= view.from && r.createdAt < view.to).map((r) => ({ at: r.createdAt, text: `rollout ${r.model}@${r.version}`, color: '#7c3aed' })),
  ];
}

/** Indices of values with no value on either side: uPlot draws no line through them. */
function isolatedPoints(u: uPlot, seriesIdx: number): number[] {
  const ys = u.data[seriesIdx]! as (number | null | undefined)[];
  const out: number[] = [];
  for (let i = 0; i < ys.length; i++) if (ys[i] != null && ys[i - 1] == null && ys[i + 1] == null) out.push(i);
  return out;
}

/**
 * The chart of a view. A view with the same series and bucket (a live view moving on) only
 * updates the data, so a drag in progress is not lost; any other change draws a new chart.
 */
export function SeriesChart({ view, onZoom }: { view: LineSeries; onZoom: (from: number, to: number) => void }) {
  const box = useRef<HTMLDivElement>(null);
  const fig = useRef<HTMLElement>(null);
  const plot = useRef<uPlot | null>(null);
  const zoom = useRef(onZoom);
  zoom.current = onZoom;
  const current = useRef(view);
  current.current = view;
  const markers = useRef<Marker[]>([]);
  const counts = view.by === 'label';
  const shape = JSON.stringify([view.by, view.bucket, view.compare, view.series.map((s) => `${s.line}/${s.key}`), view.starts.length <= 120]);

  useEffect(() => {
    const el = box.current!;
    const v0 = current.current;
    const u = new uPlot(
      {
        width: el.clientWidth || 1000,
        height: CHART_HEIGHT,
        cursor: { drag: { x: true, y: false, setScale: false } },
        series: [
          { label: 'Time', value: (_u, v) => (v === null ? '–' : clock(v * 1000)) },
          ...v0.series.map((s, i) => ({
            label: seriesName(v0, s),
            stroke: COLORS[i % COLORS.length],
            width: 2,
            ...(v0.compare && s.line === v0.compare ? { dash: [6, 4] } : {}),
            // Every point when there are few buckets; otherwise only isolated ones (a bucket between
            // gaps draws no line, so without its point it would not show at all).
            points: { show: true, size: 5, filter: v0.starts.length <= 120 ? null : isolatedPoints },
            value: (_u: uPlot, v: number | null) => (v === null ? '–' : counts ? num(v, 0) : `${num(v, 2)} %`),
          })),
        ],
        scales: {
          // Always the whole window, whatever the data: one bucket is a point, never a block.
          x: { time: true, range: () => [current.current.from / 1000, current.current.to / 1000] },
          y: { range: (_u, _min, max) => [0, counts ? Math.max(1, (max ?? 0) * 1.25) : Math.min(100, Math.max(1, (max ?? 0) * 1.25))] },
        },
        axes: [
          {
            values: (u, splits) => {
              const labels = timeTicks(current.current.to - current.current.from)(u, splits);
              fig.current?.setAttribute('data-x-ticks', JSON.stringify(labels));
              return labels;
            },
          },
          {
            label: counts ? 'results per bucket' : 'defect rate (%)',
            // Counts are whole: ticks at whole steps only.
            ...(counts && { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000, 1e6] }),
            values: (_u, splits) => splits.map((v) => (counts ? num(v, 0) : `${num(v, 1)} %`)),
            size: 60,
          },
        ],
        hooks: {
          setSelect: [
            (u) => {
              if (u.select.width < 5) return;
              const from = u.posToVal(u.select.left, 'x') * 1000;
              const to = u.posToVal(u.select.left + u.select.width, 'x') * 1000;
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              zoom.current(Math.round(from), Math.round(to));
            },
          ],
          draw: [
            (u) => {
              const ctx = u.ctx;
              ctx.save();
              ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
              markers.current.forEach((m, i) => {
                const x = Math.round(u.valToPos(m.at / 1000, 'x', true));
                ctx.strokeStyle = m.color;
                ctx.fillStyle = m.color;
                ctx.lineWidth = devicePixelRatio;
                ctx.setLineDash([4 * devicePixelRatio, 3 * devicePixelRatio]);
                ctx.beginPath();
                ctx.moveTo(x, u.bbox.top);
                ctx.lineTo(x, u.bbox.top + u.bbox.height);
                ctx.stroke();
                // Right of the line, or left of it where the text would run off the plot.
                const room = x + ctx.measureText(m.text).width + 8 * devicePixelRatio < u.bbox.left + u.bbox.width;
                ctx.textAlign = room ? 'left' : 'right';
                ctx.fillText(m.text, x + (room ? 4 : -4) * devicePixelRatio, u.bbox.top + (14 + 14 * (i % 3)) * devicePixelRatio);
              });
              ctx.restore();
            },
          ],
        },
      },
      plotData(v0),
      el,
    );
    plot.current = u;
    const resize = () => u.setSize({ width: el.clientWidth, height: CHART_HEIGHT });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      u.destroy();
      plot.current = null;
    };
  }, [shape]);

  useEffect(() => {
    markers.current = markersOf(view);
    fig.current?.setAttribute('data-markers', JSON.stringify(markers.current.map((m) => m.text)));
    plot.current?.setData(plotData(view));
    // Which view the canvas shows now (tests wait on it).
    fig.current?.setAttribute('data-view', `${view.from}/${view.to}/${view.bucket}`);
  }, [view]);

  const what = counts ? 'Results by label' : view.by === 'version' ? 'Defect rate by model version' : 'Defect rate';
  return (
    <figure class="chart line-chart" ref={fig}>
      <figcaption>
        {what} per {view.bucket} bucket, local time. Drag across the chart to zoom.
      </figcaption>
      <div ref={box} />
    </figure>
  );
}
