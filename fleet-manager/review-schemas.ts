/**
 * JSON Schemas of the review, accuracy and dataset-export routes (issue 16), TypeBox so the
 * handlers' and the console's types derive from them.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { DetectionSchema, StoreIdSchema, Verdict } from '../protocol/messages.js';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';

/** What an inspector says about the model's call on a frame. */
export const REVIEW_VERDICTS = ['confirmed', 'false-call', 'missed-defect', 'relabelled'] as const;
export type ReviewVerdict = (typeof REVIEW_VERDICTS)[number];

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });
const Label = Type.String({ minLength: 1, maxLength: 128 });
const Line = Type.String({ minLength: 1, maxLength: 64 });
const TimeText = Type.String({ minLength: 1, maxLength: 40, description: 'ISO 8601 date or epoch milliseconds' });

export const ReviewVerdictSchema = Type.Union(REVIEW_VERDICTS.map((v) => Type.Literal(v)));

export const ReviewQueueQuerySchema = Type.Object(
  {
    line: Type.Optional(Line),
    edge: Type.Optional(Type.String({ pattern: EDGE_ID_PATTERN })),
    limit: Type.Integer({ minimum: 1, maximum: 200, default: 20 }),
    band: Type.Number({ minimum: 0, maximum: 1, default: 0.1, description: 'a frame is uncertain when |score − threshold| ≤ band' }),
    order: Type.Union([Type.Literal('newest'), Type.Literal('uncertain')], { default: 'newest' }),
  },
  strict,
);
export type ReviewQueueQuery = Static<typeof ReviewQueueQuerySchema>;

export const QueueItemSchema = Type.Object(
  {
    edgeId: Type.String(),
    storeId: Nullable(Type.String({ description: 'the edge result store; null for edges that send none' })),
    seq: Type.Integer(),
    ts: EpochMs,
    line: Type.String(),
    camera: Type.String(),
    model: Type.String(),
    verdict: Verdict,
    label: Type.String(),
    score: Type.Number(),
    threshold: Type.Number({ description: "the edge's threshold for this label now (its effective config, else the model's), else 0.5" }),
    uncertain: Type.Boolean({ description: 'the score is within the band around the threshold' }),
    detections: Type.Optional(Type.Array(DetectionSchema)),
    labels: Type.Array(Type.String(), { description: "the model's labels (its manifest), for the label picker" }),
    image: Type.String({ description: 'URL of the frame (GET, results:read)' }),
    heatmap: Type.Optional(Type.String({ description: "URL of the frame's anomaly heatmap (PNG) when the edge uploaded one" })),
  },
  strict,
);
export type QueueItem = Static<typeof QueueItemSchema>;

export const ReviewQueueSchema = Type.Object(
  {
    items: Type.Array(QueueItemSchema),
    scanned: Type.Integer({ description: 'result rows read to fill the queue (bounded)' }),
  },
  strict,
);

export const ResultParamsSchema = Type.Object(
  { edgeId: Type.String({ pattern: EDGE_ID_PATTERN }), seq: Type.Integer({ minimum: 1 }) },
  strict,
);
export const ResultStoreQuerySchema = Type.Object({ store: Type.Optional(StoreIdSchema) }, strict);

export const ReviewBodySchema = Type.Object(
  {
    review: ReviewVerdictSchema,
    label: Type.Optional(Label),
  },
  strict,
);
export type ReviewBody = Static<typeof ReviewBodySchema>;

export const ReviewViewSchema = Type.Object(
  {
    edgeId: Type.String(),
    storeId: Nullable(Type.String()),
    seq: Type.Integer(),
    line: Type.String(),
    model: Type.String(),
    modelVerdict: Verdict,
    modelLabel: Type.String(),
    ts: EpochMs,
    review: ReviewVerdictSchema,
    verdict: Verdict,
    label: Type.String(),
    reviewer: Type.String(),
    reviewedAt: EpochMs,
  },
  strict,
);
export type ReviewView = Static<typeof ReviewViewSchema>;

export const AccuracyQuerySchema = Type.Object({ from: Type.Optional(TimeText), to: Type.Optional(TimeText) }, strict);
export const LineParamsSchema = Type.Object({ line: Line }, strict);

const Rate = Nullable(Type.Number({ minimum: 0, maximum: 1 }));
export const AccuracyFiguresSchema = Type.Object(
  {
    model: Type.String({ description: 'name@version; "all" for the line total' }),
    reviewed: Type.Integer(),
    defectCalls: Type.Integer({ description: 'reviewed frames the model called defect' }),
    okCalls: Type.Integer({ description: 'reviewed frames the model called ok' }),
    confirmed: Type.Integer(),
    confirmedDefects: Type.Integer(),
    falseCalls: Type.Integer(),
    relabelled: Type.Integer(),
    missedDefects: Type.Integer(),
    falseCallRate: Rate,
    confirmedDefectRate: Rate,
  },
  strict,
);
export type AccuracyFigures = Static<typeof AccuracyFiguresSchema>;

export const AccuracySchema = Type.Object(
  {
    line: Type.String(),
    from: Nullable(EpochMs),
    to: Nullable(EpochMs),
    total: AccuracyFiguresSchema,
    versions: Type.Array(AccuracyFiguresSchema),
  },
  strict,
);
export type Accuracy = Static<typeof AccuracySchema>;

export const EXPORT_FORMATS = ['imagefolder', 'yolo', 'coco'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];
export const ExportQuerySchema = Type.Object(
  {
    line: Line,
    format: Type.Union(EXPORT_FORMATS.map((f) => Type.Literal(f))),
    from: Type.Optional(TimeText),
    to: Type.Optional(TimeText),
  },
  strict,
);
export type ExportQuery = Static<typeof ExportQuerySchema>;
