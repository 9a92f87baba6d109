/**
 * JSON Schemas of the control-plane HTTP API: registry, configuration layers, rollouts (TypeBox,
 * so handler types derive from them). Reference: docs/fleet-manager.md.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';
import { EdgeSettingsSchema } from '../protocol/messages.js';
import { GatesSchema, RolloutStatuses, RolloutTargetSchema, StageModes, StageSelectSchema, StageStatuses } from './rollout-spec.js';

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Enum = <T extends string>(values: readonly T[]) => Type.Unsafe<T>({ type: 'string', enum: [...values] });

/** Same rule as the manifest's `name`, so a URL can name any registrable model. */
export const ModelParamsSchema = Type.Object({ name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }) }, strict);
export const VersionParamsSchema = Type.Object(
  { name: ModelParamsSchema.properties.name, version: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$' }) },
  strict,
);
export const ArtifactParamsSchema = Type.Object({ sha256: Sha256 }, strict);
export const EdgeParamsSchema = Type.Object({ id: Type.String({ pattern: EDGE_ID_PATTERN }) }, strict);
export const LineParamsSchema = Type.Object({ line: Type.String({ minLength: 1, maxLength: 64 }) }, strict);
export const RolloutParamsSchema = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, strict);
export const RolloutActionParamsSchema = Type.Object(
  { id: RolloutParamsSchema.properties.id, action: Enum(['pause', 'resume', 'abort', 'rollback'] as const) },
  strict,
);

export const ModelVersionViewSchema = Type.Object(
  {
    name: Type.String(),
    version: Type.String(),
    sha256: Sha256,
    size: Type.Integer(),
    signature: Type.String({ description: 'base64 Ed25519 over osprey-artifact/v2\\n{name}\\n{version}\\n{sha256}\\n{size}\\n{plug-in sha256 | none}' }),
    keyId: Type.String({ description: 'the key that signed: a publisher key id, or "fleet"' }),
    pluginSha256: Type.Optional(Sha256),
    url: Type.String({ description: 'where edges download the archive' }),
    task: Type.String(),
    createdAt: EpochMs,
    uploadedBy: Nullable(Type.String({ description: 'who registered it (user:NAME, cli); null: before issue 14' })),
    trainedBy: Type.Optional(Nullable(Type.String({ description: 'training-job:ID when the fleet trained it (signed by the fleet key); null: uploaded' }))),
    manifest: Type.Object({}, { additionalProperties: true }),
  },
  strict,
);
export type ModelVersionView = Static<typeof ModelVersionViewSchema>;

export const ModelsSchema = Type.Object(
  {
    models: Type.Array(
      Type.Object({ name: Type.String(), versions: Type.Integer(), latestVersion: Type.String(), updatedAt: EpochMs }, strict),
    ),
  },
  strict,
);

export const ModelVersionsSchema = Type.Object({ name: Type.String(), versions: Type.Array(ModelVersionViewSchema) }, strict);

export const ConfigLayerViewSchema = Type.Object(
  {
    scope: Enum(['fleet', 'line', 'edge'] as const),
    key: Nullable(Type.String({ description: 'the line or edge id; null for the fleet layer' })),
    settings: EdgeSettingsSchema,
    version: Type.Integer({ description: 'puts of this layer so far; 0 when never set' }),
    updatedAt: Nullable(EpochMs),
  },
  strict,
);
export type ConfigLayerView = Static<typeof ConfigLayerViewSchema>;

export const ConfigPutResultSchema = Type.Object(
  { ...ConfigLayerViewSchema.properties, republished: Type.Array(Type.String(), { description: 'edges whose desired state changed' }) },
  strict,
);

export const EffectiveConfigSchema = Type.Object(
  {
    edgeId: Type.String(),
    line: Nullable(Type.String()),
    config: EdgeSettingsSchema,
    configVersion: Nullable(Type.Integer({ description: 'in the edge’s last published desired state' })),
    reportedConfigVersion: Nullable(Type.Integer({ description: 'what the edge reports having applied' })),
    layers: Type.Object({ fleet: Nullable(EdgeSettingsSchema), line: Nullable(EdgeSettingsSchema), edge: Nullable(EdgeSettingsSchema) }, strict),
  },
  strict,
);

const GateResultSchema = Type.Object(
  {
    gate: Type.String(),
    limit: Type.Number(),
    value: Nullable(Type.Number()),
    status: Enum(['pass', 'fail', 'pending', 'skipped'] as const),
    note: Type.Optional(Type.String()),
  },
  strict,
);

const StageMetricsSchema = Type.Object(
  {
    edges: Type.Integer(),
    reporting: Type.Integer(),
    pending: Type.Integer(),
    silent: Type.Integer(),
    failed: Type.Integer(),
    frames: Type.Integer(),
    errors: Type.Integer(),
    errorRate: Nullable(Type.Number()),
    p95LatencyMs: Nullable(Type.Number()),
    agreement: Nullable(Type.Number()),
    defectRate: Nullable(Type.Number()),
    baselineDefectRate: Nullable(Type.Number()),
    defectRateChange: Nullable(Type.Number()),
  },
  strict,
);

export const EdgeProgressViewSchema = Type.Object(
  {
    edgeId: Type.String(),
    line: Nullable(Type.String()),
    online: Type.Boolean(),
    lastSeen: Nullable(EpochMs),
    status: Enum(['pending', 'reporting', 'silent', 'failed', 'removed'] as const),
    desired: Nullable(Type.String({ description: 'name@version the fleet asks this edge to run in the stage’s slot (active or shadow)' })),
    reported: Nullable(Type.String({ description: 'name@version the edge reports in that slot' })),
    assignedAt: EpochMs,
    convergedAt: Nullable(EpochMs),
    frames: Type.Integer(),
    errors: Type.Integer(),
    errorRate: Nullable(Type.Number()),
    agreement: Nullable(Type.Number()),
    defectRate: Nullable(Type.Number()),
    baselineDefectRate: Nullable(Type.Number()),
    p95LatencyMs: Nullable(Type.Number()),
    failed: Nullable(Type.String()),
  },
  strict,
);
export type EdgeProgressView = Static<typeof EdgeProgressViewSchema>;

export const StageViewSchema = Type.Object(
  {
    index: Type.Integer(),
    name: Type.String(),
    mode: Enum(StageModes),
    select: StageSelectSchema,
    gates: GatesSchema,
    soakSeconds: Type.Number(),
    promotion: Enum(['auto', 'manual'] as const),
    status: Enum(StageStatuses),
    attempt: Type.Integer(),
    startedAt: Nullable(EpochMs),
    endedAt: Nullable(EpochMs),
    measuringSince: Nullable(EpochMs),
    decision: Nullable(Enum(['waiting', 'pass', 'fail'] as const)),
    reason: Nullable(Type.String()),
    evaluatedAt: Nullable(EpochMs),
    metrics: Nullable(StageMetricsSchema),
    gateResults: Type.Array(GateResultSchema),
    edges: Type.Array(EdgeProgressViewSchema),
  },
  strict,
);
export type StageView = Static<typeof StageViewSchema>;

const rolloutSummaryProps = {
  id: Type.String(),
  model: Type.String(),
  version: Type.String(),
  sha256: Sha256,
  status: Enum(RolloutStatuses),
  reason: Nullable(Type.String()),
  stageIndex: Type.Integer(),
  stageName: Type.String(),
  stageCount: Type.Integer(),
  edges: Type.Integer({ description: 'edges that have joined the rollout' }),
  createdAt: EpochMs,
  createdBy: Nullable(Type.String({ description: 'who started it (user:NAME); null: before issue 14' })),
  updatedAt: EpochMs,
  finishedAt: Nullable(EpochMs),
};

export const RolloutSummarySchema = Type.Object(rolloutSummaryProps, strict);
export type RolloutSummary = Static<typeof RolloutSummarySchema>;

export const RolloutsSchema = Type.Object({ rollouts: Type.Array(RolloutSummarySchema) }, strict);

export const RolloutViewSchema = Type.Object(
  {
    ...rolloutSummaryProps,
    target: RolloutTargetSchema,
    onFailure: Enum(['pause', 'rollback'] as const),
    silenceTimeoutSeconds: Type.Integer(),
    minSample: Type.Integer(),
    stages: Type.Array(StageViewSchema),
    actions: Type.Array(
      Type.Object({ action: Type.String(), by: Type.String(), at: EpochMs }, { ...strict, description: 'a lever a person pulled (promote, pause, …)' }),
    ),
    members: Type.Array(
      Type.Object(
        {
          edgeId: Type.String(),
          mode: Enum(['shadow', 'live', 'removed'] as const),
          stage: Type.Integer(),
          joinedAt: EpochMs,
          previous: Nullable(Type.String({ description: 'name@version it ran before the rollout (null: unknown)' })),
        },
        strict,
      ),
    ),
  },
  strict,
);
export type RolloutView = Static<typeof RolloutViewSchema>;

export const LineRollbackSchema = Type.Object(
  {
    line: Type.String(),
    edges: Type.Array(Type.Object({ edgeId: Type.String(), from: Nullable(Type.String()), to: Nullable(Type.String()) }, strict)),
    pausedRollouts: Type.Array(Type.String()),
  },
  strict,
);
