/**
 * One edge: what it is, how it is doing now, its telemetry since this page opened (uPlot, fed by
 * the event stream) and its recent events.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import type { Api, EdgeEvent, EdgeView, SessionInfo } from './api.js';
import type { Fleet } from './live.js';
import { useNow } from './live.js';
import { edgeHealth } from './health.js';
import { ago, bytes, clock, num } from './format.js';

/** Telemetry points kept for the chart (at a 10 s period: over an hour and a half). */
const MAX_POINTS = 600;

export function EdgePage({ api, fleet, id }: { api: Api; fleet: Fleet; id: string; session: SessionInfo }) {
  const now = useNow(fleet.skewMs);
  const edge = fleet.edges?.get(id);
  if (!fleet.edges) return <p class="loading">Loading the fleet…</p>;
  if (!edge)
    return (
      <p class="empty">
        No edge {id} in this fleet. <a href="#/">Back to the plant overview</a>
      </p>
    );
  const health = fleet.connected ? edgeHealth(edge, now) : edge.online ? 'stale' : 'offline';
  const t = edge.telemetry;
  return (
    <section class="edge-page" data-edge={edge.id} data-health={health}>
      <p class="crumbs">
        <a href="#/">Plant overview</a> › {edge.line ?? '(no line)'} › {edge.id}
      </p>
      <h1>
        {edge.id} <span class={`state ${health}`}>{health}</span>
      </h1>
      <div class="panels">
        <dl class="facts">
          <dt>Line</dt>
          <dd>{edge.line ?? '–'}</dd>
          <dt>Model</dt>
          <dd>{edge.activeModel ?? '–'}</dd>
          <dt>Agent</dt>
          <dd>{edge.agentVersion ?? '–'}</dd>
          <dt>Cameras</dt>
          <dd>{edge.cameras.length > 0 ? edge.cameras.join(', ') : '–'}</dd>
          <dt>First seen</dt>
          <dd>{clock(edge.firstSeen)}</dd>
          <dt>Last seen</dt>
          <dd>
            {clock(edge.lastSeen)} ({ago(edge.lastSeen, now)})
          </dd>
          <dt>Results</dt>
          <dd>
            {num(edge.ackedSeq, 0)} stored · backlog {num(edge.backlog, 0)}
          </dd>
          <dt>Desired state</dt>
          <dd>{edge.convergence === null ? 'none' : edge.convergence.converged ? 'converged' : `differs: ${edge.convergence.reason ?? 'pending'}`}</dd>
        </dl>
        <dl class={`facts telemetry ${health !== 'online' ? 'not-live' : ''}`}>
          <dt>Telemetry</dt>
          <dd>{t ? `${ago(t.at, now)}, every ${num(t.intervalMs / 1000)} s` : 'none yet'}</dd>
          <dt>fps</dt>
          <dd>{num(t?.fps)}</dd>
          <dt>p95 latency</dt>
          <dd>{t ? `${num(t.latencyP95Ms)} ms` : '–'}</dd>
          <dt>Queue</dt>
          <dd>{num(t?.queueDepth, 0)}</dd>
          <dt>Rejected</dt>
          <dd>{t ? `${num(t.failed, 0)} of ${num(t.frames, 0)} frames` : '–'}</dd>
          <dt>CPU · memory</dt>
          <dd>{t ? `${num(t.cpuPercent)} % · ${bytes(t.rssBytes)}` : '–'}</dd>
          <dt>Alarms</dt>
          <dd>{t && t.alarms.length > 0 ? t.alarms.join(', ') : 'none'}</dd>
        </dl>
      </div>
      <TelemetryChart edge={edge} />
      <Events api={api} edge={edge} />
    </section>
  );
}

function TelemetryChart({ edge }: { edge: EdgeView }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const points = useRef<[number[], number[], number[]]>([[], [], []]);
  useEffect(() => {
    const el = box.current!;
    plot.current = new uPlot(
      {
        width: el.clientWidth || 800,
        height: 220,
        series: [
          {},
          { label: 'fps', stroke: '#2563eb', width: 2, points: { show: true, size: 5 } },
          { label: 'p95 ms', stroke: '#d97706', width: 2, dash: [6, 4], scale: 'ms', points: { show: true, size: 5 } },
        ],
        axes: [{}, { label: 'frames/s' }, { scale: 'ms', side: 1, label: 'ms', grid: { show: false } }],
        // From the first point on, at least a minute wide (one point alone would stretch the axis over years).
        scales: { x: { time: true, range: (_u, min, max) => [min - 1, Math.max(max, min + 60)] } },
      },
      points.current,
      el,
    );
    const resize = () => plot.current?.setSize({ width: el.clientWidth, height: 220 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, []);
  const t = edge.telemetry;
  useEffect(() => {
    if (!t) return;
    const [xs, fps, p95] = points.current;
    const x = t.at / 1000;
    if (xs.length > 0 && xs[xs.length - 1]! >= x) return;
    xs.push(x);
    fps.push(t.fps);
    p95.push(t.latencyP95Ms);
    if (xs.length > MAX_POINTS) for (const s of points.current) s.shift();
    plot.current?.setData(points.current);
  }, [t?.at]);
  return (
    <figure class="chart">
      <figcaption>Telemetry since this page opened</figcaption>
      <div ref={box} />
    </figure>
  );
}

function Events({ api, edge }: { api: Api; edge: EdgeView }) {
  const [events, setEvents] = useState<EdgeEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  // Re-read when the edge reports again, at most every 5 s.
  const tick = Math.floor(edge.lastSeen / 5000);
  useEffect(() => {
    let gone = false;
    api.get<{ events: EdgeEvent[] }>(`/api/edges/${encodeURIComponent(edge.id)}/events?limit=20`).then(
      (r) => !gone && (setEvents(r.events), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, edge.id, tick]);
  return (
    <section class="events">
      <h2>Recent events</h2>
      {error && <p class="error">{error}</p>}
      {events && events.length === 0 && <p class="muted">No events.</p>}
      {events && events.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>When</th>
              <th>Level</th>
              <th>Kind</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {events.map((ev, i) => (
              <tr key={`${ev.ts}-${i}`} class={`level-${ev.level}`}>
                <td class="seen">{clock(ev.ts)}</td>
                <td>{ev.level}</td>
                <td>{ev.kind}</td>
                <td>{ev.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
