/**
 * Rollouts over HTTP: create one, watch each stage and edge, and the people's levers (promote,
 * pause, resume, abort, rollback), plus the manual rollback of a whole line.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import {
  LineParamsSchema,
  LineRollbackSchema,
  RolloutActionParamsSchema,
  RolloutParamsSchema,
  RolloutsSchema,
  RolloutViewSchema,
} from '../control-schemas.js';
import { CreateRolloutSchema, type CreateRolloutBody, type RolloutDoc } from '../rollout-spec.js';
import { rolloutSummary, rolloutView } from '../rollout-view.js';
import type { RouteDeps } from './deps.js';

/** Registers the rollout routes; needs deps.control. */
export const rolloutRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const { engine, store } = deps.control!;

  async function view(doc: RolloutDoc) {
    const [edges, desired] = await Promise.all([deps.store.listEdges(), store.listDesired()]);
    return rolloutView(doc, {
      edges: new Map(edges.map((e) => [e.id, e])),
      desired: new Map(desired.map((d) => [d.edgeId, d])),
      now: deps.now(),
      engineStartedAt: engine.startedAt,
    });
  }

  app.post<{ Body: CreateRolloutBody }>(
    '/api/rollouts',
    { config: { permission: 'rollouts:write' }, schema: { body: CreateRolloutSchema, response: { 201: RolloutViewSchema, ...errorResponses } } },
    async (req, reply) => reply.code(201).send(await view(await engine.create(req.body))),
  );

  app.get('/api/rollouts', { config: { permission: 'fleet:read' }, schema: { response: { 200: RolloutsSchema, ...errorResponses } } }, async () => ({
    rollouts: (await engine.list()).map(rolloutSummary),
  }));

  app.get<{ Params: Static<typeof RolloutParamsSchema> }>(
    '/api/rollouts/:id',
    { config: { permission: 'fleet:read' }, schema: { params: RolloutParamsSchema, response: { 200: RolloutViewSchema, ...errorResponses } } },
    async (req) => {
      const doc = await engine.get(req.params.id);
      if (!doc) throw new OspreyError('OSP_ERR_NOT_FOUND', `no rollout ${req.params.id}`);
      return view(doc);
    },
  );

  // Promoting is releasing (a release manager's call); pausing, resuming, aborting and rolling
  // back are how operators stop harm. The static route wins over '/:action' in the router.
  app.post<{ Params: Static<typeof RolloutParamsSchema> }>(
    '/api/rollouts/:id/promote',
    { config: { permission: 'rollouts:write' }, schema: { params: RolloutParamsSchema, response: { 200: RolloutViewSchema, ...errorResponses } } },
    async (req) => view(await engine.act(req.params.id, 'promote')),
  );

  app.post<{ Params: Static<typeof RolloutActionParamsSchema> }>(
    '/api/rollouts/:id/:action',
    { config: { permission: 'rollouts:control' }, schema: { params: RolloutActionParamsSchema, response: { 200: RolloutViewSchema, ...errorResponses } } },
    async (req) => view(await engine.act(req.params.id, req.params.action)),
  );

  app.post<{ Params: Static<typeof LineParamsSchema> }>(
    '/api/lines/:line/rollback',
    { config: { permission: 'rollouts:control' }, schema: { params: LineParamsSchema, response: { 200: LineRollbackSchema, ...errorResponses } } },
    async (req) => engine.rollbackLine(req.params.line),
  );
};
