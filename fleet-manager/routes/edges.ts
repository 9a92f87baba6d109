/**
 * `GET /api/edges`, `GET /api/edges/:id/events` and `GET /api/lines`: who is in the fleet, where,
 * how they are doing and what happened to them.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { EdgeEventsQuerySchema, EdgeEventsSchema, EdgesSchema, LinesSchema, errorResponses, type EdgeView } from '../http-schemas.js';
import { EdgeParamsSchema } from '../control-schemas.js';
import type { EdgeConvergence } from '../convergence.js';
import type { EdgeRecord } from '../store.js';
import type { RouteDeps } from './deps.js';
import { lastSeqOf } from '../edge-last-seq.js';

/** Registers the edge and line listings. */
export const edgeRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.get('/api/edges', { config: { permission: 'fleet:read' }, schema: { response: { 200: EdgesSchema, ...errorResponses } } }, async () => {
    const edges = await deps.store.listEdges();
    const convergence = deps.control?.convergence;
    return { edges: edges.map((e) => toEdgeView(e, convergence?.view(e.id) ?? null)) };
  });

  app.get<{ Params: Static<typeof EdgeParamsSchema>; Querystring: Static<typeof EdgeEventsQuerySchema> }>(
    '/api/edges/:id/events',
    { config: { permission: 'fleet:read' }, schema: { params: EdgeParamsSchema, querystring: EdgeEventsQuerySchema, response: { 200: EdgeEventsSchema, ...errorResponses } } },
    async (req) => {
      if (!(await deps.store.getEdge(req.params.id))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no edge ${req.params.id}`);
      return { events: await deps.store.listEvents(req.params.id, req.query.limit) };
    },
  );

  app.get('/api/lines', { config: { permission: 'fleet:read' }, schema: { response: { 200: LinesSchema, ...errorResponses } } }, async () => {
    return { lines: await deps.store.listLines() };
  });
};

/** An edge as the API shows it (`GET /api/edges`, the console's event stream). */
export function toEdgeView(e: EdgeRecord, convergence: EdgeConvergence | null): EdgeView {
  const t = e.telemetry;
  const lastSeq = lastSeqOf(e);
  const active = e.state?.active;
  return {
    id: e.id,
    line: e.line,
    cameras: e.cameras,
    online: e.online,
    firstSeen: e.firstSeen,
    lastSeen: e.lastSeen,
    ackedSeq: e.ackedSeq,
    lastSeq,
    backlog: lastSeq === null ? null : lastSeq - e.ackedSeq,
    storeId: e.storeId || null,
    activeModel: active ? `${active.name}@${active.version}` : null,
    agentVersion: e.state?.agentVersion ?? null,
    telemetry:
      t && e.telemetryAt !== null
        ? {
            at: e.telemetryAt,
            intervalMs: t.intervalMs,
            fps: t.fps,
            frames: t.frames,
            defects: t.defects,
            failed: t.failed,
            queueDepth: t.queueDepth,
            pendingResults: t.pendingResults,
            latencyP50Ms: t.latencyMs.p50,
            latencyP95Ms: t.latencyMs.p95,
            failures: t.failures,
            cpuPercent: t.cpuPercent,
            rssBytes: t.rssBytes,
            alarms: t.alarms ?? [],
            ...(t.storage ? { storage: t.storage } : {}),
            ...(t.monitor ? { monitor: t.monitor } : {}),
          }
        : null,
    convergence,
  };
}
