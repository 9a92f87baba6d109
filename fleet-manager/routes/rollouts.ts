/**
 * Rollouts over HTTP: create one, watch each stage and edge, and the people's levers (promote,
 * pause, resume, abort, rollback), plus the manual rollback of a whole line.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
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
  type RolloutView,
} from '../control-schemas.js';
import { CreateRolloutSchema, type CreateRolloutBody, type RolloutDoc } from '../rollout-spec.js';
import { rolloutSummary, rolloutView } from '../rollout-view.js';
import type { RouteDeps } from './deps.js';
import type { RolloutAction } from '../rollout-engine.js';
import { describePrincipal } from '../auth/principal.js';

/** The full view of a rollout now (its edges' latest reports and desired states); needs deps.control. */
export async function loadRolloutView(deps: RouteDeps, doc: RolloutDoc): Promise<RolloutView> {
  const { engine, store } = deps.control!;
  const [edges, desired] = await Promise.all([deps.store.listEdges(), store.listDesired()]);
  return rolloutView(doc, {
    edges: new Map(edges.map((e) => [e.id, e])),
    desired: new Map(desired.map((d) => [d.edgeId, d])),
    now: deps.now(),
    engineStartedAt: engine.startedAt,
  });
}

/** Registers the rollout routes; needs deps.control. */
export const rolloutRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const { engine } = deps.control!;
  const view = (doc: RolloutDoc) => loadRolloutView(deps, doc);

  /** Pulls a lever and notes who did it, and the status before and after, for the audit row. */
  async function act(req: FastifyRequest, id: string, action: RolloutAction): Promise<RolloutDoc> {
    // A snapshot: the engine changes its in-memory document in place.
    const found = await engine.get(id);
    const before = found && { status: found.status, stageIndex: found.stageIndex };
    const doc = await engine.act(id, action, describePrincipal(req.principal));
    req.auditNote = { action: `rollout.${action}`, target: `rollout:${id}`, before, after: { status: doc.status, stageIndex: doc.stageIndex } };
    return doc;
  }

  app.post<{ Body: CreateRolloutBody }>(
    '/api/rollouts',
    { config: { permission: 'rollouts:write' }, schema: { body: CreateRolloutSchema, response: { 201: RolloutViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const doc = await engine.create(req.body, describePrincipal(req.principal));
      req.auditNote = { action: 'rollout.create', target: `rollout:${doc.id}`, after: { model: `${doc.model}@${doc.version}`, sha256: doc.sha256, createdBy: doc.createdBy, spec: doc.spec } };
      return reply.code(201).send(await view(doc));
    },
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
    async (req) => view(await act(req, req.params.id, 'promote')),
  );

  app.post<{ Params: Static<typeof RolloutActionParamsSchema> }>(
    '/api/rollouts/:id/:action',
    { config: { permission: 'rollouts:control' }, schema: { params: RolloutActionParamsSchema, response: { 200: RolloutViewSchema, ...errorResponses } } },
    async (req) => view(await act(req, req.params.id, req.params.action)),
  );

  app.post<{ Params: Static<typeof LineParamsSchema> }>(
    '/api/lines/:line/rollback',
    { config: { permission: 'rollouts:control' }, schema: { params: LineParamsSchema, response: { 200: LineRollbackSchema, ...errorResponses } } },
    async (req) => {
      const result = await engine.rollbackLine(req.params.line);
      req.auditNote = { action: 'line.rollback', target: `line:${req.params.line}`, after: result };
      return result;
    },
  );
};
