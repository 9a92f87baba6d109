/**
 * The plant overview: every line and its edges, health at a glance. Figures of a stale or
 * offline edge are greyed and labelled with their age: never shown as if live.
 */
import type { EdgeView } from './api.js';
import type { Fleet } from './live.js';
import { useNow } from './live.js';
import { edgeHealth, type Health } from './health.js';
import { ago, num } from './format.js';

const NO_LINE = '(no line)';
const HEALTH_LABEL: Record<Health, string> = { online: 'Online', stale: 'Stale', offline: 'Offline' };

export function Overview({ fleet }: { fleet: Fleet }) {
  const now = useNow(fleet.skewMs);
  if (!fleet.edges) return <p class="loading">Loading the fleet…</p>;
  const edges = [...fleet.edges.values()];
  if (edges.length === 0) return <p class="empty">No edge has reported to this fleet yet. Enroll one (docs/edge-agent.md, "Enrollment") and start it.</p>;
  const health = new Map(edges.map((e) => [e.id, fleet.connected ? edgeHealth(e, now) : edgeHealth(e, now) === 'offline' ? 'offline' : ('stale' as Health)]));
  const byLine = new Map<string, EdgeView[]>();
  for (const e of edges) byLine.set(e.line ?? NO_LINE, [...(byLine.get(e.line ?? NO_LINE) ?? []), e]);
  const lines = [...byLine.keys()].sort((a, b) => (a === NO_LINE ? 1 : b === NO_LINE ? -1 : a.localeCompare(b)));
  const count = (h: Health) => edges.filter((e) => health.get(e.id) === h).length;
  const alarms = edges.reduce((n, e) => n + (e.telemetry?.alarms.length ?? 0), 0);
  return (
    <section class="overview">
      <div class="summary" data-testid="summary">
        <h1>Plant overview</h1>
        <span class="count online">{count('online')} online</span>
        <span class="count stale">{count('stale')} stale</span>
        <span class="count offline">{count('offline')} offline</span>
        <span class={`count alarms ${alarms > 0 ? 'on' : ''}`}>{alarms} alarms</span>
        {!fleet.connected && <span class="banner">Connection to the fleet lost: figures are as last received.</span>}
      </div>
      {lines.map((line) => (
        <LineCard key={line} line={line} edges={byLine.get(line)!} health={health} now={now} />
      ))}
    </section>
  );
}

function LineCard({ line, edges, health, now }: { line: string; edges: EdgeView[]; health: Map<string, Health>; now: number }) {
  const live = edges.filter((e) => health.get(e.id) === 'online');
  const fps = live.reduce((s, e) => s + (e.telemetry?.fps ?? 0), 0);
  const models = [...new Set(edges.map((e) => e.activeModel).filter((m): m is string => m !== null))];
  return (
    <article class="line" data-line={line}>
      <header>
        <h2>{line === NO_LINE ? line : <a href={`#/lines/${encodeURIComponent(line)}`}>{line}</a>}</h2>
        <span class="facts">
          {live.length}/{edges.length} edges live · {num(fps)} frames/s · {models.length > 0 ? models.join(', ') : 'no model reported'}
        </span>
      </header>
      <div class="scroll">
        <table class="edges">
          <colgroup>
            <col class="c-state" />
            <col class="c-edge" />
            <col class="c-model" />
            <col class="c-num" />
            <col class="c-num" />
            <col class="c-num" />
            <col class="c-num" />
            <col class="c-alarms" />
            <col class="c-seen" />
          </colgroup>
          <thead>
            <tr>
              <th>State</th>
              <th>Edge</th>
              <th>Model</th>
              <th class="num">fps</th>
              <th class="num">p95 ms</th>
              <th class="num">Backlog</th>
              <th class="num" title="inputs rejected in the last telemetry period">Rejected</th>
              <th>Alarms</th>
              <th>Last seen</th>
            </tr>
          </thead>
          <tbody>
            {[...edges]
              .sort((a, b) => a.id.localeCompare(b.id))
              .map((e) => (
                <EdgeRow key={e.id} edge={e} health={health.get(e.id)!} now={now} />
              ))}
          </tbody>
        </table>
      </div>
    </article>
  );
}

function EdgeRow({ edge: e, health, now }: { edge: EdgeView; health: Health; now: number }) {
  const t = e.telemetry;
  const alarms = t?.alarms ?? [];
  return (
    <tr class={`edge ${health}`} data-edge={e.id} data-health={health}>
      <td>
        <span class={`state ${health}`}>{HEALTH_LABEL[health]}</span>
      </td>
      <td>
        <a href={`#/edges/${encodeURIComponent(e.id)}`}>{e.id}</a>
      </td>
      <td class="model" title={e.activeModel ?? undefined}>{e.activeModel ?? '–'}</td>
      <td class="num figure">{num(t?.fps)}</td>
      <td class="num figure">{num(t?.latencyP95Ms)}</td>
      <td class="num figure">{num(e.backlog, 0)}</td>
      <td class={`num figure ${t && t.failed > 0 ? 'warn' : ''}`}>{num(t?.failed, 0)}</td>
      <td>{alarms.length === 0 ? <span class="muted">none</span> : alarms.map((a) => <span class="alarm" key={a}>{a}</span>)}</td>
      <td class="seen" title={new Date(e.lastSeen).toISOString()}>
        {ago(e.lastSeen, now)}
      </td>
    </tr>
  );
}
