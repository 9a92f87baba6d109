/**
 * One edge: what it is and how it is doing now, its telemetry over time (edge-telemetry.tsx) with
 * its image health and score drift (edge-monitor.tsx), its
 * configuration layers and per-label thresholds (edge-config.tsx), its recent results with their
 * images (edge-results.tsx), its golden-set self-tests (edge-golden.tsx), the inputs it rejected,
 * and its events.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, EdgeEvent, EdgeView, SessionInfo } from './api.js';
import type { Fleet } from './live.js';
import { useNow } from './live.js';
import { edgeHealth } from './health.js';
import { ago, bytes, clock, num } from './format.js';
import { TelemetryCharts } from './edge-telemetry.js';
import { EdgeConfig } from './edge-config.js';
import { EdgeResults } from './edge-results.js';
import { EdgeGoldenSets } from './edge-golden.js';
import { ImageHealth } from './edge-monitor.js';

export function EdgePage({ api, fleet, id, session }: { api: Api; fleet: Fleet; id: string; session: SessionInfo }) {
  const now = useNow(fleet.skewMs);
  const [labels, setLabels] = useState<string[]>([]);
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
      <TelemetryCharts api={api} edge={edge} after={(points) => <ImageHealth edge={edge} points={points} />} />
      <div class="edge-columns">
        <EdgeConfig api={api} edge={edge} session={session} labels={labels} />
        <Rejections edge={edge} />
      </div>
      {session.permissions.includes('results:read') && <EdgeResults api={api} edge={edge} onLabels={setLabels} />}
      <EdgeGoldenSets api={api} edge={edge} />
      <Events api={api} edge={edge} />
    </section>
  );
}

function Events({ api, edge }: { api: Api; edge: EdgeView }) {
  const [events, setEvents] = useState<EdgeEvent[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [kind, setKind] = useState('');
  // Re-read when the edge reports again, at most every 5 s.
  const tick = Math.floor(edge.lastSeen / 5000);
  useEffect(() => {
    let gone = false;
    api.get<{ events: EdgeEvent[] }>(`/api/edges/${encodeURIComponent(edge.id)}/events?limit=100`).then(
      (r) => !gone && (setEvents(r.events), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, edge.id, tick]);
  const shown = events?.filter((ev) => kind === '' || ev.kind === kind).slice(0, 30) ?? null;
  return (
    <section class="events">
      <h2>
        Recent events{' '}
        <select aria-label="Event kind" value={kind} onChange={(e) => setKind((e.target as HTMLSelectElement).value)}>
          <option value="">all kinds</option>
          {[...new Set((events ?? []).map((ev) => ev.kind))].sort().map((k) => (
            <option key={k} value={k}>
              {k}
            </option>
          ))}
        </select>
      </h2>
      {error && <p class="error">{error}</p>}
      {shown && shown.length === 0 && <p class="muted">No events.</p>}
      {shown && shown.length > 0 && (
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
            {shown.map((ev, i) => (
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

/** Inputs the edge refused: counts by error code since its agent started (its telemetry). */
function Rejections({ edge }: { edge: EdgeView }) {
  const failures = Object.entries(edge.telemetry?.failures ?? {}).sort((a, b) => b[1] - a[1]);
  return (
    <section class="rejections" data-testid="rejections">
      <h2>Rejected inputs</h2>
      {failures.length === 0 ? (
        <p class="muted">{edge.telemetry ? 'None since the agent started.' : 'No telemetry yet.'}</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th>Reason</th>
              <th class="num">Since start</th>
            </tr>
          </thead>
          <tbody>
            {failures.map(([code, n]) => (
              <tr key={code}>
                <td>{code}</td>
                <td class="num">{num(n, 0)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="muted">Each rejection is also an input-rejected event below.</p>
    </section>
  );
}
