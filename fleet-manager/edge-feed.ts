/**
 * Which edges changed, for whoever watches live (the console's event stream, routes/events.ts).
 * Ingest notifies after it stored an edge's state, telemetry or event; subscribers hear each
 * changed edge once per tick, so a busy fleet sends fewer, fuller updates rather than more.
 */

export interface EdgeFeed {
  /** The edge's stored view changed. Cheap and synchronous; a no-op without subscribers. */
  notify(edgeId: string): void;
  /** `listener` gets the ids changed during each tick; returns the unsubscribe. */
  subscribe(listener: (edgeIds: readonly string[]) => void): () => void;
  /** Drops the pending tick and every subscriber. Idempotent. */
  close(): void;
}

export interface EdgeFeedOptions {
  /** How long changes gather before subscribers hear them (default 100 ms). */
  tickMs?: number;
}

/** Creates an edge feed; close it when the fleet stops. */
export function createEdgeFeed(opts: EdgeFeedOptions = {}): EdgeFeed {
  const tickMs = opts.tickMs ?? 100;
  const listeners = new Set<(edgeIds: readonly string[]) => void>();
  // Bounded by the number of edges: an id is in it at most once.
  const changed = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  function flush(): void {
    timer = undefined;
    const ids = [...changed];
    changed.clear();
    for (const listener of listeners) listener(ids);
  }

  return {
    notify(edgeId) {
      if (closed || listeners.size === 0) return;
      changed.add(edgeId);
      timer ??= setTimeout(flush, tickMs);
    },
    subscribe(listener) {
      if (closed) return () => undefined;
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      changed.clear();
      listeners.clear();
    },
  };
}
