/**
 * Server-sent event streams: the one implementation behind every live stream of the fleet
 * (edges, rollouts, training jobs, alerts). It owns what each of them needs alike:
 *  - the response: status, headers, a `retry` hint, then the stream's first events;
 *  - backpressure: while a reader's socket holds more than `maxBufferedBytes` unsent (or before
 *    the first events are written), each event is kept under its key and only the newest per key
 *    survives — a slow reader gets fewer, newer events, never a growing queue;
 *  - a heartbeat comment that keeps proxies from closing an idle stream, and at each heartbeat a
 *    stream opened with a session ends once that session has (sign-out, expiry, revocation);
 *  - ending every stream when the app closes (open streams would hold app.close() forever).
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { IdentityStore } from '../identity-store.js';
import { SESSION_COOKIE, readCookie } from '../auth/authorize.js';

export interface SseHubOptions {
  /** Where a stream's session is checked again at each heartbeat. */
  identity: Pick<IdentityStore, 'resolveSession'>;
  /** Heartbeat and session check period (default 25 s). */
  heartbeatMs?: number;
  /** Bytes a socket may hold unsent before events are held back and merged by key (default 256 KiB). */
  maxBufferedBytes?: number;
}

export interface SseEvent {
  event: string;
  data: unknown;
}

export interface SseStream {
  /**
   * Writes the event now, or keeps it under `key` while the reader is backed up or the stream has
   * not started (replacing an older event of the same key). No-op once the stream ended.
   */
  send(key: string, event: string, data: unknown): void;
  /** Answers 200 and writes `first`; events sent before start() follow right after. */
  start(first: readonly SseEvent[]): void;
  /** Ends the stream (or, before start(), just forgets it: the route answers the error). Idempotent. */
  end(): void;
  readonly ended: boolean;
  /** Called once when the stream ends, whoever ended it. */
  onEnd(fn: () => void): void;
  /** Called when the socket has drained after being backed up (before held events are written). */
  onDrain(fn: () => void): void;
  /** Whether the socket is backed up now (events sent now would be held). */
  readonly backedUp: boolean;
}

export interface SseHub {
  /** A stream for this request; call start() once its first events are read. */
  open(req: FastifyRequest, reply: FastifyReply): SseStream;
  /** Streams open now. */
  readonly size: number;
}

const HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

/** The wire form of one event. JSON has no raw newline, so `data` is one line. */
export const sseEvent = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** A hub for the streams of one plugin; its streams end when `app` closes. */
export function createSseHub(app: FastifyInstance, opts: SseHubOptions): SseHub {
  const heartbeatMs = opts.heartbeatMs ?? 25_000;
  const maxBuffered = opts.maxBufferedBytes ?? 256 * 1024;
  const streams = new Set<Stream>();
  let heartbeat: NodeJS.Timeout | undefined;

  interface Stream extends SseStream {
    res: ServerResponse;
    session: string | null;
  }

  function forget(s: Stream): void {
    streams.delete(s);
    if (streams.size === 0) {
      clearInterval(heartbeat);
      heartbeat = undefined;
    }
  }

  function beat(): void {
    for (const s of streams) {
      if (!s.backedUp) s.res.write(': keep-alive\n\n');
      if (s.session === null) continue;
      opts.identity.resolveSession(s.session).then(
        (found) => {
          if (!found) s.end();
        },
        (err: unknown) => app.log.warn({ err }, 'event stream: session not checked'),
      );
    }
  }

  app.addHook('preClose', async () => {
    for (const s of [...streams]) s.end();
    clearInterval(heartbeat);
    heartbeat = undefined;
  });

  return {
    get size() {
      return streams.size;
    },
    open(req, reply) {
      const p = req.principal;
      const session = p?.kind === 'user' && p.via === 'session' ? (readCookie(req.headers.cookie, SESSION_COOKIE) ?? null) : null;
      const res = reply.raw;
      const held = new Map<string, string>();
      const endListeners: (() => void)[] = [];
      const drainListeners: (() => void)[] = [];
      let started = false;
      let ended = false;

      const flush = () => {
        if (!started || ended || held.size === 0 || res.writableLength > maxBuffered) return;
        const chunk = [...held.values()].join('');
        held.clear();
        res.write(chunk);
      };

      const s: Stream = {
        res,
        session,
        get ended() {
          return ended;
        },
        get backedUp() {
          return res.writableLength > maxBuffered;
        },
        send(key, event, data) {
          if (ended) return;
          const chunk = sseEvent(event, data);
          if (!started || held.size > 0 || res.writableLength > maxBuffered) {
            // Re-set at the end: a newer event of a key goes after the others held meanwhile.
            held.delete(key);
            held.set(key, chunk);
            flush();
            return;
          }
          res.write(chunk);
        },
        start(first) {
          if (ended || started) return;
          reply.hijack();
          res.writeHead(200, HEADERS);
          // `retry`: how soon a browser's EventSource reconnects after the stream drops.
          res.write(`retry: 2000\n${first.map((e) => sseEvent(e.event, e.data)).join('')}`);
          started = true;
          flush();
        },
        end() {
          if (ended) return;
          ended = true;
          held.clear();
          forget(s);
          if (started) res.end();
          for (const fn of endListeners.splice(0)) fn();
        },
        onEnd(fn) {
          if (ended) fn();
          else endListeners.push(fn);
        },
        onDrain(fn) {
          drainListeners.push(fn);
        },
      };
      streams.add(s);
      req.raw.on('close', () => s.end());
      res.on('drain', () => {
        if (ended) return;
        for (const fn of drainListeners) fn();
        flush();
      });
      heartbeat ??= setInterval(beat, heartbeatMs);
      return s;
    },
  };
}

/**
 * Serialises reads of a stream's current view: at most one read runs, and changes that arrive
 * meanwhile (or while the reader is backed up) cost one more read once it is done, not one each.
 */
export function coalescedRefresh(stream: SseStream, read: () => Promise<void>, onError: (err: unknown) => void): () => void {
  let busy = false;
  let owed = false;
  const refresh = (): void => {
    if (stream.ended) return;
    if (busy || stream.backedUp) {
      owed = true;
      return;
    }
    busy = true;
    owed = false;
    read()
      .catch(onError)
      .finally(() => {
        busy = false;
        if (owed) refresh();
      });
  };
  stream.onDrain(() => {
    if (owed) refresh();
  });
  return refresh;
}
