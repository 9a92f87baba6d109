/**
 * Alerts (issue 17): `GET /api/alerts` (filtered, newest first, paged by cursor), one alert, and
 * `POST /api/alerts/:id/ack` (alerts:ack; who acknowledged it is the caller).
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { describePrincipal } from '../auth/principal.js';
import { alertView, type AlertStore } from '../alert-store.js';
import type { Alerts } from '../alerts.js';
import { AlertsPageSchema, AlertsQuerySchema, AlertViewSchema, IdParamsSchema, type AlertsQuery } from '../alert-schemas.js';
import { time } from './reviews.js';

export interface AlertRouteDeps {
  store: AlertStore;
  /** The rules: acknowledgements go through them; `onChange` is the live feed of every alert change (for `GET /api/events`). */
  alerts: Pick<Alerts, 'acknowledge' | 'onChange'>;
}

export const alertRoutes: FastifyPluginAsync<AlertRouteDeps> = async (app, deps) => {
  app.get<{ Querystring: AlertsQuery }>(
    '/api/alerts',
    { config: { permission: 'fleet:read' }, schema: { querystring: AlertsQuerySchema, response: { 200: AlertsPageSchema, ...errorResponses } } },
    async (req) => {
      const q = req.query;
      const since = q.since === undefined ? undefined : time('since', q.since);
      const until = q.until === undefined ? undefined : time('until', q.until);
      if (since !== undefined && until !== undefined && since >= until) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/since must be before querystring/until');
      const rows = await deps.store.list({
        ...(q.state !== undefined && { state: q.state }),
        ...(q.type !== undefined && { type: q.type }),
        ...(q.line !== undefined && { line: q.line }),
        ...(q.edgeId !== undefined && { edgeId: q.edgeId }),
        ...(since !== undefined && { since }),
        ...(until !== undefined && { until }),
        ...(q.cursor !== undefined && { before: Number(q.cursor) }),
        limit: q.limit + 1,
      });
      const items = rows.slice(0, q.limit);
      const nextCursor = rows.length > q.limit ? String(items[items.length - 1]!.id) : null;
      return { items: items.map(alertView), nextCursor, counts: await deps.store.counts() };
    },
  );

  app.get<{ Params: Static<typeof IdParamsSchema> }>(
    '/api/alerts/:id',
    { config: { permission: 'fleet:read' }, schema: { params: IdParamsSchema, response: { 200: AlertViewSchema, ...errorResponses } } },
    async (req) => {
      const alert = await deps.store.get(req.params.id);
      if (!alert) throw new OspreyError('OSP_ERR_NOT_FOUND', `no alert ${req.params.id}`);
      return alertView(alert);
    },
  );

  app.post<{ Params: Static<typeof IdParamsSchema> }>(
    '/api/alerts/:id/ack',
    { config: { permission: 'alerts:ack' }, schema: { params: IdParamsSchema, response: { 200: AlertViewSchema, ...errorResponses } } },
    async (req) => {
      const { id } = req.params;
      const before = await deps.store.get(id);
      if (!before) throw new OspreyError('OSP_ERR_NOT_FOUND', `no alert ${id}`);
      if (before.state === 'resolved') throw new OspreyError('OSP_ERR_CONFLICT', `alert ${id} is already resolved`);
      const acked = await deps.alerts.acknowledge(id, describePrincipal(req.principal));
      if (!acked) throw new OspreyError('OSP_ERR_NOT_FOUND', `no alert ${id}`);
      req.auditNote = {
        action: 'alert.ack',
        target: `alert:${id}`,
        before: { state: before.state, acknowledgedBy: before.acknowledgedBy },
        after: { state: acked.alert.state, acknowledgedBy: acked.alert.acknowledgedBy, type: acked.alert.type, edgeId: acked.alert.edgeId },
      };
      return acked.alert;
    },
  );
};
