/**
 * JSON Schemas of the fleet manager's HTTP answers (TypeBox, so handler types derive from them).
 * Result fields reuse protocol's definitions; `$id`s are stripped because fastify compiles each
 * route's schema separately and would otherwise see the same id twice.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DetectionSchema, ResultRecordSchema, TelemetryMessageSchema, Verdict } from '../protocol/messages.js';
import { BUCKET_PATTERN } from './line-stats.js';

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });

/** The one error shape of every route: a stable code and a one-line message. */
export const ErrorSchema = Type.Object(
  { error: Type.String({ description: 'an OspreyError code, e.g. OSP_ERR_NOT_FOUND' }), message: Type.String() },
  strict,
);
export type ErrorBody = Static<typeof ErrorSchema>;

/** Error responses every route declares. */
export const errorResponses = { '4xx': ErrorSchema, '5xx': ErrorSchema } as const;

/**
 * An answer of raw bytes (an image, an artifact, a file) in the OpenAPI document. Never used to
 * serialize: the handler sends a stream or a buffer, which Fastify passes through as is.
 */
export function binaryResponse(description: string, ...types: string[]) {
  return { description, content: Object.fromEntries(types.map((t) => [t, { schema: { type: 'string', format: 'binary' } }])) };
}

const rp = ResultRecordSchema.properties;

export const ResultViewSchema = Type.Object(
  {
    edgeId: Type.String(),
    line: Type.String(),
    seq: rp.seq,
    ts: rp.ts,
    camera: rp.camera,
    source: rp.source,
    frame: rp.frame,
    model: rp.model,
    verdict: rp.verdict,
    label: rp.label,
    score: rp.score,
    latencyMs: rp.latencyMs,
    detections: Type.Optional(Type.Array(DetectionSchema)),
    storeId: Type.Optional(Type.String({ description: 'the edge result store; absent for edges that send none' })),
    hasImage: Type.Boolean({ description: 'an image is stored: GET /api/results/:edgeId/:seq/image (?store= when given)' }),
    hasHeatmap: Type.Optional(Type.Boolean({ description: "an anomaly heatmap is stored: GET /api/results/:edgeId/:seq/heatmap (?store= when given); present only when true" })),
  },
  strict,
);

export const ResultsPageSchema = Type.Object(
  {
    items: Type.Array(ResultViewSchema),
    nextCursor: Nullable(Type.String({ description: 'pass as ?cursor= for the next page; null on the last' })),
  },
  strict,
);

export const ResultsQuerySchema = Type.Object(
  {
    limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100 }),
    cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000 })),
    edge: Type.Optional(Type.String({ minLength: 1 })),
    line: Type.Optional(Type.String({ minLength: 1 })),
    verdict: Type.Optional(Verdict),
    label: Type.Optional(Type.String({ minLength: 1 })),
    model: Type.Optional(Type.String({ minLength: 1 })),
    from: Type.Optional(Type.String({ minLength: 1, description: 'inclusive; ISO 8601 or epoch ms' })),
    to: Type.Optional(Type.String({ minLength: 1, description: 'exclusive; ISO 8601 or epoch ms' })),
  },
  strict,
);
export type ResultsQueryString = Static<typeof ResultsQuerySchema>;

/** A minute's image health and score drift figures (GET /api/edges/:id/telemetry); null where the edge reported none. */
export const MonitorMinuteSchema = Type.Object(
  {
    brightness: Nullable(Type.Number({ description: 'rolling median of the mean gray level (0..255)' })),
    brightnessReference: Nullable(Type.Number()),
    contrast: Nullable(Type.Number({ description: 'rolling median of the contrast: the gray levels’ standard deviation ÷ their mean' })),
    contrastReference: Nullable(Type.Number()),
    sharpness: Nullable(Type.Number({ description: 'rolling median of the variance of the Laplacian' })),
    sharpnessReference: Nullable(Type.Number()),
    shiftX: Nullable(Type.Number({ description: 'camera shift, fraction of the width' })),
    shiftY: Nullable(Type.Number({ description: 'camera shift, fraction of the height' })),
    scorePsi: Nullable(Type.Number({ description: 'population stability index of the scores against their reference' })),
    defectRate: Nullable(Type.Number({ description: 'defect rate in the rolling defect window' })),
    defectRateReference: Nullable(Type.Number()),
  },
  { ...strict, description: 'image health and score drift (telemetry `monitor`), latest of the minute; null when the edge reported none' },
);
export type MonitorMinute = Static<typeof MonitorMinuteSchema>;

export const TelemetrySummarySchema = Type.Object(
  {
    at: EpochMs,
    intervalMs: Type.Integer({ minimum: 0, description: "the edge's telemetry period: a report older than a few of these is stale" }),
    fps: Type.Number(),
    frames: Type.Integer(),
    defects: Type.Integer(),
    failed: Type.Integer(),
    queueDepth: Type.Integer(),
    pendingResults: Type.Integer(),
    latencyP50Ms: Type.Number(),
    latencyP95Ms: Type.Number(),
    failures: Type.Record(Type.String(), Type.Integer(), { description: 'inputs rejected since the agent started, by error code' }),
    cpuPercent: Type.Number(),
    rssBytes: Type.Integer(),
    alarms: Type.Array(Type.String(), { description: 'alarms in force at the edge, e.g. result-quota' }),
    storage: Type.Optional(TelemetryMessageSchema.properties.storage),
    monitor: Type.Optional(TelemetryMessageSchema.properties.monitor),
  },
  strict,
);

export const EdgeViewSchema = Type.Object(
  {
    id: Type.String(),
    line: Nullable(Type.String()),
    cameras: Type.Array(Type.String()),
    online: Type.Boolean(),
    firstSeen: EpochMs,
    lastSeen: EpochMs,
    ackedSeq: Type.Integer({ description: 'highest contiguous seq stored by the fleet' }),
    lastSeq: Nullable(
      Type.Integer({ description: 'highest seq the edge has produced in its current store: its freshest report, never below ackedSeq' }),
    ),
    backlog: Nullable(Type.Integer({ minimum: 0, description: 'results the edge holds that the fleet has not stored yet: lastSeq − ackedSeq' })),
    storeId: Nullable(Type.String({ description: "the edge's current result store; null for edges that send none" })),
    activeModel: Nullable(Type.String({ description: 'name@version' })),
    agentVersion: Nullable(Type.String()),
    telemetry: Nullable(TelemetrySummarySchema),
    convergence: Nullable(
      Type.Object(
        {
          converged: Type.Boolean({ description: 'the edge reports the model and config version its desired state asks for' }),
          mismatchSince: Nullable(EpochMs),
          republished: Type.Integer({ description: 'times the desired state was republished during this mismatch' }),
          alert: Type.Boolean({ description: 'the mismatch outlived the grace period (convergence.graceMs)' }),
          reason: Nullable(Type.String({ description: 'what differs' })),
        },
        { ...strict, description: 'null until the fleet has compared the edge (no desired state, or never online)' },
      ),
    ),
  },
  strict,
);
export type EdgeView = Static<typeof EdgeViewSchema>;

export const EdgeEventsSchema = Type.Object(
  {
    events: Type.Array(
      Type.Object(
        {
          ts: EpochMs,
          receivedAt: EpochMs,
          kind: Type.String(),
          level: Type.String(),
          message: Type.String(),
          data: Nullable(Type.Record(Type.String(), Type.Unknown())),
        },
        strict,
      ),
    ),
  },
  strict,
);

export const EdgeEventsQuerySchema = Type.Object(
  { limit: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'newest first, at most this many' }) },
  strict,
);

export const EdgesSchema = Type.Object({ edges: Type.Array(EdgeViewSchema) }, strict);

export const LinesSchema = Type.Object(
  {
    lines: Type.Array(
      Type.Object({ line: Type.String(), edges: Type.Integer(), online: Type.Integer() }, strict),
    ),
  },
  strict,
);

const ModelCountsSchema = Type.Object(
  { total: Type.Integer(), defect: Type.Integer(), defectRate: Type.Number() },
  strict,
);
const countsProps = {
  total: Type.Integer(),
  ok: Type.Integer(),
  defect: Type.Integer(),
  defectRate: Type.Number({ description: 'defect / total, 0 when total is 0' }),
  byLabel: Type.Record(Type.String(), Type.Integer()),
  byModel: Type.Record(Type.String(), ModelCountsSchema),
};

export const LineStatsSchema = Type.Object(
  {
    line: Type.String(),
    from: EpochMs,
    to: EpochMs,
    bucket: Type.String(),
    bucketMs: Type.Integer(),
    buckets: Type.Array(Type.Object({ start: EpochMs, ...countsProps }, strict)),
    totals: Type.Object(countsProps, strict),
  },
  strict,
);

export const StatsQuerySchema = Type.Object(
  {
    from: Type.Optional(Type.String({ minLength: 1, description: 'inclusive; ISO 8601 or epoch ms; default to − 24 h' })),
    to: Type.Optional(Type.String({ minLength: 1, description: 'exclusive; ISO 8601 or epoch ms; default now' })),
    bucket: Type.String({ pattern: BUCKET_PATTERN, default: '1h', description: 'e.g. 10s, 1m, 5m, 1h, 1d' }),
    format: Type.Union([Type.Literal('json'), Type.Literal('csv')], { default: 'json' }),
  },
  strict,
);
export type StatsQueryString = Static<typeof StatsQuerySchema>;

export const LineParamsSchema = Type.Object({ line: Type.String({ minLength: 1, maxLength: 64 }) }, strict);

export const HealthSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('degraded')]),
    db: Type.Boolean(),
    mqtt: Type.Boolean({ description: 'the fleet manager’s MQTT client is connected' }),
    uptimeS: Type.Number(),
    ingest: Type.Object(
      {
        messages: Type.Integer(),
        dropped: Type.Integer(),
        resultsStored: Type.Integer(),
        acksSent: Type.Integer(),
        storeErrors: Type.Integer(),
        conflicts: Type.Integer({ description: 'results whose (edge, store, seq) was already stored as another frame' }),
      },
      strict,
    ),
  },
  strict,
);
export type Health = Static<typeof HealthSchema>;
