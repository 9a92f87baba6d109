/** The rollout stage machine (fleet-manager/rollout-stage-machine.ts): pure, so tested event by event. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { transition, type RolloutMachineContext, type RolloutMachineState, type RolloutTransition } from '../../fleet-manager/rollout-stage-machine.js';

const running: RolloutMachineState = { status: 'running', reason: null, stageIndex: 0, stageStatus: 'running' };
const ctx: RolloutMachineContext = { stageCount: 2, stageName: 'canary', promotion: 'auto', onFailure: 'rollback' };

function ok(t: RolloutTransition) {
  assert.ok(t.ok, `expected a transition, got ${JSON.stringify(t)}`);
  return t;
}

test('a passing stage ends and opens the next, which is judged at once', () => {
  const t = ok(transition(running, ctx, { type: 'judged', decision: 'pass', reason: null }));
  assert.deepEqual(t.state, { status: 'running', reason: null, stageIndex: 1, stageStatus: 'running' });
  assert.deepEqual(t.effects, [
    { type: 'stage', status: 'passed', ended: true },
    { type: 'open-stage', index: 1 },
  ]);
  assert.equal(t.again, true);
});

test('the last stage passing completes the rollout and releases shadow edges', () => {
  const last = { ...running, stageIndex: 1 };
  const t = ok(transition(last, ctx, { type: 'judged', decision: 'pass', reason: null }));
  assert.equal(t.state.status, 'completed');
  assert.equal(t.state.stageStatus, 'passed');
  assert.deepEqual(t.effects, [{ type: 'stage', status: 'passed', ended: true }, { type: 'finished' }, { type: 'release-shadows' }]);
  assert.equal(t.again, false);
});

test('a manual stage awaits promotion; the gates never promote it, a person does', () => {
  const manual = { ...ctx, promotion: 'manual' as const };
  const waiting = ok(transition(running, manual, { type: 'judged', decision: 'pass', reason: null }));
  assert.deepEqual(waiting.state, { ...running, status: 'awaiting-promotion', stageStatus: 'awaiting-promotion' });
  assert.deepEqual(waiting.effects, [{ type: 'stage', status: 'awaiting-promotion', ended: false }]);
  const again = ok(transition(waiting.state, manual, { type: 'judged', decision: 'pass', reason: null }));
  assert.deepEqual(again.effects, []);
  assert.deepEqual(again.state, waiting.state);
  const promoted = ok(transition(waiting.state, manual, { type: 'promote' }));
  assert.deepEqual(promoted.state, { status: 'running', reason: null, stageIndex: 1, stageStatus: 'running' });
  assert.deepEqual(promoted.effects[0], { type: 'stage', status: 'promoted', ended: true });
});

test('a failed stage rolls back or pauses, as the rollout says; awaiting promotion can still fail', () => {
  const rolled = ok(transition(running, ctx, { type: 'judged', decision: 'fail', reason: 'error rate 0.2 > 0.05' }));
  assert.deepEqual(rolled.state, { status: 'rolled-back', reason: 'stage canary: error rate 0.2 > 0.05', stageIndex: 0, stageStatus: 'failed' });
  assert.deepEqual(rolled.effects, [{ type: 'stage', status: 'failed', ended: true }, { type: 'roll-back' }, { type: 'finished' }]);

  const awaiting = { ...running, status: 'awaiting-promotion' as const, stageStatus: 'awaiting-promotion' as const };
  const paused = ok(transition(awaiting, { ...ctx, onFailure: 'pause' }, { type: 'judged', decision: 'fail', reason: 'edge e1 refused' }));
  assert.deepEqual(paused.state, { status: 'paused', reason: 'stage canary: edge e1 refused', stageIndex: 0, stageStatus: 'failed' });
  assert.deepEqual(paused.effects, [{ type: 'stage', status: 'failed', ended: true }]);
});

test('waiting changes nothing; judging a rollout that is not measured changes nothing', () => {
  assert.deepEqual(ok(transition(running, ctx, { type: 'judged', decision: 'waiting', reason: 'soak' })).state, running);
  const pausedState = { ...running, status: 'paused' as const };
  const t = ok(transition(pausedState, ctx, { type: 'judged', decision: 'fail', reason: 'x' }));
  assert.deepEqual([t.state, t.effects], [pausedState, []]);
});

test('people: pause, resume with a fresh measurement, abort, roll back', () => {
  const paused = ok(transition(running, ctx, { type: 'pause' }));
  assert.deepEqual(paused.state, { ...running, status: 'paused', reason: 'paused by a person' });
  assert.deepEqual(paused.effects, []);
  const resumed = ok(transition({ ...paused.state, stageStatus: 'failed' }, ctx, { type: 'resume' }));
  assert.deepEqual(resumed.state, { status: 'running', reason: null, stageIndex: 0, stageStatus: 'running' });
  assert.deepEqual(resumed.effects, [{ type: 'open-stage', index: 0 }]);

  const aborted = ok(transition(running, ctx, { type: 'abort' }));
  assert.deepEqual(aborted.state, { ...running, status: 'aborted', reason: 'aborted by a person', stageStatus: 'stopped' });
  assert.deepEqual(aborted.effects, [{ type: 'stage', status: 'stopped', ended: true }, { type: 'finished' }, { type: 'release-shadows' }]);

  // A rollback stops a stage still measured; a failed stage keeps its status.
  const back = ok(transition(running, ctx, { type: 'rollback' }));
  assert.deepEqual(back.state, { ...running, status: 'rolled-back', reason: 'rolled back by a person', stageStatus: 'stopped' });
  assert.deepEqual(back.effects, [{ type: 'roll-back' }, { type: 'stage', status: 'stopped', ended: true }, { type: 'finished' }]);
  const completedBack = ok(transition({ ...running, status: 'completed', stageStatus: 'passed' }, ctx, { type: 'rollback' }));
  assert.deepEqual(completedBack.effects, [{ type: 'roll-back' }, { type: 'finished' }]);
});

test('actions the status forbids are refused, naming what cannot be done', () => {
  const done = { ...running, status: 'completed' as const, stageStatus: 'passed' as const };
  assert.deepEqual(transition(done, ctx, { type: 'promote' }), { ok: false, cannot: 'promote' });
  assert.deepEqual(transition(done, ctx, { type: 'abort' }), { ok: false, cannot: 'abort' });
  assert.deepEqual(transition(done, ctx, { type: 'pause' }), { ok: false, cannot: 'pause' });
  assert.deepEqual(transition(running, ctx, { type: 'resume' }), { ok: false, cannot: 'resume' });
  assert.deepEqual(transition({ ...running, status: 'rolled-back' }, ctx, { type: 'rollback' }), { ok: false, cannot: 'roll back' });
  // Paused is still active: it can be promoted or aborted, not paused again.
  const paused = { ...running, status: 'paused' as const };
  assert.equal(transition(paused, ctx, { type: 'promote' }).ok, true);
  assert.deepEqual(transition(paused, ctx, { type: 'pause' }), { ok: false, cannot: 'pause' });
});

test('the input state is never changed', () => {
  const frozen = Object.freeze({ ...running });
  for (const type of ['promote', 'pause', 'abort', 'rollback'] as const) transition(frozen, ctx, { type });
  transition(frozen, ctx, { type: 'judged', decision: 'fail', reason: 'x' });
  assert.deepEqual(frozen, running);
});
