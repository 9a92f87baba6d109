/**
 * `GET /api/events`: the fleet's edges, live, as server-sent events (what the console's overview
 * listens to instead of polling). The stream opens with a `snapshot` of every edge, then sends an
 * `edge` event with the edge's whole view each time ingest stores its state, telemetry or events.
 * A client that reads slowly never costs a growing queue: while its socket is backed up it keeps
 * only the newest view of each changed edge (at most one per edge). A stream opened with a
 * session ends at the first heartbeat after the session does. Streams end on app close.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { ServerResponse } from 'node:http';
import { Type } from '@sinclair/typebox';
import { errorResponses, type EdgeView } from '../http-schemas.js';
import type { EdgeFeed } from '../edge-feed.js';
import type { RouteDeps } from './deps.js';
import type { IdentityStore } from '../identity-store.js';
import { SESSION_COOKIE, readCookie } from '../auth/authorize.js';
import { toEdgeView } from './edges.js';

export interface EventRouteDeps extends RouteDeps {
  feed: EdgeFeed;
  /** Where a stream's session is checked again at each heartbeat. */
  identity: Pick<IdentityStore, 'resolveSession'>;
  /** A comment line this often keeps proxies from closing an idle stream, and sessions are checked again (default 25 s). */
  heartbeatMs?: number;
  /** Bytes a client's socket may hold unsent before updates are held back and merged (default 256 KiB). */
  maxBufferedBytes?: number;
}

/** One connected stream. */
interface Client {
  res: ServerResponse;
  /** The snapshot is written: updates may follow. */
  ready: boolean;
  /** The read that made the snapshot; updates read before it are older than the snapshot. */
  snapshotRead: number;
  /** Views held back while the socket is backed up (or before the snapshot), newest per edge. */
  held: Map<string, EdgeView>;
  /** The session cookie the stream was opened with; null for a bearer credential or no authentication. */
  session: string | null;
}

/** The wire form of one event. JSON has no raw newline, so `data` is one line. */
const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

/** Registers the event stream. */
export const eventRoutes: FastifyPluginAsync<EventRouteDeps> = async (app, deps) => {
  const heartbeatMs = deps.heartbeatMs ?? 25_000;
  const maxBuffered = deps.maxBufferedBytes ?? 256 * 1024;
  const clients = new Set<Client>();
  let reads = 0;
  let heartbeat: NodeJS.Timeout | undefined;
  // Batches are read and sent in order, so an older view never overtakes a newer one.
  let chain = Promise.resolve();

  const convergence = deps.control?.convergence;
  const viewOf = async (edgeId: string) => {
    const e = await deps.store.getEdge(edgeId);
    return e ? toEdgeView(e, convergence?.view(e.id) ?? null) : null;
  };

  function send(c: Client, views: Iterable<EdgeView>): void {
    let chunk = '';
    for (const edge of views) chunk += sse('edge', { now: deps.now(), edge });
    if (chunk) c.res.write(chunk);
  }

  function offer(c: Client, views: EdgeView[], readNo: number): void {
    // Read before the snapshot was: the snapshot already has it, or something newer.
    if (readNo < c.snapshotRead) return;
    if (!c.ready || c.res.writableLength > maxBuffered) {
      for (const v of views) c.held.set(v.id, v);
      return;
    }
    send(c, views);
  }

  function flushHeld(c: Client): void {
    if (!c.ready || c.held.size === 0 || c.res.writableLength > maxBuffered) return;
    const views = [...c.held.values()];
    c.held.clear();
    send(c, views);
  }

  const unsubscribe = deps.feed.subscribe((edgeIds) => {
    if (clients.size === 0) return;
    chain = chain.then(async () => {
      const readNo = ++reads;
      const views = (await Promise.all(edgeIds.map(viewOf))).filter((v): v is EdgeView => v !== null);
      for (const c of clients) offer(c, views, readNo);
    }).catch((err: unknown) => app.log.error({ err }, 'edge updates not sent'));
  });

  /** Heartbeat: keeps the stream open through proxies, and ends it once its session is gone. */
  function beat(): void {
    for (const c of clients) {
      c.res.write(': keep-alive\n\n');
      if (c.session === null) continue;
      deps.identity.resolveSession(c.session).then(
        (found) => {
          if (found || !clients.has(c)) return;
          drop(c);
          c.res.end();
        },
        (err: unknown) => app.log.warn({ err }, 'event stream: session not checked'),
      );
    }
  }

  function drop(c: Client): void {
    clients.delete(c);
    if (clients.size === 0) {
      clearInterval(heartbeat);
      heartbeat = undefined;
    }
  }

  app.get(
    '/api/events',
    {
      config: { permission: 'fleet:read' },
      schema: {
        description: 'server-sent events: `snapshot` {now, edges}, then `edge` {now, edge} per change (docs/fleet-manager.md)',
        response: { 200: { content: { 'text/event-stream': { schema: Type.String() } } }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const p = req.principal;
      const session = p?.kind === 'user' && p.via === 'session' ? (readCookie(req.headers.cookie, SESSION_COOKIE) ?? null) : null;
      const c: Client = { res: reply.raw, ready: false, snapshotRead: ++reads, held: new Map(), session };
      // Listening before the snapshot is read: a change made meanwhile is held, not lost.
      clients.add(c);
      req.raw.on('close', () => drop(c));
      c.res.on('drain', () => flushHeld(c));
      heartbeat ??= setInterval(beat, heartbeatMs);
      try {
        const edges = (await deps.store.listEdges()).map((e) => toEdgeView(e, convergence?.view(e.id) ?? null));
        reply.hijack();
        c.res.writeHead(200, {
          'content-type': 'text/event-stream; charset=utf-8',
          'cache-control': 'no-store',
          'x-content-type-options': 'nosniff',
        });
        // `retry`: how soon a browser's EventSource reconnects after the stream drops.
        c.res.write(`retry: 2000\n${sse('snapshot', { now: deps.now(), edges })}`);
        c.ready = true;
        flushHeld(c);
      } catch (err) {
        drop(c);
        throw err;
      }
    },
  );

  // Open streams would hold app.close() (and the fleet's shutdown) forever.
  app.addHook('preClose', async () => {
    unsubscribe();
    clearInterval(heartbeat);
    heartbeat = undefined;
    for (const c of clients) c.res.end();
    clients.clear();
  });
};
