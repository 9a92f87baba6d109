/** `GET /`: the self-contained HTML dashboard. */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { DASHBOARD_CSP, DASHBOARD_HTML } from '../dashboard-page.js';
import { errorResponses } from '../http-schemas.js';

/** Registers the dashboard page. */
export const dashboardRoutes: FastifyPluginAsync = async (app) => {
  app.get(
    '/',
    {
      config: { permission: 'public' },
      schema: {
        response: { 200: { content: { 'text/html': { schema: Type.String() } } }, ...errorResponses },
      },
    },
    async (_req, reply) =>
      reply
        .type('text/html; charset=utf-8')
        .header('content-security-policy', DASHBOARD_CSP)
        .header('x-content-type-options', 'nosniff')
        .header('cache-control', 'no-cache')
        .send(DASHBOARD_HTML),
  );
};
