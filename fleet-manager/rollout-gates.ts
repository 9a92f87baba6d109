/**
 * Judging a stage: each edge's status (pending, reporting, silent, failed) and the stage's gates
 * over the edges that have reported. Pure functions of the stored counters and the clock, so the
 * engine, the HTTP view and the tests all see the same verdict.
 */
import type { ModelRef } from '../protocol/messages.js';
import type { GoldenSetReport } from '../protocol/monitoring.js';
import { judgeGoldenGate } from './rollout-golden-gate.js';
import type { GateResult, Gates, RolloutSpec, StageEdgeState, StageEvaluation, StageMetrics, StageMode, StageSpec, StageState } from './rollout-spec.js';

export type EdgeProgress = 'pending' | 'reporting' | 'silent' | 'failed' | 'removed';

/** What the fleet knows of an edge right now (from its reports). */
export interface EdgeObservation {
  lastSeen: number;
  online: boolean;
  active: ModelRef | null;
  shadow: ModelRef | null;
}

export interface ProgressContext {
  now: number;
  silenceMs: number;
  /** Silence is counted from no earlier than this: the stage attempt's start or the engine's start. */
  since: number;
}

/** True when the edge reports running `model@version` in the slot the stage mode uses. */
export function reportsCandidate(obs: EdgeObservation | undefined, mode: StageMode, model: string, version: string): boolean {
  const ref = mode === 'live' ? obs?.active : obs?.shadow;
  return !!ref && ref.name === model && ref.version === version;
}

/**
 * An edge's progress in a stage. Not having reported the candidate within the silence timeout
 * is silent too: an edge that is online but never applies the candidate cannot vouch for it.
 */
export function edgeProgress(se: StageEdgeState, obs: EdgeObservation | undefined, ctx: ProgressContext): EdgeProgress {
  if (se.removed) return 'removed';
  if (se.failed) return 'failed';
  const since = Math.max(se.assignedAt, se.waitingSince ?? 0, ctx.since);
  if (se.convergedAt === null) return ctx.now - since > ctx.silenceMs ? 'silent' : 'pending';
  const heard = Math.max(obs?.lastSeen ?? 0, since);
  return ctx.now - heard > ctx.silenceMs ? 'silent' : 'reporting';
}

/** Errors and attempts of one edge: live errors are frames that produced no result; shadow errors are result rows. */
export function edgeErrors(se: StageEdgeState, mode: StageMode): { errors: number; attempts: number } {
  if (mode === 'live') return { errors: se.telErrors, attempts: se.frames + se.telErrors };
  const errors = Math.max(se.resultErrors, se.telErrors);
  return { errors, attempts: Math.max(se.frames, errors) };
}

const ratio = (a: number, b: number): number | null => (b > 0 ? a / b : null);

/** Sums the counters of the reporting edges into the stage's figures. */
export function stageMetrics(stage: StageSpec, edges: [StageEdgeState, EdgeProgress][]): StageMetrics {
  const count = (p: EdgeProgress) => edges.filter(([, s]) => s === p).length;
  const reporting = edges.filter(([, s]) => s === 'reporting').map(([e]) => e);
  const sum = (f: (e: StageEdgeState) => number) => reporting.reduce((acc, e) => acc + f(e), 0);
  const errs = reporting.map((e) => edgeErrors(e, stage.mode));
  const errors = errs.reduce((a, e) => a + e.errors, 0);
  const attempts = errs.reduce((a, e) => a + e.attempts, 0);
  const shadow = stage.mode === 'shadow';
  const defectRate = shadow ? ratio(sum((e) => e.defects), sum((e) => e.paired)) : ratio(sum((e) => e.defects), sum((e) => e.frames));
  const baselineDefectRate = shadow ? ratio(sum((e) => e.baseDefects), sum((e) => e.paired)) : ratio(sum((e) => e.baseDefects), sum((e) => e.baseFrames));
  return {
    edges: edges.filter(([, s]) => s !== 'removed').length,
    reporting: reporting.length,
    pending: count('pending'),
    silent: count('silent'),
    failed: count('failed'),
    frames: attempts,
    errors,
    errorRate: ratio(errors, attempts),
    p95LatencyMs: ratio(sum((e) => e.p95Sum), sum((e) => e.p95Frames)),
    agreement: shadow ? ratio(sum((e) => e.agree), sum((e) => e.paired)) : null,
    defectRate,
    baselineDefectRate,
    defectRateChange: defectRate !== null && baselineDefectRate !== null ? Math.abs(defectRate - baselineDefectRate) : null,
  };
}

/** The gates, each with its measured value and verdict. Limits: `max*` must not be exceeded, `min*` reached. */
export function judgeGates(gates: Gates, m: StageMetrics, mode: StageMode): GateResult[] {
  const out: GateResult[] = [];
  const enough = m.frames >= (gates.minFrames ?? 0);
  if (gates.minFrames !== undefined) {
    out.push({ gate: 'minFrames', limit: gates.minFrames, value: m.frames, status: enough ? 'pass' : 'pending', ...(!enough && { note: `${m.frames} of ${gates.minFrames} frames` }) });
  }
  const check = (gate: keyof Gates, limit: number | undefined, value: number | null, max: boolean, noValue = 'no data yet', skip = false) => {
    if (limit === undefined) return;
    if (skip) out.push({ gate, limit, value, status: 'skipped', note: noValue });
    else if (value === null) out.push({ gate, limit, value, status: 'pending', note: noValue });
    else if (!enough) out.push({ gate, limit, value, status: 'pending', note: 'below minFrames' });
    else out.push({ gate, limit, value, status: (max ? value <= limit : value >= limit) ? 'pass' : 'fail' });
  };
  check('maxErrorRate', gates.maxErrorRate, m.errorRate, true);
  check('maxP95LatencyMs', gates.maxP95LatencyMs, m.p95LatencyMs, true, 'no latency in telemetry yet');
  check('minAgreement', gates.minAgreement, m.agreement, false);
  // Live with no history on these edges: nothing to compare with, so the gate cannot hold the stage.
  const noBaseline = mode === 'live' && m.baselineDefectRate === null;
  check('maxDefectRateChange', gates.maxDefectRateChange, m.defectRateChange, true, noBaseline ? 'no earlier results on these edges to compare with' : 'no data yet', noBaseline);
  return out;
}

function describe(g: GateResult): string {
  if (g.gate === 'goldenSet') return `goldenSet: ${g.note ?? 'failed'}`;
  const v = g.value === null ? 'n/a' : Number(g.value.toFixed(4));
  return `${g.gate} ${v} ${g.gate.startsWith('max') ? '>' : '<'} ${g.limit}`;
}

/**
 * The stage's verdict now. Failures win over waiting: an edge that refused the candidate, a
 * silent edge, or a failing gate (once minFrames is reached) fails the stage at once; it passes
 * when enough edges reported, every gate passes and the soak time since measuring began is over.
 */
export function evaluateStage(
  spec: RolloutSpec,
  stage: StageSpec,
  state: StageState,
  edges: [string, StageEdgeState, EdgeProgress][],
  now: number,
  opts: { ignoreSilence?: boolean; /** Each edge's latest golden-set report of the candidate (gate goldenSet). */ golden?: ReadonlyMap<string, GoldenSetReport>; candidate?: string } = {},
): StageEvaluation {
  const metrics = stageMetrics(stage, edges.map(([, e, p]) => [e, p]));
  const gates = judgeGates(stage.gates, metrics, stage.mode);
  if (stage.gates.goldenSet === true) gates.push(judgeGoldenGate(edges, opts.golden ?? new Map(), stage.mode, opts.candidate ?? 'the candidate'));
  const result = (decision: StageEvaluation['decision'], reason: string | null): StageEvaluation => ({ at: now, decision, reason, metrics, gates });

  const failed = edges.filter(([, , p]) => p === 'failed');
  if (failed.length > 0) {
    const [id, e] = failed[0]!;
    return result('fail', `edge ${id} refused the candidate: ${e.failed}${failed.length > 1 ? ` (and ${failed.length - 1} more)` : ''}`);
  }
  const silent = edges.filter(([, , p]) => p === 'silent').map(([id]) => id);
  if (silent.length > 0 && !opts.ignoreSilence) {
    return result('fail', `edge${silent.length > 1 ? 's' : ''} ${silent.slice(0, 5).join(', ')}${silent.length > 5 ? '…' : ''} silent for more than ${spec.silenceTimeoutSeconds} s`);
  }
  const failing = gates.find((g) => g.status === 'fail');
  if (failing) return result('fail', `gate ${describe(failing)}`);
  if (metrics.edges === 0) return result('waiting', 'no edges selected yet');
  const sample = Math.min(spec.minSample, metrics.edges);
  if (metrics.reporting < sample) return result('waiting', `${metrics.reporting} of ${metrics.edges} edges reported the candidate (need ${sample})`);
  const pending = gates.find((g) => g.status === 'pending');
  if (pending) return result('waiting', `gate ${pending.gate}: ${pending.note ?? 'pending'}`);
  const soakEnds = (state.measuringSince ?? now) + stage.soakSeconds * 1000;
  if (now < soakEnds) return result('waiting', `soaking, ${Math.ceil((soakEnds - now) / 1000)} s left`);
  return result('pass', null);
}
