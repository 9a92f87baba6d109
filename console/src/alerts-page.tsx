/**
 * Alerts (`#/alerts`): the fleet's alerts, newest first, filtered by state, type, line and edge,
 * with when each was raised, acknowledged (and by whom) and resolved. Whoever holds alerts:ack
 * sees an Acknowledge button on open alerts. The list reads again on every alert change the event
 * stream tells (live.ts `alertTick`), and on a reload it is read from `GET /api/alerts` as is.
 * `AlertsNavLink` is the header's link with the count of open alerts.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import type { Fleet } from './live.js';
import type { AlertView } from '../../fleet-manager/alert-schemas.js';
import { clock } from './format.js';

type Page = { items: AlertView[]; nextCursor: string | null; counts: { open: number; acknowledged: number } };

const STATES = [
  ['active', 'Active (open or acknowledged)'],
  ['open', 'Open'],
  ['acknowledged', 'Acknowledged'],
  ['resolved', 'Resolved'],
  ['', 'All'],
] as const;

const PAGE = 50;

/** The header link, with the number of open (unacknowledged, unresolved) alerts. */
export function AlertsNavLink({ api, fleet, current }: { api: Api; fleet: Fleet; current: boolean }) {
  const [open, setOpen] = useState<number | null>(null);
  useEffect(() => {
    let gone = false;
    api.get<Page>('/api/alerts?state=open&limit=1').then(
      (p) => !gone && setOpen(p.counts.open),
      () => undefined,
    );
    return () => {
      gone = true;
    };
  }, [api, fleet.alertTick]);
  return (
    <a href="#/alerts" class={current ? 'current' : ''} data-testid="alerts-link">
      Alerts
      {open !== null && open > 0 && (
        <span class="alert-count" data-testid="open-alerts" title={`${open} open alerts`}>
          {open}
        </span>
      )}
    </a>
  );
}

interface Filter {
  state: string;
  type: string;
  line: string;
  edgeId: string;
}

const value = (e: Event) => (e.target as HTMLInputElement | HTMLSelectElement).value;

export function AlertsPage({ api, session, fleet }: { api: Api; session: SessionInfo; fleet: Fleet }) {
  const [filter, setFilter] = useState<Filter>({ state: 'active', type: '', line: '', edgeId: '' });
  const [applied, setApplied] = useState<Filter>(filter);
  // Older pages: the cursor each started at (empty: the newest page).
  const [cursors, setCursors] = useState<string[]>([]);
  const [page, setPage] = useState<Page | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [n, setN] = useState(0);
  const canAck = session.permissions.includes('alerts:ack' as never);

  const q = new URLSearchParams({ limit: String(PAGE) });
  for (const [k, v] of Object.entries(applied)) if (v) q.set(k, v);
  const cursor = cursors[cursors.length - 1];
  if (cursor !== undefined) q.set('cursor', cursor);
  const path = `/api/alerts?${q}`;
  useEffect(() => {
    let gone = false;
    api.get<Page>(path).then(
      (p) => !gone && (setPage(p), setError(null)),
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, path, n, fleet.alertTick]);

  const ack = async (a: AlertView) => {
    try {
      const after = await api.post<AlertView>(`/api/alerts/${a.id}/ack`);
      setPage((p) => p && { ...p, items: p.items.map((x) => (x.id === after.id ? after : x)) });
      setN((x) => x + 1);
    } catch (err) {
      setError((err as Error).message);
    }
  };

  return (
    <section class="alerts-page">
      <h1>
        Alerts {page && <span class="muted">{page.counts.open} open · {page.counts.acknowledged} acknowledged</span>}
      </h1>
      <form
        class="inline"
        onSubmit={(e) => {
          e.preventDefault();
          setApplied(filter);
          setCursors([]);
          setN((x) => x + 1);
        }}
      >
        <label>
          State
          <select name="alert-state" value={filter.state} onChange={(e) => setFilter({ ...filter, state: value(e) })}>
            {STATES.map(([v, label]) => (
              <option key={v} value={v}>
                {label}
              </option>
            ))}
          </select>
        </label>
        <label>
          Type
          <input name="alert-type" placeholder="image-blur" value={filter.type} onInput={(e) => setFilter({ ...filter, type: value(e) })} />
        </label>
        <label>
          Line
          <input name="alert-line" value={filter.line} onInput={(e) => setFilter({ ...filter, line: value(e) })} />
        </label>
        <label>
          Edge
          <input name="alert-edge" value={filter.edgeId} onInput={(e) => setFilter({ ...filter, edgeId: value(e) })} />
        </label>
        <button type="submit">Filter</button>
        {!fleet.connected && <span class="link-state down">not live: Filter reads again</span>}
      </form>
      {error && <p class="error">{error}</p>}
      {page && page.items.length === 0 && <p class="muted">No alerts{applied.state === 'active' ? ' in force' : ''}.</p>}
      {page && page.items.length > 0 && (
        <table class="alerts">
          <thead>
            <tr>
              <th>Severity</th>
              <th>Alert</th>
              <th>Where</th>
              <th>Raised</th>
              <th>Acknowledged</th>
              <th>Resolved</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {page.items.map((a) => (
              <AlertRow key={a.id} alert={a} canAck={canAck} onAck={() => void ack(a)} />
            ))}
          </tbody>
        </table>
      )}
      <div class="pager">
        <button type="button" class="small" disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))}>
          Newer
        </button>
        <span class="muted">page {cursors.length + 1}</span>
        <button type="button" class="small" disabled={!page?.nextCursor} onClick={() => page?.nextCursor && setCursors([...cursors, page.nextCursor])}>
          Older
        </button>
      </div>
    </section>
  );
}

function AlertRow({ alert: a, canAck, onAck }: { alert: AlertView; canAck: boolean; onAck: () => void }) {
  return (
    <tr data-alert={a.id} data-type={a.type} data-state={a.state} class={`alert-${a.state}`}>
      <td>
        <span class={`severity severity-${a.severity}`}>{a.severity}</span>
      </td>
      <td>
        <strong>{a.type}</strong>
        {a.count > 1 && <span class="muted"> ×{a.count}</span>}
        <div class="alert-message">{a.message}</div>
      </td>
      <td>
        {a.edgeId && <a href={`#/edges/${encodeURIComponent(a.edgeId)}`}>{a.edgeId}</a>}
        {a.rolloutId && <a href={`#/rollouts/${encodeURIComponent(a.rolloutId)}`}>rollout {a.rolloutId}</a>}
        {a.line && (
          <div class="muted">
            line <a href={`#/lines/${encodeURIComponent(a.line)}`}>{a.line}</a>
          </div>
        )}
      </td>
      <td class="seen">{clock(a.raisedAt)}</td>
      <td class="seen" data-testid="acked">
        {a.acknowledgedAt !== null ? (
          <>
            {clock(a.acknowledgedAt)}
            <div class="muted">by {a.acknowledgedBy}</div>
          </>
        ) : (
          <span class="muted">–</span>
        )}
      </td>
      <td class="seen" data-testid="resolved">
        {a.resolvedAt !== null ? clock(a.resolvedAt) : <span class="muted">–</span>}
      </td>
      <td>
        {canAck && a.state === 'open' && (
          <button type="button" class="small" onClick={onAck}>
            Acknowledge
          </button>
        )}
      </td>
    </tr>
  );
}
