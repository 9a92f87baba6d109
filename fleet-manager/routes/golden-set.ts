/**
 * `GET /api/edges/:id/golden-set` (issue 17): the edge's latest golden-set self-test per model
 * version, newest first, each with its per-image outcomes (docs/fleet-manager.md).
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { GoldenImageOutcomeSchema, GoldenSetReportSchema, GOLDEN_MAX_OUTCOMES } from '../../protocol/monitoring.js';
import { errorResponses } from '../http-schemas.js';
import { EdgeParamsSchema } from '../control-schemas.js';
import type { GoldenSetStore } from '../golden-set-store.js';
import type { FleetStore } from '../store.js';

/** Model versions answered at most (newest first). */
export const GOLDEN_SET_VIEW_LIMIT = 20;

export const GoldenSetViewSchema = Type.Object(
  {
    edgeId: Type.String(),
    reports: Type.Array(
      Type.Object(
        {
          ...GoldenSetReportSchema.properties,
          receivedAt: Type.Integer({ description: 'when the fleet received it (epoch ms)' }),
          outcomes: Type.Array(GoldenImageOutcomeSchema, { maxItems: GOLDEN_MAX_OUTCOMES }),
        },
        { additionalProperties: false },
      ),
      { maxItems: GOLDEN_SET_VIEW_LIMIT },
    ),
  },
  { additionalProperties: false, description: "an edge's latest golden-set report per model version" },
);

export interface GoldenSetRouteDeps {
  store: FleetStore;
  goldenSets: Pick<GoldenSetStore, 'forEdge'>;
}

type EdgeReq = { Params: Static<typeof EdgeParamsSchema> };

/** Registers the edge's golden-set view. */
export const goldenSetRoutes: FastifyPluginAsync<GoldenSetRouteDeps> = async (app, deps) => {
  app.get<EdgeReq>(
    '/api/edges/:id/golden-set',
    { config: { permission: 'fleet:read' }, schema: { params: EdgeParamsSchema, response: { 200: GoldenSetViewSchema, ...errorResponses } } },
    async (req) => {
      const { id } = req.params;
      const reports = await deps.goldenSets.forEdge(id, GOLDEN_SET_VIEW_LIMIT);
      if (reports.length === 0 && !(await deps.store.getEdge(id))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no edge ${id}`);
      return { edgeId: id, reports: reports.map(({ edgeId: _e, ...r }) => r) };
    },
  );
};
