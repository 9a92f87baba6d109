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
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { RolloutParamsSchema } from '../control-schemas.js';
import type { EdgeFeed } from '../edge-feed.js';
import type { IdentityStore } from '../identity-store.js';
import { SESSION_COOKIE, readCookie } from '../auth/authorize.js';
import { rolloutSummary } from '../rollout-view.js';
import { loadRolloutView } from './rollouts.js';
import type { RouteDeps } from './deps.js';

export interface RolloutEventRouteDeps extends RouteDeps {
  /** Which rollouts were saved (the engine's onChange). */
  rollouts: EdgeFeed;
  /** Which edges reported (their online state and models are part of a rollout's view). */
  feed: EdgeFeed;
  identity: Pick<IdentityStore, 'resolveSession'>;
  /** Heartbeat and session check period (default 25 s). */
  heartbeatMs?: number;
  /** Bytes a socket may hold unsent before the next view waits for it to drain (default 256 KiB). */
  maxBufferedBytes?: number;
}

interface Client {
  res: ServerResponse;
  session: string | null;
  /** Reads the current view and returns the event to write (null: nothing, e.g. the rollout is gone). */
  render: () => Promise<string | null>;
  /** Whether a change of these rollouts or edges concerns this stream. */
  wants: (rolloutIds: readonly string[], edgeIds: readonly string[]) => boolean;
  /** A read is in flight. */
  busy: boolean;
  /** A change arrived while busy or backed up: one more view is owed. */
  owed: boolean;
}

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

/** Registers both rollout streams; needs deps.control. */
export const rolloutEventRoutes: FastifyPluginAsync<RolloutEventRouteDeps> = async (app, deps) => {
  const { engine } = deps.control!;
  const heartbeatMs = deps.heartbeatMs ?? 25_000;
  const maxBuffered = deps.maxBufferedBytes ?? 256 * 1024;
  const clients = new Set<Client>();
  let heartbeat: NodeJS.Timeout | undefined;

  function refresh(c: Client): void {
    if (c.busy || c.res.writableLength > maxBuffered) {
      c.owed = true;
      return;
    }
    c.busy = true;
    c.owed = false;
    c.render()
      .then(
        (chunk) => {
          if (chunk && clients.has(c)) c.res.write(chunk);
        },
        (err: unknown) => app.log.error({ err }, 'rollout view not sent'),
      )
      .finally(() => {
        c.busy = false;
        if (c.owed && clients.has(c)) refresh(c);
      });
  }

  const changed = (rolloutIds: readonly string[], edgeIds: readonly string[]) => {
    for (const c of clients) if (c.wants(rolloutIds, edgeIds)) refresh(c);
  };
  const unsubscribe = [deps.rollouts.subscribe((ids) => changed(ids, [])), deps.feed.subscribe((ids) => changed([], ids))];

  function drop(c: Client): void {
    clients.delete(c);
    if (clients.size === 0) {
      clearInterval(heartbeat);
      heartbeat = undefined;
    }
  }

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
        (err: unknown) => app.log.warn({ err }, 'rollout stream: session not checked'),
      );
    }
  }

  /** Opens a stream whose first event is `first` (already read), then follows changes. */
  function open(req: FastifyRequest, res: ServerResponse, c: Omit<Client, 'res' | 'session' | 'busy' | 'owed'>): Client {
    const p = req.principal;
    const session = p?.kind === 'user' && p.via === 'session' ? (readCookie(req.headers.cookie, SESSION_COOKIE) ?? null) : null;
    const client: Client = { ...c, res, session, busy: false, owed: false };
    clients.add(client);
    req.raw.on('close', () => drop(client));
    res.on('drain', () => {
      if (client.owed && clients.has(client)) refresh(client);
    });
    heartbeat ??= setInterval(beat, heartbeatMs);
    return client;
  }

  const streamSchema = (description: string) => ({
    description,
    response: { 200: { content: { 'text/event-stream': { schema: Type.String() } } }, ...errorResponses },
  });

  const listEvent = async () => sse('rollouts', { now: deps.now(), rollouts: (await engine.list()).map(rolloutSummary) });

  app.get(
    '/api/rollouts/events',
    { config: { permission: 'fleet:read' }, schema: streamSchema('server-sent events: `rollouts` {now, rollouts} at once and on each change (docs/fleet-manager.md)') },
    async (req, reply) => {
      const c = open(req, reply.raw, { render: listEvent, wants: (rollouts) => rollouts.length > 0 });
      // Changes while the first list is read are owed, not lost.
      c.busy = true;
      try {
        const first = await listEvent();
        reply.hijack();
        reply.raw.writeHead(200, SSE_HEADERS);
        reply.raw.write(`retry: 2000\n${first}`);
      } catch (err) {
        drop(c);
        throw err;
      } finally {
        c.busy = false;
      }
      if (c.owed) refresh(c);
    },
  );

  app.get<{ Params: Static<typeof RolloutParamsSchema> }>(
    '/api/rollouts/:id/events',
    {
      config: { permission: 'fleet:read' },
      schema: { params: RolloutParamsSchema, ...streamSchema('server-sent events: `rollout` {now, rollout} (the full view) at once and on each change (docs/fleet-manager.md)') },
    },
    async (req, reply) => {
      const id = req.params.id;
      /** The rollout's edges, as of the latest view: their reports change the view. */
      let edges = new Set<string>();
      const render = async () => {
        const doc = await engine.get(id);
        if (!doc) return null;
        const rollout = await loadRolloutView(deps, doc);
        edges = new Set([...rollout.members.map((m) => m.edgeId), ...rollout.stages.flatMap((s) => s.edges.map((e) => e.edgeId))]);
        return sse('rollout', { now: deps.now(), rollout });
      };
      const c = open(req, reply.raw, { render, wants: (rollouts, changedEdges) => rollouts.includes(id) || changedEdges.some((e) => edges.has(e)) });
      c.busy = true;
      try {
        const first = await render();
        if (first === null) throw new OspreyError('OSP_ERR_NOT_FOUND', `no rollout ${id}`);
        reply.hijack();
        reply.raw.writeHead(200, SSE_HEADERS);
        reply.raw.write(`retry: 2000\n${first}`);
      } catch (err) {
        drop(c);
        throw err;
      } finally {
        c.busy = false;
      }
      if (c.owed) refresh(c);
    },
  );

  app.addHook('preClose', async () => {
    for (const u of unsubscribe) u();
    clearInterval(heartbeat);
    heartbeat = undefined;
    for (const c of clients) c.res.end();
    clients.clear();
  });
};
