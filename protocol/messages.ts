/**
 * JSON Schemas of every MQTT message (DESIGN.md "Messages"). Types are derived from the schemas
 * with TypeBox's Static, never written twice. Every payload is an envelope {v, id, ts, edgeId}
 * plus the fields of its kind; `additionalProperties: false` everywhere so typos are caught.
 * Only whole messages carry a `$id`: building blocks are embedded more than once (ModelRef three
 * times in state) and ajv refuses a schema in which one `$id` occurs twice.
 */
import { Type, type Static, type TSchema, type TProperties } from '@sinclair/typebox';
import { EDGE_ID_PATTERN } from './topics.js';
import { GoldenSetReportSchema, GoldenSetSettingsSchema, MonitorFiguresSchema, MonitorSettingsSchema } from './monitoring.js';

export const PROTOCOL_VERSION = 1;

const strict = { additionalProperties: false } as const;
const Int = (opts: object = {}) => Type.Integer({ minimum: 0, ...opts });
const Label = Type.String({ minLength: 1, maxLength: 128 });

/** Envelope fields shared by every message. */
const envelope = {
  v: Type.Literal(PROTOCOL_VERSION),
  id: Type.String({ minLength: 1, maxLength: 64 }),
  ts: Int({ description: 'epoch milliseconds when the message was created' }),
  edgeId: Type.String({ pattern: EDGE_ID_PATTERN }),
};

function message<P extends TProperties>(kind: string, props: P, description: string) {
  return Type.Object({ ...envelope, ...props }, { $id: `osprey.v1.${kind}`, description, ...strict });
}

export const ModelRefSchema = Type.Object(
  {
    name: Label,
    version: Type.String({ minLength: 1, maxLength: 64 }),
    sha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  },
  strict,
);
export type ModelRef = Static<typeof ModelRefSchema>;

export const ModelArtifactSchema = Type.Object(
  {
    name: Label,
    version: Type.String({ minLength: 1, maxLength: 64 }),
    sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }),
    size: Int(),
    url: Type.String({ minLength: 1 }),
    signature: Type.String({ minLength: 1 }),
    /** Which trusted key made `signature` (absent: the fleet's own key, id "fleet"). */
    keyId: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$' })),
    /** sha256 of the package's plug-in (signed; absent: no plug-in). */
    pluginSha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
  },
  strict,
);
export type ModelArtifact = Static<typeof ModelArtifactSchema>;

/**
 * One decision threshold. Scores are probabilities or normalised anomaly scores, all in [0, 1], so
 * a threshold outside it would silently pass (or fail) every frame. Every entry point that takes a
 * threshold (edge config file, fleet config layers, desired states, `osprey infer`) checks it here.
 */
export const ThresholdValueSchema = Type.Number({ minimum: 0, maximum: 1 });

/** Thresholds: a default for the defect decision and optional per-label overrides. */
export const ThresholdsSchema = Type.Object(
  {
    default: Type.Optional(ThresholdValueSchema),
    perLabel: Type.Optional(Type.Record(Type.String(), ThresholdValueSchema)),
  },
  strict,
);
export type Thresholds = Static<typeof ThresholdsSchema>;

/** Edge configuration pushed by the fleet (one layer, or the effective merge of fleet→line→edge). */
export const EdgeSettingsSchema = Type.Object(
  {
    thresholds: Type.Optional(ThresholdsSchema),
    sampling: Type.Optional(
      Type.Object(
        {
          keepDefectImages: Type.Optional(Type.Boolean()),
          uncertainBand: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
          keepGoodEvery: Type.Optional(Int()),
        },
        strict,
      ),
    ),
    monitoring: Type.Optional(MonitorSettingsSchema),
    goldenSet: Type.Optional(GoldenSetSettingsSchema),
  },
  strict,
);
export type EdgeSettings = Static<typeof EdgeSettingsSchema>;

export const DetectionSchema = Type.Object(
  {
    label: Label,
    score: Type.Number(),
    box: Type.Tuple([Type.Number(), Type.Number(), Type.Number(), Type.Number()], {
      description: '[x1, y1, x2, y2] in original image pixels',
    }),
  },
  strict,
);
export type Detection = Static<typeof DetectionSchema>;

export const Verdict = Type.Union([Type.Literal('ok'), Type.Literal('defect')]);
export type Verdict = Static<typeof Verdict>;

/** One inspection as stored at the edge and shipped to the fleet. */
export const ResultRecordSchema = Type.Object(
  {
    seq: Int({ minimum: 1, description: 'per-edge monotonic sequence number' }),
    ts: Int({ description: 'epoch ms when the frame was inspected' }),
    camera: Type.String({ minLength: 1, maxLength: 64 }),
    source: Type.Union([Type.Literal('folder'), Type.Literal('http'), Type.Literal('simulated')]),
    frame: Type.Optional(Type.String({ maxLength: 512 })),
    model: Type.String({ minLength: 1, maxLength: 200, description: 'name@version that produced the verdict' }),
    verdict: Verdict,
    label: Label,
    score: Type.Number(),
    latencyMs: Type.Number({ minimum: 0 }),
    detections: Type.Optional(Type.Array(DetectionSchema, { maxItems: 1000 })),
    shadow: Type.Optional(
      Type.Object(
        {
          model: Type.String({ minLength: 1, maxLength: 200 }),
          verdict: Type.Optional(Verdict),
          label: Type.Optional(Label),
          score: Type.Optional(Type.Number()),
          latencyMs: Type.Optional(Type.Number({ minimum: 0 })),
          error: Type.Optional(Type.String({ maxLength: 200, description: 'error code when the candidate failed' })),
        },
        { ...strict, description: 'the shadow candidate on the same frame; never decides the verdict' },
      ),
    ),
  },
  strict,
);
export type ResultRecord = Static<typeof ResultRecordSchema>;

/**
 * Identity of an edge's result store, created at random with its database (issue 5). A wiped or
 * replaced database restarts seqs at 1; the fleet keys results by (edgeId, storeId, seq), so the
 * new store's seqs never collide with the old one's. Absent only from stores created before it
 * existed.
 */
export const StoreIdSchema = Type.String({ pattern: '^[A-Za-z0-9_-]{8,64}$', description: "the edge result store's random identity" });

export const ResultsMessageSchema = message(
  'results',
  {
    storeId: Type.Optional(StoreIdSchema),
    fromSeq: Int({ minimum: 1 }),
    toSeq: Int({ minimum: 1 }),
    results: Type.Array(ResultRecordSchema, { minItems: 1, maxItems: 10000 }),
  },
  'a batch of results, seq ascending, fromSeq..toSeq inclusive',
);
export type ResultsMessage = Static<typeof ResultsMessageSchema>;

export const AckMessageSchema = message(
  'ack',
  {
    ackSeq: Int({ description: 'highest contiguous seq durably stored by the fleet' }),
    storeId: Type.Optional(StoreIdSchema),
  },
  'fleet → edge acknowledgement of stored results',
);
export type AckMessage = Static<typeof AckMessageSchema>;

export const StateMessageSchema = message(
  'state',
  {
    online: Type.Boolean(),
    line: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    cameras: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 64 }))),
    agentVersion: Type.Optional(Type.String()),
    startedAt: Type.Optional(Int()),
    active: Type.Optional(Type.Union([ModelRefSchema, Type.Null()])),
    previous: Type.Optional(Type.Union([ModelRefSchema, Type.Null()])),
    shadow: Type.Optional(Type.Union([ModelRefSchema, Type.Null()])),
    configVersion: Type.Optional(Int()),
    lastSeq: Type.Optional(Int()),
    ackedSeq: Type.Optional(Int()),
    storeId: Type.Optional(StoreIdSchema),
    errors: Type.Optional(Type.Array(Type.String(), { maxItems: 50 })),
    goldenSet: Type.Optional(GoldenSetReportSchema),
  },
  'edge → fleet reported state (retained; the last will publishes online:false)',
);
export type StateMessage = Static<typeof StateMessageSchema>;

export const DesiredMessageSchema = message(
  'desired',
  {
    active: Type.Union([ModelArtifactSchema, Type.Null()]),
    shadow: Type.Optional(Type.Union([ModelArtifactSchema, Type.Null()])),
    config: EdgeSettingsSchema,
    configVersion: Int(),
  },
  'fleet → edge desired state (retained)',
);
export type DesiredMessage = Static<typeof DesiredMessageSchema>;

const LatencySummary = Type.Object(
  { count: Int(), p50: Type.Number(), p95: Type.Number(), p99: Type.Number(), max: Type.Number() },
  strict,
);

export const TelemetryMessageSchema = message(
  'telemetry',
  {
    intervalMs: Int(),
    frames: Int({ description: 'frames inspected in the interval' }),
    defects: Int(),
    failed: Int({ description: 'inputs rejected in the interval' }),
    failures: Type.Record(Type.String(), Int(), { description: 'rejections by error code since start' }),
    fps: Type.Number({ minimum: 0 }),
    latencyMs: LatencySummary,
    queueDepth: Int(),
    lastSeq: Int(),
    ackedSeq: Int(),
    pendingResults: Int(),
    alarms: Type.Optional(
      Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
        maxItems: 20,
        description: 'conditions in force now, e.g. result-quota (results answered but not stored), image-quota',
      }),
    ),
    storage: Type.Optional(
      Type.Object(
        {
          resultRows: Int({ description: 'rows in the result store' }),
          resultBytes: Int({ description: 'bytes used by the result store' }),
          notStored: Int({ description: 'since start: verdicts answered while the result quota was full, never stored' }),
          notStoredDefects: Int({ description: 'since start: defects among notStored' }),
          images: Int({ description: 'images kept at the edge' }),
          imageBytes: Int(),
          imagesPending: Int({ description: 'kept images not yet uploaded' }),
          imagesEvicted: Int({ description: 'since start: images removed by the image quota before they were uploaded' }),
        },
        { ...strict, description: 'the edge store and its quotas (issue 5)' },
      ),
    ),
    monitor: Type.Optional(MonitorFiguresSchema),
    cpuPercent: Type.Number({ minimum: 0 }),
    rssBytes: Int(),
    perModel: Type.Record(
      Type.String(),
      Type.Object(
        {
          frames: Int(),
          defects: Int(),
          errors: Type.Optional(Int()),
          latencyP95Ms: Type.Optional(Type.Number({ minimum: 0 })),
          agreed: Type.Optional(Int({ description: 'shadow candidates: frames whose verdict matched the active model' })),
        },
        strict,
      ),
      { description: 'per model id (name@version) in the interval, shadow candidates included' },
    ),
  },
  'edge → fleet periodic health',
);
export type TelemetryMessage = Static<typeof TelemetryMessageSchema>;

export const EventKinds = [
  'started',
  'stopping',
  'input-rejected',
  'model-activated',
  'model-failed',
  'model-rolled-back',
  'config-applied',
  'alert',
  'golden-set',
] as const;

export const EventMessageSchema = message(
  'events',
  {
    kind: Type.Union(EventKinds.map((k) => Type.Literal(k))),
    level: Type.Union([Type.Literal('info'), Type.Literal('warn'), Type.Literal('error')]),
    message: Type.String({ maxLength: 1000 }),
    data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  'edge → fleet notable event',
);
export type EventMessage = Static<typeof EventMessageSchema>;

/** Schema per topic kind. */
export const MessageSchemas = {
  desired: DesiredMessageSchema,
  state: StateMessageSchema,
  results: ResultsMessageSchema,
  ack: AckMessageSchema,
  telemetry: TelemetryMessageSchema,
  events: EventMessageSchema,
} satisfies Record<string, TSchema>;

export interface MessageByKind {
  desired: DesiredMessage;
  state: StateMessage;
  results: ResultsMessage;
  ack: AckMessage;
  telemetry: TelemetryMessage;
  events: EventMessage;
}
