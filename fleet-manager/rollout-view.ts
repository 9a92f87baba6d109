/**
 * A rollout as people read it (`GET /api/rollouts/:id`): each stage with its gates and figures,
 * and each edge's progress — what the fleet asks it to run, what it reports, its counters.
 */
import type { ModelRef } from '../protocol/messages.js';
import type { EdgeRecord } from './store.js';
import type { DesiredRecord } from './control-store.js';
import type { EdgeProgressView, RolloutSummary, RolloutView, StageView } from './control-schemas.js';
import type { RolloutDoc, StageEdgeState, StageSpec } from './rollout-spec.js';
import { edgeErrors, edgeProgress, type EdgeProgress } from './rollout-gates.js';

const id = (ref: { name: string; version: string } | null | undefined) => (ref ? `${ref.name}@${ref.version}` : null);
const ratio = (a: number, b: number) => (b > 0 ? a / b : null);

/** The one-line summary of a rollout. */
export function rolloutSummary(doc: RolloutDoc): RolloutSummary {
  return {
    id: doc.id,
    model: doc.model,
    version: doc.version,
    sha256: doc.sha256,
    status: doc.status,
    reason: doc.reason,
    stageIndex: doc.stageIndex,
    stageName: doc.spec.stages[doc.stageIndex]!.name,
    stageCount: doc.stages.length,
    edges: Object.keys(doc.members).length,
    createdAt: doc.createdAt,
    createdBy: doc.createdBy ?? null,
    updatedAt: doc.updatedAt,
    finishedAt: doc.finishedAt,
  };
}

export interface ViewContext {
  edges: Map<string, EdgeRecord>;
  desired: Map<string, DesiredRecord>;
  now: number;
  /** When the engine started (silence grace after a fleet restart). */
  engineStartedAt: number;
}

/** The full view: stages, gates, each edge's progress. */
export function rolloutView(doc: RolloutDoc, ctx: ViewContext): RolloutView {
  const stages: StageView[] = doc.spec.stages.map((spec, index) => {
    const st = doc.stages[index]!;
    const current = index === doc.stageIndex && (doc.status === 'running' || doc.status === 'awaiting-promotion' || doc.status === 'paused');
    const progressCtx = { now: ctx.now, silenceMs: doc.spec.silenceTimeoutSeconds * 1000, since: Math.max(st.startedAt ?? 0, ctx.engineStartedAt) };
    const edges = Object.entries(st.edges).map(([edgeId, se]) => {
      const e = ctx.edges.get(edgeId);
      // Live progress only where the stage is still measured; finished stages keep what they saw.
      const status: EdgeProgress = current
        ? edgeProgress(se, e && { lastSeen: e.lastSeen, online: e.online, active: e.state?.active ?? null, shadow: e.state?.shadow ?? null }, progressCtx)
        : se.removed ? 'removed' : se.failed ? 'failed' : se.convergedAt !== null ? 'reporting' : 'pending';
      return edgeView(edgeId, se, spec, status, e, ctx.desired.get(edgeId));
    });
    const ev = st.evaluation;
    return {
      index,
      name: spec.name,
      mode: spec.mode,
      select: spec.select,
      gates: spec.gates,
      soakSeconds: spec.soakSeconds,
      promotion: spec.promotion,
      status: st.status,
      attempt: st.attempt,
      startedAt: st.startedAt,
      endedAt: st.endedAt,
      measuringSince: st.measuringSince,
      decision: ev?.decision ?? null,
      reason: ev?.reason ?? null,
      evaluatedAt: ev?.at ?? null,
      metrics: ev?.metrics ?? null,
      gateResults: ev?.gates ?? [],
      edges,
    };
  });
  return {
    ...rolloutSummary(doc),
    target: doc.spec.target,
    onFailure: doc.spec.onFailure,
    silenceTimeoutSeconds: doc.spec.silenceTimeoutSeconds,
    minSample: doc.spec.minSample,
    stages,
    actions: doc.actions ?? [],
    members: Object.entries(doc.members).map(([edgeId, m]) => ({ edgeId, mode: m.mode, stage: m.stage, joinedAt: m.joinedAt, previous: m.previousModel })),
  };
}

function edgeView(
  edgeId: string,
  se: StageEdgeState,
  spec: StageSpec,
  status: EdgeProgress,
  e: EdgeRecord | undefined,
  desired: DesiredRecord | undefined,
): EdgeProgressView {
  const slot = spec.mode === 'live' ? 'active' : 'shadow';
  const reported: ModelRef | null | undefined = e?.state?.[slot];
  const { errors, attempts } = edgeErrors(se, spec.mode);
  const shadow = spec.mode === 'shadow';
  return {
    edgeId,
    line: e?.line ?? null,
    online: e?.online ?? false,
    lastSeen: e?.lastSeen ?? null,
    status,
    desired: id(desired?.body[slot]),
    reported: id(reported),
    assignedAt: se.assignedAt,
    convergedAt: se.convergedAt,
    frames: attempts,
    errors,
    errorRate: ratio(errors, attempts),
    agreement: shadow ? ratio(se.agree, se.paired) : null,
    defectRate: shadow ? ratio(se.defects, se.paired) : ratio(se.defects, se.frames),
    baselineDefectRate: shadow ? ratio(se.baseDefects, se.paired) : ratio(se.baseDefects, se.baseFrames),
    p95LatencyMs: ratio(se.p95Sum, se.p95Frames),
    failed: se.failed,
  };
}
