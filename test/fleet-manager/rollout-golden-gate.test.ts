/**
 * The rollout gate `goldenSet` as a pure function (issue 17): pending until every edge of the
 * stage reported a passing golden set of the candidate in the stage's role, failed by one failing
 * report or by a version without a golden set; and how the stage verdict uses it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateStage, type EdgeProgress } from '../../fleet-manager/rollout-gates.js';
import { judgeGoldenGate } from '../../fleet-manager/rollout-golden-gate.js';
import type { RolloutSpec, StageEdgeState, StageSpec, StageState } from '../../fleet-manager/rollout-spec.js';
import type { GoldenSetReport } from '../../protocol/monitoring.js';

const T = 1_000_000;
const edge = (over: Partial<StageEdgeState> = {}): StageEdgeState => ({
  assignedAt: T, convergedAt: T + 100, removed: false, failed: null, frames: 0, paired: 0, agree: 0, defects: 0,
  baseFrames: 0, baseDefects: 0, resultErrors: 0, telFrames: 0, telErrors: 0, p95Sum: 0, p95Frames: 0, ...over,
});
const report = (over: Partial<GoldenSetReport> = {}): GoldenSetReport => ({
  model: 'm@2', role: 'shadow', trigger: 'activation', ranAt: T, durationMs: 50, passed: true, accuracy: 1, expectedAccuracy: 1, images: 20, mismatches: 0, ...over,
});
const two: [string, StageEdgeState, EdgeProgress][] = [['e1', edge(), 'reporting'], ['e2', edge(), 'reporting']];

test('goldenSet gate: pending until every edge passed, in the role of the stage', () => {
  assert.deepEqual(judgeGoldenGate(two, new Map(), 'shadow', 'm@2'), { gate: 'goldenSet', limit: 1, value: 0, status: 'pending', note: '0 of 2 edges reported a passing golden set (shadow)' });
  const one = new Map([['e1', report()]]);
  assert.equal(judgeGoldenGate(two, one, 'shadow', 'm@2').value, 0.5);
  assert.equal(judgeGoldenGate(two, one, 'shadow', 'm@2').status, 'pending');
  // A shadow run does not vouch for the live stage: the edge runs it again as the active model.
  const both = new Map([['e1', report()], ['e2', report()]]);
  assert.equal(judgeGoldenGate(two, both, 'live', 'm@2').status, 'pending');
  assert.deepEqual(judgeGoldenGate(two, both, 'shadow', 'm@2'), { gate: 'goldenSet', limit: 1, value: 1, status: 'pass' });
  // Edges taken out of the rollout do not count; a stage without edges waits.
  assert.equal(judgeGoldenGate([...two, ['e3', edge({ removed: true }), 'removed']], both, 'shadow', 'm@2').status, 'pass');
  assert.equal(judgeGoldenGate([], both, 'shadow', 'm@2').status, 'pending');
});

test('goldenSet gate: one failing edge, or a version without a golden set, fails it with the reason', () => {
  const failing = new Map([['e1', report()], ['e2', report({ passed: false, mismatches: 3, reason: '3 of 20 images off their expected answer' })]]);
  const failed = judgeGoldenGate(two, failing, 'shadow', 'm@2');
  assert.equal(failed.status, 'fail');
  assert.equal(failed.note, 'golden set failed on edge e2: 3 of 20 images off their expected answer');
  const none = judgeGoldenGate(two, new Map([['e1', report({ passed: null, images: 0, reason: 'the package has no golden set' })]]), 'shadow', 'm@2');
  assert.deepEqual([none.status, none.note], ['fail', 'm@2 has no golden set (edge e1): it cannot pass a golden-set gate']);
});

test('evaluateStage: the gate holds a stage that would otherwise pass, and its failure fails the stage', () => {
  const spec: RolloutSpec = { target: { all: true }, stages: [], onFailure: 'rollback', silenceTimeoutSeconds: 60, minSample: 1 };
  const state: StageState = { status: 'running', startedAt: T, endedAt: null, measuringSince: T + 100, attempt: 1, edges: {}, evaluation: null };
  const plain: StageSpec = { name: 's', select: {}, mode: 'live', gates: {}, soakSeconds: 0, promotion: 'auto' };
  const gated: StageSpec = { ...plain, gates: { goldenSet: true } };
  const live = (over: Partial<GoldenSetReport> = {}) => report({ role: 'active', ...over });
  assert.equal(evaluateStage(spec, plain, state, two, T + 200).decision, 'pass');
  const held = evaluateStage(spec, gated, state, two, T + 200, { golden: new Map([['e1', live()]]), candidate: 'm@2' });
  assert.deepEqual([held.decision, held.reason], ['waiting', 'gate goldenSet: 1 of 2 edges reported a passing golden set (active)']);
  assert.equal(evaluateStage(spec, gated, state, two, T + 200, { golden: new Map([['e1', live()], ['e2', live()]]), candidate: 'm@2' }).decision, 'pass');
  const failed = evaluateStage(spec, gated, state, two, T + 200, { golden: new Map([['e1', live({ passed: false, reason: 'time limit of 1000 ms reached' })]]), candidate: 'm@2' });
  assert.deepEqual([failed.decision, failed.reason], ['fail', 'gate goldenSet: golden set failed on edge e1: time limit of 1000 ms reached']);
});
