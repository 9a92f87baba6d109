/**
 * `POST /golden-set/run` on the edge's own HTTP API: runs the golden set of the models in service
 * now and answers their reports (docs/edge-agent.md). Loopback callers only, even when the API
 * listens on the network: it costs CPU the line needs, so only someone on the machine may ask.
 */
import type { FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { requireLoopback } from './loopback-only.js';
import { GoldenSetReportSchema } from '../protocol/monitoring.js';
import type { GoldenSetMonitor } from './golden-set.js';

const RunQuery = Type.Object(
  { role: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('shadow')], { description: 'only this model (default: active and shadow)' })) },
  { additionalProperties: false },
);
const RunResponse = Type.Object({ reports: Type.Array(GoldenSetReportSchema) }, { additionalProperties: false });

/** Adds the route to the edge's HTTP app (before it listens). */
export function addGoldenSetRoute(app: FastifyInstance, monitor: Pick<GoldenSetMonitor, 'run'>): void {
  app.post<{ Querystring: { role?: 'active' | 'shadow' } }>(
    '/golden-set/run',
    { schema: { querystring: RunQuery, response: { 200: RunResponse } } },
    async (req) => {
      requireLoopback(req);
      return { reports: await monitor.run('demand', req.query.role) };
    },
  );
}
