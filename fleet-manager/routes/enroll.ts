/**
 * `POST /api/edges/enroll`: an edge exchanges a one-time enrollment token (made by an admin) for
 * its own credential (`ospe_…`), shown this once and stored by the fleet only as hashes. The
 * route is public because the token in the body is the credential; failed attempts are limited
 * per client address against guessing. The audit row names the enrolled edge as the actor.
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { EDGE_ID_PATTERN } from '../../protocol/topics.js';
import { errorResponses } from '../http-schemas.js';
import type { IdentityStore } from '../identity-store.js';
import { createAttemptLimiter } from '../attempt-limiter.js';

/** The fleet's own MQTT identity (username and client ids): never an edge's. */
const RESERVED_PREFIX = 'osprey-fleet';

export const EnrollRequestSchema = Type.Object(
  {
    token: Type.String({ minLength: 1, maxLength: 128, description: 'the enrollment token (ospn_…)' }),
    edgeId: Type.String({ pattern: EDGE_ID_PATTERN, description: 'the id the edge runs with (its config edgeId)' }),
  },
  { additionalProperties: false },
);
export type EnrollRequest = Static<typeof EnrollRequestSchema>;

export const EnrollResponseSchema = Type.Object(
  {
    edgeId: Type.String(),
    credential: Type.String({ description: 'the edge credential (ospe_…); shown once, never again' }),
    mqttUrl: Type.Optional(Type.String({ description: 'the broker the edge connects to' })),
    caPem: Type.Optional(Type.String({ description: 'the CA that signed the fleet certificates (PEM), when the fleet has one' })),
  },
  { additionalProperties: false },
);
export type EnrollResponse = Static<typeof EnrollResponseSchema>;

export interface EnrollRouteDeps {
  identity: IdentityStore;
  /** What the answer tells the edge besides its credential. */
  info?: () => { mqttUrl?: string; caPem?: string };
  /** Failed attempts per client address per window before 429 (default 10 per minute). */
  maxFailures?: number;
  windowMs?: number;
}

/** Registers the enrollment exchange. */
export const enrollRoutes: FastifyPluginAsync<EnrollRouteDeps> = async (app, deps) => {
  const limiter = createAttemptLimiter({ maxFailures: deps.maxFailures ?? 10, windowMs: deps.windowMs ?? 60_000 });

  app.post<{ Body: EnrollRequest }>(
    '/api/edges/enroll',
    {
      config: { permission: 'public' },
      bodyLimit: 4096,
      schema: { body: EnrollRequestSchema, response: { 200: EnrollResponseSchema, ...errorResponses } },
    },
    async (req, reply) => {
      const wait = limiter.blockedFor(req.ip);
      if (wait > 0) {
        reply.header('retry-after', String(Math.ceil(wait / 1000)));
        throw new OspreyError('OSP_ERR_RATE_LIMITED', `too many failed enrollments from ${req.ip}; retry in ${Math.ceil(wait / 1000)} s`);
      }
      const { token, edgeId } = req.body;
      if (edgeId.startsWith(RESERVED_PREFIX)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `edgeId: "${RESERVED_PREFIX}…" is the fleet's own MQTT identity, not an edge id`);
      let redeemed: Awaited<ReturnType<IdentityStore['redeemEnrollmentToken']>>;
      try {
        redeemed = await deps.identity.redeemEnrollmentToken(token, edgeId);
      } catch (err) {
        if (err instanceof OspreyError && err.code === 'OSP_ERR_UNAUTHENTICATED') {
          limiter.fail(req.ip);
          // The reason, never the token.
          req.log.warn({ edgeId, ip: req.ip, reason: err.message }, 'enrollment refused');
        }
        throw err;
      }
      const { credential, record } = redeemed;
      req.principal = { kind: 'edge', id: record.edgeId, credentialId: record.id };
      req.auditNote = { action: 'edge.enroll', target: `edge:${record.edgeId}`, after: { edgeId: record.edgeId, line: record.line, credentialId: record.id } };
      req.log.info({ edgeId: record.edgeId, credentialId: record.id, ip: req.ip }, 'edge enrolled');
      reply.header('cache-control', 'no-store');
      const info = deps.info?.() ?? {};
      return {
        edgeId: record.edgeId,
        credential,
        ...(info.mqttUrl ? { mqttUrl: info.mqttUrl } : {}),
        ...(info.caPem ? { caPem: info.caPem } : {}),
      } satisfies EnrollResponse;
    },
  );
};
