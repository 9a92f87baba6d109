/**
 * `GET /metrics`: the fleet's Prometheus metrics in the text exposition format
 * (fleet-manager/fleet-metrics.ts; docs/monitoring.md). Permission `metrics:read`, which every
 * role holds: Prometheus scrapes with a viewer's API token.
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import type { Registry } from 'prom-client';
import { errorResponses } from '../http-schemas.js';

export interface MetricsRouteDeps {
  registry: Registry;
}

/** Registers `GET /metrics`. */
export const metricsRoutes: FastifyPluginAsync<MetricsRouteDeps> = async (app, deps) => {
  app.get(
    '/metrics',
    {
      config: { permission: 'metrics:read' },
      schema: {
        summary: 'Prometheus metrics (text exposition format 0.0.4)',
        response: { 200: { description: 'every osprey_fleet_* metric', content: { 'text/plain': { schema: Type.String() } } }, ...errorResponses },
      },
    },
    async (_req, reply) => {
      const text = await deps.registry.metrics();
      return reply.type(deps.registry.contentType).header('cache-control', 'no-store').send(text);
    },
  );
};
