/**
 * The fleet's edges, live: one EventSource on `GET /api/events` (a snapshot, then one event per
 * changed edge). The browser reconnects by itself after a dropped stream; a refused one (401: the
 * session ended) is checked through the API, which sends the console back to sign-in.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, EdgeView } from './api.js';
import type { AlertChange } from '../../fleet-manager/alert-schemas.js';

export type { AlertChange };

export interface Fleet {
  /** Every edge by id; null until the first snapshot. */
  edges: ReadonlyMap<string, EdgeView> | null;
  /** The stream is open: what is shown is live. */
  connected: boolean;
  /** The fleet's clock minus this browser's (ms), so ages are the fleet's. */
  skewMs: number;
  /** Alert changes heard on the stream (`event: alert`), counted: screens read again when it moves. */
  alertTick: number;
  /** The latest alert change heard; null before any. */
  lastAlert: AlertChange | null;
}

const RETRY_MS = 3000;

/** Subscribes to the fleet's event stream while the component is mounted. */
export function useFleet(api: Api): Fleet {
  const [fleet, setFleet] = useState<Fleet>({ edges: null, connected: false, skewMs: 0, alertTick: 0, lastAlert: null });
  useEffect(() => {
    let source: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const open = () => {
      source = new EventSource('/api/events');
      source.addEventListener('snapshot', (ev) => {
        const { now, edges } = JSON.parse((ev as MessageEvent<string>).data) as { now: number; edges: EdgeView[] };
        // A new snapshot (also after a reconnect) may follow missed alert changes: screens read again.
        setFleet((f) => ({ ...f, edges: new Map(edges.map((e) => [e.id, e])), connected: true, skewMs: now - Date.now(), alertTick: f.alertTick + 1 }));
      });
      source.addEventListener('alert', (ev) => {
        const change = JSON.parse((ev as MessageEvent<string>).data) as AlertChange;
        setFleet((f) => ({ ...f, alertTick: f.alertTick + 1, lastAlert: change }));
      });
      source.addEventListener('edge', (ev) => {
        const { edge } = JSON.parse((ev as MessageEvent<string>).data) as { edge: EdgeView };
        setFleet((f) => {
          const edges = new Map(f.edges ?? []);
          edges.set(edge.id, edge);
          return { ...f, edges, connected: true };
        });
      });
      source.addEventListener('error', () => {
        setFleet((f) => ({ ...f, connected: false }));
        if (source?.readyState !== EventSource.CLOSED) return; // the browser retries by itself
        source = null;
        // Refused, not dropped: EventSource hides the status, so ask the API; its 401 signs the
        // console out (Api), anything else is tried again.
        void api.get('/api/auth/me').then(
          () => {
            if (!closed) retry = setTimeout(open, RETRY_MS);
          },
          () => {
            if (!closed) retry = setTimeout(open, RETRY_MS);
          },
        );
      });
    };
    open();
    return () => {
      closed = true;
      clearTimeout(retry);
      source?.close();
    };
  }, [api]);
  return fleet;
}

/** The fleet's time now, refreshed every second (ages and staleness move without events). */
export function useNow(skewMs: number): number {
  const [now, setNow] = useState(() => Date.now() + skewMs);
  useEffect(() => {
    setNow(Date.now() + skewMs);
    const timer = setInterval(() => setNow(Date.now() + skewMs), 1000);
    return () => clearInterval(timer);
  }, [skewMs]);
  return now;
}
