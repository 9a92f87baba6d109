/**
 * An edge's recent past for the console's edge page: `GET /api/edges/:id/telemetry` (its
 * telemetry, one row per minute, bounded retention) and `POST /api/edges/:id/threshold-preview`
 * (how many of its latest verdicts a proposed per-label threshold would have changed; nothing is
 * applied: the config routes do that).
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { ThresholdValueSchema } from '../../protocol/messages.js';
import { MonitorMinuteSchema, errorResponses } from '../http-schemas.js';
import { EdgeParamsSchema } from '../control-schemas.js';
import { parseTime } from '../line-stats.js';
import { TELEMETRY_RETENTION_MS } from '../edge-history-db.js';
import { previewThreshold } from '../threshold-preview.js';
import type { RouteDeps } from './deps.js';

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

/** The range a telemetry query may span (the retention). */
export const MAX_TELEMETRY_RANGE_MS = TELEMETRY_RETENTION_MS;
/** The range when `from` is not given: the last six hours before `to`. */
export const DEFAULT_TELEMETRY_RANGE_MS = 6 * 3_600_000;
/** Verdicts a preview replays at most (and by default). */
export const MAX_PREVIEW_RESULTS = 1000;

export const TelemetryQuerySchema = Type.Object(
  {
    from: Type.Optional(Type.String({ maxLength: 40, description: 'ISO 8601 or epoch ms, inclusive; default `to` minus 6 h' })),
    to: Type.Optional(Type.String({ maxLength: 40, description: 'ISO 8601 or epoch ms, exclusive; default now' })),
  },
  strict,
);

export const TelemetryHistorySchema = Type.Object(
  {
    edgeId: Type.String(),
    from: Type.Integer(),
    to: Type.Integer(),
    retentionMs: Type.Integer({ description: 'how far back minutes are kept' }),
    minutes: Type.Array(
      Type.Object(
        {
          minute: Type.Integer({ description: 'start of the minute, epoch ms' }),
          samples: Type.Integer({ description: 'telemetry reports folded into it' }),
          at: Type.Integer({ description: 'arrival of its latest report' }),
          fps: Type.Number({ description: 'mean' }),
          latencyP50Ms: Type.Number({ description: 'mean' }),
          latencyP95Ms: Type.Number({ description: 'worst' }),
          queueDepth: Type.Integer({ description: 'worst' }),
          cpuPercent: Type.Number({ description: 'mean' }),
          rssBytes: Type.Integer({ description: 'worst' }),
          frames: Type.Integer({ description: 'sum' }),
          failed: Type.Integer({ description: 'inputs rejected, sum' }),
          resultBytes: Nullable(Type.Integer()),
          imageBytes: Nullable(Type.Integer()),
          monitor: Nullable(MonitorMinuteSchema),
        },
        strict,
      ),
    ),
  },
  strict,
);

export const ThresholdPreviewBodySchema = Type.Object(
  {
    label: Type.String({ minLength: 1, maxLength: 128, description: 'the label whose threshold is edited' }),
    threshold: ThresholdValueSchema,
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_PREVIEW_RESULTS, description: `latest results replayed; default ${MAX_PREVIEW_RESULTS}` })),
  },
  strict,
);
export type ThresholdPreviewBody = Static<typeof ThresholdPreviewBodySchema>;

export const ThresholdPreviewSchema = Type.Object(
  {
    edgeId: Type.String(),
    label: Type.String(),
    threshold: Type.Number(),
    current: Nullable(Type.Number({ description: "the label's effective threshold now (per label, else the default); null: the model's own" })),
    considered: Type.Integer({ description: 'results replayed' }),
    changed: Type.Integer({ description: 'verdicts that would differ' }),
    toDefect: Type.Integer(),
    toOk: Type.Integer(),
  },
  strict,
);

type EdgeReq = { Params: Static<typeof EdgeParamsSchema> };

/** Registers the telemetry history and the threshold preview. */
export const edgeHistoryRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  async function mustExist(id: string): Promise<void> {
    if (!(await deps.store.getEdge(id))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no edge ${id}`);
  }

  app.get<EdgeReq & { Querystring: Static<typeof TelemetryQuerySchema> }>(
    '/api/edges/:id/telemetry',
    { config: { permission: 'fleet:read' }, schema: { params: EdgeParamsSchema, querystring: TelemetryQuerySchema, response: { 200: TelemetryHistorySchema, ...errorResponses } } },
    async (req) => {
      const to = req.query.to === undefined ? deps.now() : time('to', req.query.to);
      const from = req.query.from === undefined ? to - DEFAULT_TELEMETRY_RANGE_MS : time('from', req.query.from);
      if (from >= to) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from must be before to');
      if (to - from > MAX_TELEMETRY_RANGE_MS) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/from: the range may span at most ${MAX_TELEMETRY_RANGE_MS / 86_400_000} days`);
      await mustExist(req.params.id);
      return { edgeId: req.params.id, from, to, retentionMs: TELEMETRY_RETENTION_MS, minutes: await deps.store.telemetryHistory(req.params.id, from, to) };
    },
  );

  app.post<EdgeReq & { Body: ThresholdPreviewBody }>(
    '/api/edges/:id/threshold-preview',
    // Changes nothing, so nothing to audit; config:write because it is the first step of an edit.
    { config: { permission: 'config:write', audit: false }, schema: { params: EdgeParamsSchema, body: ThresholdPreviewBodySchema, response: { 200: ThresholdPreviewSchema, ...errorResponses } } },
    async (req) => {
      const { id } = req.params;
      const { label, threshold, limit = MAX_PREVIEW_RESULTS } = req.body;
      await mustExist(id);
      const results = await deps.store.recentVerdicts(id, limit);
      let current: number | null = null;
      if (deps.control) {
        const t = (await deps.control.publisher.effectiveConfig(id)).config.thresholds;
        current = t?.perLabel?.[label] ?? t?.default ?? null;
      }
      return { edgeId: id, label, threshold, current, ...previewThreshold(results, label, threshold) };
    },
  );
};

function time(name: string, text: string): number {
  const ms = parseTime(text);
  if (ms === null) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/${name} must be an ISO 8601 date or epoch milliseconds`);
  return ms;
}
