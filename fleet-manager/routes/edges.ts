/** `GET /api/edges` and `GET /api/lines`: who is in the fleet, where, and how they are doing. */
import type { FastifyPluginAsync } from 'fastify';
import { EdgesSchema, LinesSchema, errorResponses, type EdgeView } from '../http-schemas.js';
import type { EdgeRecord } from '../store.js';
import type { RouteDeps } from './deps.js';

/** Registers the edge and line listings. */
export const edgeRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.get('/api/edges', { schema: { response: { 200: EdgesSchema, ...errorResponses } } }, async () => {
    const edges = await deps.store.listEdges();
    return { edges: edges.map(toEdgeView) };
  });

  app.get('/api/lines', { schema: { response: { 200: LinesSchema, ...errorResponses } } }, async () => {
    return { lines: await deps.store.listLines() };
  });
};

function toEdgeView(e: EdgeRecord): EdgeView {
  const t = e.telemetry;
  // The newer report wins: after a wiped edge database the old store's higher seqs are history.
  const reports = [t, e.state].filter((r) => typeof r?.lastSeq === 'number') as { lastSeq: number; ts?: number }[];
  reports.sort((a, b) => (b.ts ?? 0) - (a.ts ?? 0));
  const active = e.state?.active;
  return {
    id: e.id,
    line: e.line,
    cameras: e.cameras,
    online: e.online,
    firstSeen: e.firstSeen,
    lastSeen: e.lastSeen,
    ackedSeq: e.ackedSeq,
    lastSeq: reports[0]?.lastSeq ?? null,
    storeId: e.storeId || null,
    activeModel: active ? `${active.name}@${active.version}` : null,
    agentVersion: e.state?.agentVersion ?? null,
    telemetry:
      t && e.telemetryAt !== null
        ? {
            at: e.telemetryAt,
            fps: t.fps,
            frames: t.frames,
            defects: t.defects,
            failed: t.failed,
            queueDepth: t.queueDepth,
            pendingResults: t.pendingResults,
            latencyP95Ms: t.latencyMs.p95,
            cpuPercent: t.cpuPercent,
            rssBytes: t.rssBytes,
            alarms: t.alarms ?? [],
            ...(t.storage ? { storage: t.storage } : {}),
          }
        : null,
  };
}
