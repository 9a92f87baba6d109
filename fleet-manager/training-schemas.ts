/** JSON schemas of the training-job and backbone routes (routes/training.ts); types derived from them. */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';
import { ModelParamsSchema, VersionParamsSchema } from './control-schemas.js';
import { BACKBONE_NAME_PATTERN } from './backbones.js';
import { TRAINING_KINDS, TRAINING_STATES } from './training-store.js';

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });
const Kind = Type.Unsafe<(typeof TRAINING_KINDS)[number]>({ type: 'string', enum: [...TRAINING_KINDS] });
const State = Type.Unsafe<(typeof TRAINING_STATES)[number]>({ type: 'string', enum: [...TRAINING_STATES] });
const BackboneName = Type.String({ pattern: BACKBONE_NAME_PATTERN });

/** The options every job takes, whatever its source (a JSON body, or the query string of an archive upload). */
const jobFields = {
  kind: Kind,
  model: ModelParamsSchema.properties.name,
  version: Type.Optional(VersionParamsSchema.properties.version),
  backbone: Type.Optional(BackboneName),
  operatingPoint: Type.Optional(Type.String({ pattern: '^(balanced|strict|lenient|p[0-9]{1,2}(\\.[0-9]+)?)$', description: 'anomaly: balanced (p94), strict (p90), lenient (p99) or pNN' })),
  valFraction: Type.Optional(Type.Number({ minimum: 0, maximum: 0.9, description: 'classify: share of each label held out for validation' })),
  goodLabel: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'classify: the label of good parts' })),
};

/** Images already in the fleet: kept frames, filtered. */
export const FleetSourceSchema = Type.Object(
  {
    type: Type.Literal('fleet'),
    edges: Type.Optional(Type.Array(Type.String({ pattern: EDGE_ID_PATTERN }), { minItems: 1, maxItems: 100 })),
    line: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
    from: Type.Optional(EpochMs),
    to: Type.Optional(EpochMs),
    model: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'name@version as results carry it' })),
  },
  strict,
);

/** POST /api/training-jobs with a JSON body. */
export const TrainingJobRequestSchema = Type.Object({ ...jobFields, source: FleetSourceSchema }, { ...strict, $id: 'osprey.trainingJobRequest' });
export type TrainingJobRequest = Static<typeof TrainingJobRequestSchema>;

/** POST /api/training-jobs with a tar body: the same options in the query string. */
export const TrainingArchiveQuerySchema = Type.Object(jobFields, strict);
export type TrainingArchiveQuery = Static<typeof TrainingArchiveQuerySchema>;

export const TrainingJobViewSchema = Type.Object(
  {
    id: Type.String(),
    kind: Kind,
    model: Type.String(),
    version: Nullable(Type.String({ description: 'the version it registers (chosen when it starts unless asked for)' })),
    backbone: Type.String(),
    options: Type.Object({}, { additionalProperties: true }),
    source: Type.Object({}, { additionalProperties: true }),
    state: State,
    phase: Type.String(),
    progress: Type.Number({ minimum: 0, maximum: 1 }),
    counts: Type.Record(Type.String(), Type.Integer()),
    error: Nullable(Type.String()),
    createdBy: Type.String(),
    createdAt: EpochMs,
    startedAt: Nullable(EpochMs),
    finishedAt: Nullable(EpochMs),
    resultVersion: Nullable(Type.String()),
    resultSha256: Nullable(Type.String()),
    modelCard: Nullable(Type.Object({}, { additionalProperties: true })),
    pid: Nullable(Type.Integer({ description: "the trainer's process id while it runs" })),
    droppedLogLines: Type.Integer(),
  },
  strict,
);
export type TrainingJobView = Static<typeof TrainingJobViewSchema>;

export const TrainingJobsSchema = Type.Object({ jobs: Type.Array(TrainingJobViewSchema) }, strict);
export const JobParamsSchema = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{1,64}$' }) }, strict);
export const ListQuerySchema = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }, strict);
export const LogsQuerySchema = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2000 })) }, strict);
export const LogsSchema = Type.Object(
  { id: Type.String(), lines: Type.Array(Type.Object({ ts: EpochMs, line: Type.String() }, strict)), droppedLogLines: Type.Integer() },
  strict,
);

export const BackboneViewSchema = Type.Object(
  { name: Type.String(), sha256: Type.String(), size: Type.Integer(), uploadedBy: Type.String(), createdAt: EpochMs, default: Type.Boolean() },
  strict,
);
export const BackbonesSchema = Type.Object({ backbones: Type.Array(BackboneViewSchema) }, strict);
export const BackboneQuerySchema = Type.Object({ name: BackboneName }, strict);
export const BackboneParamsSchema = Type.Object({ name: BackboneName }, strict);
