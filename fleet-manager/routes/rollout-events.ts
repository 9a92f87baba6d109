/**
 * Rollouts, live, as server-sent events (the console's rollout screens; no polling):
 *  - `GET /api/rollouts/events`: `rollouts` {now, rollouts} (every rollout's summary) at once and
 *    again whenever a rollout is saved;
 *  - `GET /api/rollouts/:id/events`: `rollout` {now, rollout} (the full view: each stage, each
 *    gate's value against its limit, each edge's progress) at once and again whenever the engine
 *    saves the rollout or one of its edges reports.
 * Each event is the whole current view, read when it is sent: a slow reader gets fewer, newer
 * views (one read at a time per stream, at most one more owed), never a growing queue. A stream
 * opened with a session ends at the first heartbeat after the session does; streams end on close.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { RolloutParamsSchema } from '../control-schemas.js';
import type { EdgeFeed } from '../edge-feed.js';
import { rolloutSummary } from '../rollout-view.js';
import { loadRolloutView } from './rollouts.js';
import type { RouteDeps } from './deps.js';
import { coalescedRefresh, createSseHub, type SseEvent, type SseHubOptions } from './sse.js';

export interface RolloutEventRouteDeps extends RouteDeps, SseHubOptions {
  /** Which rollouts were saved (the engine's onChange). */
  rollouts: EdgeFeed;
  /** Which edges reported (their online state and models are part of a rollout's view). */
  feed: EdgeFeed;
}

interface Client {
  /** Reads the current view and sends it. */
  refresh: () => void;
  /** Whether a change of these rollouts or edges concerns this stream. */
  wants: (rolloutIds: readonly string[], edgeIds: readonly string[]) => boolean;
}

/** Registers both rollout streams; needs deps.control. */
export const rolloutEventRoutes: FastifyPluginAsync<RolloutEventRouteDeps> = async (app, deps) => {
  const { engine } = deps.control!;
  const hub = createSseHub(app, deps);
  const clients = new Set<Client>();

  const changed = (rolloutIds: readonly string[], edgeIds: readonly string[]) => {
    for (const c of clients) if (c.wants(rolloutIds, edgeIds)) c.refresh();
  };
  const unsubscribe = [deps.rollouts.subscribe((ids) => changed(ids, [])), deps.feed.subscribe((ids) => changed([], ids))];
  app.addHook('preClose', async () => {
    for (const u of unsubscribe) u();
  });

  /**
   * Opens a stream whose view `read` returns (null: gone), sends it first and again on each change
   * `wants` accepts. Changes while the first view is read are owed, not lost.
   */
  async function serve(req: FastifyRequest, reply: FastifyReply, key: string, read: () => Promise<SseEvent | null>, wants: Client['wants'], missing: () => OspreyError) {
    const stream = hub.open(req, reply);
    let first = true;
    let owedWhileFirst = false;
    const refresh = coalescedRefresh(
      stream,
      async () => {
        const e = await read();
        if (e) stream.send(key, e.event, e.data);
      },
      (err) => app.log.error({ err }, 'rollout view not sent'),
    );
    const c: Client = {
      refresh: () => {
        if (first) owedWhileFirst = true;
        else refresh();
      },
      wants,
    };
    clients.add(c);
    stream.onEnd(() => clients.delete(c));
    try {
      const e = await read();
      if (e === null) throw missing();
      stream.start([e]);
    } catch (err) {
      stream.end();
      throw err;
    }
    first = false;
    if (owedWhileFirst) refresh();
  }

  const streamSchema = (description: string) => ({
    description,
    response: { 200: { content: { 'text/event-stream': { schema: Type.String() } } }, ...errorResponses },
  });

  const readList = async (): Promise<SseEvent> => ({ event: 'rollouts', data: { now: deps.now(), rollouts: (await engine.list()).map(rolloutSummary) } });

  app.get(
    '/api/rollouts/events',
    { config: { permission: 'fleet:read' }, schema: streamSchema('server-sent events: `rollouts` {now, rollouts} at once and on each change (docs/fleet-manager.md)') },
    (req, reply) =>
      serve(req, reply, 'rollouts', readList, (rollouts) => rollouts.length > 0, () => new OspreyError('OSP_ERR_NOT_FOUND', 'no rollouts')),
  );

  app.get<{ Params: Static<typeof RolloutParamsSchema> }>(
    '/api/rollouts/:id/events',
    {
      config: { permission: 'fleet:read' },
      schema: { params: RolloutParamsSchema, ...streamSchema('server-sent events: `rollout` {now, rollout} (the full view) at once and on each change (docs/fleet-manager.md)') },
    },
    (req, reply) => {
      const id = req.params.id;
      /** The rollout's edges, as of the latest view: their reports change the view. */
      let edges = new Set<string>();
      const read = async (): Promise<SseEvent | null> => {
        const doc = await engine.get(id);
        if (!doc) return null;
        const rollout = await loadRolloutView(deps, doc);
        edges = new Set([...rollout.members.map((m) => m.edgeId), ...rollout.stages.flatMap((s) => s.edges.map((e) => e.edgeId))]);
        return { event: 'rollout', data: { now: deps.now(), rollout } };
      };
      return serve(
        req,
        reply,
        'rollout',
        read,
        (rollouts, changedEdges) => rollouts.includes(id) || changedEdges.some((e) => edges.has(e)),
        () => new OspreyError('OSP_ERR_NOT_FOUND', `no rollout ${id}`),
      );
    },
  );
};
