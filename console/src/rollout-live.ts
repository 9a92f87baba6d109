/**
 * Rollouts, live: an EventSource on `GET /api/rollouts/events` (every rollout's summary) or
 * `GET /api/rollouts/:id/events` (one rollout's full view); each event is the whole current
 * state, so the newest replaces what is shown. The browser reconnects a dropped stream by itself;
 * a refused one is checked through the API (a 401 signs the console out), then tried again.
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api } from './api.js';
import type { RolloutSummary, RolloutView } from '../../fleet-manager/control-schemas.js';

export type { RolloutSummary, RolloutView };

export interface Live<T> {
  /** The latest state; null until the first event. */
  value: T | null;
  connected: boolean;
  /** Why the stream is not open (e.g. no such rollout); null while fine. */
  problem: string | null;
  /** The fleet's clock minus this browser's (ms). */
  skewMs: number;
}

const RETRY_MS = 3000;

function useStream<T>(api: Api, url: string, event: string, pick: (data: { now: number } & Record<string, unknown>) => T): Live<T> {
  const [live, setLive] = useState<Live<T>>({ value: null, connected: false, problem: null, skewMs: 0 });
  useEffect(() => {
    setLive({ value: null, connected: false, problem: null, skewMs: 0 });
    let source: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let closed = false;
    const open = () => {
      source = new EventSource(url);
      source.addEventListener(event, (ev) => {
        const data = JSON.parse((ev as MessageEvent<string>).data) as { now: number } & Record<string, unknown>;
        setLive({ value: pick(data), connected: true, problem: null, skewMs: data.now - Date.now() });
      });
      source.addEventListener('error', () => {
        setLive((l) => ({ ...l, connected: false }));
        if (source?.readyState !== EventSource.CLOSED) return;
        source = null;
        // EventSource hides the status: ask the API why (a 401 signs out; a 404 is shown).
        void api.get(url.replace(/\/events$/, '')).then(
          () => {
            if (!closed) retry = setTimeout(open, RETRY_MS);
          },
          (err: Error & { status?: number }) => {
            if (closed) return;
            if (err.status === 404) setLive((l) => ({ ...l, problem: err.message }));
            else retry = setTimeout(open, RETRY_MS);
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
  }, [api, url]);
  return live;
}

/** Every rollout, newest first, live. */
export function useRollouts(api: Api): Live<RolloutSummary[]> {
  return useStream(api, '/api/rollouts/events', 'rollouts', (d) => [...(d.rollouts as RolloutSummary[])].sort((a, b) => b.createdAt - a.createdAt));
}

/** One rollout's full view, live. */
export function useRollout(api: Api, id: string): Live<RolloutView> {
  return useStream(api, `/api/rollouts/${encodeURIComponent(id)}/events`, 'rollout', (d) => d.rollout as RolloutView);
}
