/**
 * What a rollout is: the request schema of `POST /api/rollouts` (TypeBox, so the types derive
 * from it), its normalised form with every default filled in, and the persisted rollout
 * document the engine works on. Semantics: docs/fleet-manager.md "Rollouts".
 */
import { Type, type Static } from '@sinclair/typebox';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';
import type { CandidateTotals } from './gate-counts.js';

const strict = { additionalProperties: false } as const;
const EdgeId = Type.String({ pattern: EDGE_ID_PATTERN });
const LineName = Type.String({ minLength: 1, maxLength: 64 });

/** Health gates of a stage; a gate left out is not checked. */
export const GatesSchema = Type.Object(
  {
    minFrames: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000, description: 'candidate frames over the stage before any gate is judged' })),
    maxErrorRate: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'candidate errors / attempts' })),
    maxP95LatencyMs: Type.Optional(Type.Number({ exclusiveMinimum: 0, description: 'candidate p95 inference latency (edge telemetry)' })),
    minAgreement: Type.Optional(Type.Number({ minimum: 0, maximum: 1, description: 'shadow only: share of frames where candidate and active verdicts agree' })),
    maxDefectRateChange: Type.Optional(
      Type.Number({ minimum: 0, maximum: 1, description: '|candidate defect rate − current defect rate| (shadow: same frames; live: the edges’ recent history)' }),
    ),
    goldenSet: Type.Optional(
      Type.Boolean({ description: 'true: every edge of the stage must report a passing golden-set self-test of the candidate (a version without a golden set fails)' }),
    ),
  },
  strict,
);
export type Gates = Static<typeof GatesSchema>;

export const StageSelectSchema = Type.Object(
  {
    edges: Type.Optional(Type.Array(EdgeId, { minItems: 1, maxItems: 10_000, uniqueItems: true })),
    line: Type.Optional(LineName),
    percent: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'of the target edges, in a fixed per-rollout order' })),
  },
  { ...strict, description: 'at most one of edges, line, percent; none: every target edge' },
);
export type StageSelect = Static<typeof StageSelectSchema>;

export const StageModes = ['shadow', 'live'] as const;
export type StageMode = (typeof StageModes)[number];

export const StageSpecSchema = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    select: Type.Optional(StageSelectSchema),
    mode: Type.Unsafe<StageMode>({ type: 'string', enum: [...StageModes] }),
    gates: Type.Optional(GatesSchema),
    soakSeconds: Type.Optional(Type.Number({ minimum: 0, maximum: 30 * 86_400 })),
    promotion: Type.Optional(Type.Unsafe<'auto' | 'manual'>({ type: 'string', enum: ['auto', 'manual'] })),
  },
  strict,
);

export const RolloutTargetSchema = Type.Object(
  {
    edges: Type.Optional(Type.Array(EdgeId, { minItems: 1, maxItems: 10_000, uniqueItems: true })),
    lines: Type.Optional(Type.Array(LineName, { minItems: 1, maxItems: 1000, uniqueItems: true })),
    all: Type.Optional(Type.Literal(true)),
  },
  { ...strict, description: 'exactly one of edges, lines, all' },
);
export type RolloutTarget = Static<typeof RolloutTargetSchema>;

export const CreateRolloutSchema = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 128 }),
    version: Type.String({ minLength: 1, maxLength: 64 }),
    target: RolloutTargetSchema,
    stages: Type.Array(StageSpecSchema, { minItems: 1, maxItems: 20 }),
    onFailure: Type.Optional(Type.Unsafe<'pause' | 'rollback'>({ type: 'string', enum: ['pause', 'rollback'] })),
    silenceTimeoutSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 7 * 86_400 })),
    minSample: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, description: 'edges of a stage that must have reported before its gates are judged (capped at the stage size)' })),
  },
  strict,
);
export type CreateRolloutBody = Static<typeof CreateRolloutSchema>;

/** A stage with every default filled in. */
export interface StageSpec {
  name: string;
  select: StageSelect;
  mode: StageMode;
  gates: Gates;
  soakSeconds: number;
  promotion: 'auto' | 'manual';
}

/** A rollout request with every default filled in. */
export interface RolloutSpec {
  target: RolloutTarget;
  stages: StageSpec[];
  onFailure: 'pause' | 'rollback';
  silenceTimeoutSeconds: number;
  minSample: number;
}

export const ROLLOUT_DEFAULTS = {
  onFailure: 'rollback',
  silenceTimeoutSeconds: 300,
  minSample: 1,
  soakSeconds: 0,
  promotion: 'auto',
} as const;

/**
 * Fills defaults and checks what the schema cannot: exactly one target kind, at most one
 * selector per stage. Returns an error message (naming the field) or the spec.
 */
export function normalizeRolloutSpec(body: CreateRolloutBody): RolloutSpec | string {
  const kinds = (['edges', 'lines', 'all'] as const).filter((k) => body.target[k] !== undefined);
  if (kinds.length !== 1) return `body/target must have exactly one of edges, lines, all (has ${kinds.length === 0 ? 'none' : kinds.join(', ')})`;
  const stages: StageSpec[] = [];
  for (const [i, s] of body.stages.entries()) {
    const selectors = (['edges', 'line', 'percent'] as const).filter((k) => s.select?.[k] !== undefined);
    if (selectors.length > 1) return `body/stages/${i}/select must have at most one of edges, line, percent`;
    if (s.mode === 'live' && s.gates?.minAgreement !== undefined) {
      return `body/stages/${i}/gates/minAgreement needs mode shadow (a live stage has no second verdict to agree with)`;
    }
    stages.push({
      name: s.name ?? `stage-${i + 1}`,
      select: s.select ?? {},
      mode: s.mode,
      gates: s.gates ?? {},
      soakSeconds: s.soakSeconds ?? ROLLOUT_DEFAULTS.soakSeconds,
      promotion: s.promotion ?? ROLLOUT_DEFAULTS.promotion,
    });
  }
  return {
    target: body.target,
    stages,
    onFailure: body.onFailure ?? ROLLOUT_DEFAULTS.onFailure,
    silenceTimeoutSeconds: body.silenceTimeoutSeconds ?? ROLLOUT_DEFAULTS.silenceTimeoutSeconds,
    minSample: body.minSample ?? ROLLOUT_DEFAULTS.minSample,
  };
}

export const RolloutStatuses = ['running', 'awaiting-promotion', 'paused', 'completed', 'aborted', 'rolled-back'] as const;
export type RolloutStatus = (typeof RolloutStatuses)[number];
/** A rollout in one of these still owns its edges: no other rollout may take them. */
export const ACTIVE_STATUSES: readonly RolloutStatus[] = ['running', 'awaiting-promotion', 'paused'];

export const StageStatuses = ['pending', 'running', 'awaiting-promotion', 'passed', 'promoted', 'failed', 'stopped'] as const;
export type StageStatus = (typeof StageStatuses)[number];

/** What one edge did in one stage; counters only grow within a stage attempt. */
export interface StageEdgeState {
  assignedAt: number;
  /** When the edge first reported the candidate applied (active for live, shadow for shadow). */
  convergedAt: number | null;
  /** When it last stopped reporting the candidate after having done so (its silence clock restarts). */
  waitingSince?: number;
  /** The edge left the rollout (its line was rolled back by hand); not measured any more. */
  removed: boolean;
  /** Why the edge refused or reverted the candidate on its own (model-failed / model-rolled-back). */
  failed: string | null;
  /** Results attributed to the candidate (live: verdicts by it; shadow: frames it also ran on). */
  frames: number;
  /** Shadow: frames where the candidate produced a verdict (not an error). */
  paired: number;
  /** Shadow: paired frames whose candidate verdict equals the active verdict. */
  agree: number;
  /** Defect verdicts by the candidate. */
  defects: number;
  /** Comparison base: shadow — the active model on the paired frames; live — the edge's recent history. */
  baseFrames: number;
  baseDefects: number;
  /** Shadow: frames where the candidate failed. */
  resultErrors: number;
  /** From telemetry perModel[candidate], summed over intervals since assignment. */
  telFrames: number;
  telErrors: number;
  /** Σ interval p95 × interval frames, and Σ frames of intervals that had a p95: a frames-weighted p95. */
  p95Sum: number;
  p95Frames: number;
  /**
   * The edge's cumulative gate counters of the candidate (FleetStore.candidateCounters) when it
   * joined the stage attempt: the result counters above are the totals now minus these. Absent
   * until taken (rollouts saved by builds that counted by result row id; see rollout-engine.ts).
   */
  snapshot?: CandidateTotals;
}

export type GateStatus = 'pass' | 'fail' | 'pending' | 'skipped';

export interface GateResult {
  gate: keyof Gates;
  limit: number;
  value: number | null;
  status: GateStatus;
  /** Why a gate is pending or skipped. */
  note?: string;
}

export interface StageMetrics {
  edges: number;
  reporting: number;
  pending: number;
  silent: number;
  failed: number;
  frames: number;
  errors: number;
  errorRate: number | null;
  p95LatencyMs: number | null;
  agreement: number | null;
  defectRate: number | null;
  baselineDefectRate: number | null;
  defectRateChange: number | null;
}

export interface StageEvaluation {
  at: number;
  decision: 'waiting' | 'pass' | 'fail';
  /** Why it waits or failed (one line). */
  reason: string | null;
  metrics: StageMetrics;
  gates: GateResult[];
}

export interface StageState {
  status: StageStatus;
  startedAt: number | null;
  endedAt: number | null;
  /** When enough edges had reported (minSample): the soak runs from here. */
  measuringSince: number | null;
  /** Starts again from 1 on each resume after a failed gate. */
  attempt: number;
  edges: Record<string, StageEdgeState>;
  evaluation: StageEvaluation | null;
}

/** An edge's part in a rollout. */
export interface RolloutMember {
  /** What the rollout currently asks of the edge. */
  mode: StageMode | 'removed';
  /** The latest stage that selected it. */
  stage: number;
  joinedAt: number;
  /** The artifact (sha256) the edge was pinned to before the rollout; null: its local model. */
  previous: string | null;
  /** name@version of what it ran before, for people (also when that was a local, unregistered model). */
  previousModel: string | null;
}

/** One lever pulled by a person, for the rollout's record (who promoted it, who stopped it). */
export interface RolloutActionRecord {
  action: string;
  by: string;
  at: number;
}

/** The whole persisted state of one rollout. */
export interface RolloutDoc {
  id: string;
  model: string;
  version: string;
  sha256: string;
  spec: RolloutSpec;
  status: RolloutStatus;
  reason: string | null;
  stageIndex: number;
  createdAt: number;
  /** Who started it (`user:alice`); absent in rollouts started before issue 14. */
  createdBy?: string | null;
  /** The levers people pulled (promote, pause, …), oldest first; absent before issue 14. */
  actions?: RolloutActionRecord[];
  updatedAt: number;
  finishedAt: number | null;
  stages: StageState[];
  members: Record<string, RolloutMember>;
}

/** The candidate's model id as results and telemetry name it. */
export function candidateId(doc: Pick<RolloutDoc, 'model' | 'version'>): string {
  return `${doc.model}@${doc.version}`;
}
