/** Stage judgement as pure functions: edge progress, figures, gates, and the order of verdicts. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { edgeProgress, evaluateStage, stageMetrics, type EdgeProgress } from '../../fleet-manager/rollout-gates.js';
import type { RolloutSpec, StageEdgeState, StageSpec, StageState } from '../../fleet-manager/rollout-spec.js';

const T = 1_000_000;
const edge = (over: Partial<StageEdgeState> = {}): StageEdgeState => ({
  assignedAt: T,
  convergedAt: T + 100,
  removed: false,
  failed: null,
  frames: 0,
  paired: 0,
  agree: 0,
  defects: 0,
  baseFrames: 0,
  baseDefects: 0,
  resultErrors: 0,
  telFrames: 0,
  telErrors: 0,
  p95Sum: 0,
  p95Frames: 0,
  ...over,
});
const spec: RolloutSpec = { target: { all: true }, stages: [], onFailure: 'rollback', silenceTimeoutSeconds: 60, minSample: 2 };
const stage = (over: Partial<StageSpec> = {}): StageSpec => ({ name: 's', select: {}, mode: 'shadow', gates: {}, soakSeconds: 0, promotion: 'auto', ...over });
const state: StageState = { status: 'running', startedAt: T, endedAt: null, measuringSince: T + 100, attempt: 1, edges: {}, evaluation: null };

test('edge progress: pending until it reports, silent past the timeout, failed and removed win', () => {
  const ctx = { now: T + 30_000, silenceMs: 60_000, since: T };
  const seen = { lastSeen: T + 29_000, online: true, active: null, shadow: null };
  assert.equal(edgeProgress(edge({ convergedAt: null }), seen, ctx), 'pending');
  assert.equal(edgeProgress(edge({ convergedAt: null }), seen, { ...ctx, now: T + 61_000 }), 'silent');
  assert.equal(edgeProgress(edge(), seen, ctx), 'reporting');
  assert.equal(edgeProgress(edge(), seen, { ...ctx, now: T + 29_000 + 60_001 }), 'silent');
  // A fleet restart restarts the clock: silence is never counted from before `since`.
  assert.equal(edgeProgress(edge(), { ...seen, lastSeen: T }, { ...ctx, now: T + 100_000, since: T + 50_000 }), 'reporting');
  assert.equal(edgeProgress(edge({ failed: 'model-failed X' }), seen, ctx), 'failed');
  assert.equal(edgeProgress(edge({ removed: true, failed: 'x' }), seen, ctx), 'removed');
});

test('stage figures: shadow compares on the same frames; live against the edges’ history', () => {
  const shadow = stageMetrics(stage(), [
    [edge({ frames: 10, paired: 9, agree: 8, defects: 3, baseDefects: 2, resultErrors: 1, p95Sum: 20 * 10, p95Frames: 10 }), 'reporting'],
    [edge({ frames: 10, paired: 10, agree: 10, defects: 1, baseDefects: 1, p95Sum: 40 * 30, p95Frames: 30 }), 'reporting'],
    [edge({ frames: 99, paired: 99 }), 'pending'],
  ]);
  assert.deepEqual(shadow, {
    edges: 3, reporting: 2, pending: 1, silent: 0, failed: 0,
    frames: 20, errors: 1, errorRate: 1 / 20, p95LatencyMs: 35,
    agreement: 18 / 19, defectRate: 4 / 19, baselineDefectRate: 3 / 19, defectRateChange: 1 / 19,
  });
  // Live: failed frames never became results, so attempts are results + errors.
  const live = stageMetrics(stage({ mode: 'live' }), [[edge({ frames: 18, defects: 9, baseFrames: 100, baseDefects: 10, telErrors: 2 }), 'reporting']]);
  assert.equal(live.frames, 20);
  assert.equal(live.errorRate, 0.1);
  assert.equal(live.defectRate, 0.5);
  assert.equal(live.baselineDefectRate, 0.1);
  assert.equal(live.agreement, null);
});

test('stage verdicts: failures first, then sample, pending gates, soak; then pass', () => {
  const judge = (edges: [string, StageEdgeState, EdgeProgress][], s: StageSpec, now = T + 10_000, st = state) => evaluateStage(spec, s, st, edges, now);
  const good = edge({ frames: 50, paired: 50, agree: 49, defects: 5, baseDefects: 5 });
  const gates = { minFrames: 40, minAgreement: 0.9 };

  assert.equal(judge([['a', good, 'reporting'], ['b', edge(), 'silent']], stage({ gates })).reason, 'edge b silent for more than 60 s');
  assert.match(judge([['a', edge({ failed: 'model-failed OSP_ERR_MODEL_LOAD: x' }), 'failed']], stage()).reason!, /edge a refused the candidate: model-failed OSP_ERR_MODEL_LOAD/);
  // minSample 2: one reporting edge of two is not enough…
  assert.equal(judge([['a', good, 'reporting'], ['b', edge({ convergedAt: null }), 'pending']], stage({ gates })).reason, '1 of 2 edges reported the candidate (need 2)');
  // …but a failing gate fails at once, sample or not.
  const bad = edge({ frames: 50, paired: 50, agree: 20 });
  const failed = judge([['a', bad, 'reporting'], ['b', edge({ convergedAt: null }), 'pending']], stage({ gates }));
  assert.equal(failed.decision, 'fail');
  assert.equal(failed.reason, 'gate minAgreement 0.4 < 0.9');
  // Below minFrames nothing is judged.
  const few = judge([['a', edge({ frames: 5, paired: 5, agree: 0 }), 'reporting'], ['b', good, 'reporting']], stage({ gates: { minFrames: 100, minAgreement: 0.9 } }));
  assert.equal(few.decision, 'waiting');
  assert.equal(few.reason, 'gate minFrames: 55 of 100 frames');
  // Soak counts from measuringSince.
  const soaking = judge([['a', good, 'reporting'], ['b', good, 'reporting']], stage({ gates, soakSeconds: 60 }));
  assert.equal(soaking.reason, 'soaking, 51 s left');
  const passed = judge([['a', good, 'reporting'], ['b', good, 'reporting']], stage({ gates, soakSeconds: 60 }), T + 100 + 60_000);
  assert.equal(passed.decision, 'pass');
  assert.deepEqual(passed.gates.map((g) => g.status), ['pass', 'pass']);
  // Live with no history on the edges: the defect-rate gate cannot hold the stage.
  const noBase = judge([['a', edge({ frames: 10, defects: 10 }), 'reporting']], stage({ mode: 'live', gates: { maxDefectRateChange: 0.1 } }));
  assert.equal(noBase.decision, 'pass');
  assert.equal(noBase.gates[0]!.status, 'skipped');
  assert.equal(judge([], stage()).reason, 'no edges selected yet');
});
