/** `GET /health`: can the fleet store and ingest results right now? 503 when not. */
import type { FastifyPluginAsync } from 'fastify';
import { HealthSchema, errorResponses, type Health } from '../http-schemas.js';
import type { RouteDeps } from './deps.js';

const NO_INGEST = { messages: 0, dropped: 0, resultsStored: 0, acksSent: 0, storeErrors: 0, conflicts: 0 };

/** Registers the health route. */
export const healthRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.get(
    '/health',
    { config: { permission: 'public' }, schema: { response: { 200: HealthSchema, 503: HealthSchema, ...errorResponses } } },
    async (req, reply) => {
      let db = true;
      try {
        await deps.store.ping();
      } catch (err) {
        db = false;
        req.log.warn({ err }, 'health: database check failed');
      }
      const status = deps.status?.();
      // Without an MQTT side (tests of the API alone) only the database decides.
      const mqtt = status ? status.mqttConnected : true;
      const body: Health = {
        status: db && mqtt ? 'ok' : 'degraded',
        db,
        mqtt,
        uptimeS: Math.max(0, (deps.now() - deps.startedAt) / 1000),
        ingest: status?.ingest ?? NO_INGEST,
      };
      return reply.code(body.status === 'ok' ? 200 : 503).send(body);
    },
  );
};
