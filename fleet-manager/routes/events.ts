/**
 * `GET /api/events`: the fleet's edges, live, as server-sent events (what the console's overview
 * listens to instead of polling). The stream opens with a `snapshot` of every edge, then sends an
 * `edge` event with the edge's whole view each time ingest stores its state, telemetry or events,
 * and an `alert` event for each change of an alert (raised, updated, acknowledged, resolved).
 * A client that reads slowly never costs a growing queue: while its socket is backed up it keeps
 * only the newest view of each changed edge (at most one per edge). A stream opened with a
 * session ends at the first heartbeat after the session does. Streams end on app close.
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { errorResponses } from '../http-schemas.js';
import type { EdgeFeed } from '../edge-feed.js';
import type { RouteDeps } from './deps.js';
import { toEdgeView } from './edges.js';
import { createSseHub, type SseHubOptions, type SseStream } from './sse.js';
import type { Alerts } from '../alerts.js';

export interface EventRouteDeps extends RouteDeps, SseHubOptions {
  feed: EdgeFeed;
  /** Alert changes (issue 17), sent as `alert` {event, alert}; absent: none are sent. */
  alerts?: Pick<Alerts, 'onChange'>;
}

/** One connected stream and the read that made its snapshot (updates read before it are older). */
interface Client {
  stream: SseStream;
  snapshotRead: number;
}

/** Registers the event stream. */
export const eventRoutes: FastifyPluginAsync<EventRouteDeps> = async (app, deps) => {
  const hub = createSseHub(app, deps);
  const clients = new Set<Client>();
  let reads = 0;
  // Batches are read and sent in order, so an older view never overtakes a newer one.
  let chain = Promise.resolve();

  const convergence = deps.control?.convergence;
  const viewOf = async (edgeId: string) => {
    const e = await deps.store.getEdge(edgeId);
    return e ? toEdgeView(e, convergence?.view(e.id) ?? null) : null;
  };

  const unsubscribe = deps.feed.subscribe((edgeIds) => {
    if (clients.size === 0) return;
    chain = chain
      .then(async () => {
        const readNo = ++reads;
        const views = await Promise.all(edgeIds.map(viewOf));
        const now = deps.now();
        for (const c of clients) {
          // Read before the snapshot was: the snapshot already has it, or something newer.
          if (readNo < c.snapshotRead) continue;
          for (const edge of views) if (edge) c.stream.send(`edge:${edge.id}`, 'edge', { now, edge });
        }
      })
      .catch((err: unknown) => app.log.error({ err }, 'edge updates not sent'));
  });
  // Each alert change as it happens; a slow reader keeps only the newest change of each alert.
  const unsubscribeAlerts = deps.alerts?.onChange((change) => {
    for (const c of clients) c.stream.send(`alert:${change.alert.id}`, 'alert', change);
  });
  app.addHook('preClose', async () => {
    unsubscribe();
    unsubscribeAlerts?.();
  });

  app.get(
    '/api/events',
    {
      config: { permission: 'fleet:read' },
      schema: {
        description: 'server-sent events: `snapshot` {now, edges}, then `edge` {now, edge} per change and `alert` {event, alert} per alert change (docs/fleet-manager.md)',
        response: { 200: { content: { 'text/event-stream': { schema: Type.String() } } }, ...errorResponses },
      },
    },
    async (req, reply) => {
      const c: Client = { stream: hub.open(req, reply), snapshotRead: ++reads };
      // Listening before the snapshot is read: a change made meanwhile is held, not lost.
      clients.add(c);
      c.stream.onEnd(() => clients.delete(c));
      try {
        const edges = (await deps.store.listEdges()).map((e) => toEdgeView(e, convergence?.view(e.id) ?? null));
        c.stream.start([{ event: 'snapshot', data: { now: deps.now(), edges } }]);
      } catch (err) {
        c.stream.end();
        throw err;
      }
    },
  );
};
