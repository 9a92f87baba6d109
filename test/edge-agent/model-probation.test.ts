/** The probation machine (edge-agent/model-probation.ts): pure, so tested frame by frame. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { eventsOfResult, probationFailure, startProbation, stepProbation, type ProbationEvent, type ProbationState } from '../../edge-agent/model-probation.js';

const limits = { frames: 5, errors: 2 };
const ok: ProbationEvent = { ok: true };
const fault = (code: string): ProbationEvent => ({ ok: false, code });

function run(events: ProbationEvent[], from = startProbation('sha', 'm@2', 'active')) {
  let state: ProbationState = from;
  const verdicts: string[] = [];
  for (const e of events) {
    const next = stepProbation(state, e, limits);
    state = next.state;
    verdicts.push(next.verdict);
  }
  return { state, verdicts };
}

test('a model that judges its first frames passes after `frames` of them', () => {
  const { state, verdicts } = run([ok, ok, ok, ok, ok]);
  assert.deepEqual(verdicts, ['watching', 'watching', 'watching', 'watching', 'passed']);
  assert.deepEqual(state, { key: 'sha', id: 'm@2', role: 'active', frames: 5, errors: 0 });
});

test('errors count towards the watched frames, and `errors` of them fail it at once', () => {
  assert.deepEqual(run([ok, fault('OSP_ERR_INFERENCE'), ok, ok, ok]).verdicts, ['watching', 'watching', 'watching', 'watching', 'passed']);
  const failed = run([fault('OSP_ERR_INFERENCE'), ok, fault('OSP_ERR_MODEL_OUTPUT')]);
  assert.deepEqual(failed.verdicts, ['watching', 'watching', 'failed']);
  assert.equal(failed.state.lastCode, 'OSP_ERR_MODEL_OUTPUT');
  assert.equal(probationFailure(failed.state), '2 of its first 3 frames failed (last OSP_ERR_MODEL_OUTPUT)');
});

test('the input state is never changed', () => {
  const start = startProbation('sha', 'm@2', 'shadow');
  const frozen = Object.freeze({ ...start });
  stepProbation(frozen, fault('OSP_ERR_INFERENCE'), limits);
  assert.deepEqual(frozen, start);
  assert.equal(probationFailure({ ...start, frames: 1, errors: 2, lastCode: 'OSP_ERR_INFERENCE' }), 'shadow: 2 of its first 3 frames failed (last OSP_ERR_INFERENCE)');
});

test('a result counts for the active model when it is its own, for the shadow when it carries its answer', () => {
  const watching = { active: startProbation('a', 'm@2', 'active'), shadow: startProbation('s', 'm@3', 'shadow') };
  const isFault = (code: string) => code === 'OSP_ERR_INFERENCE';
  assert.deepEqual(eventsOfResult({ model: 'm@2' }, watching, isFault), [{ role: 'active', event: ok }]);
  assert.deepEqual(eventsOfResult({ model: 'm@1' }, watching, isFault), []);
  assert.deepEqual(eventsOfResult({ model: 'm@2', shadow: { model: 'm@3', latencyMs: 1, verdict: 'ok' } } as never, watching, isFault), [
    { role: 'active', event: ok },
    { role: 'shadow', event: ok },
  ]);
  // A shadow timeout is not the model's fault; an inference error is.
  assert.deepEqual(eventsOfResult({ model: 'm@1', shadow: { model: 'm@3', error: 'OSP_ERR_SHADOW_TIMEOUT' } } as never, watching, isFault), []);
  assert.deepEqual(eventsOfResult({ model: 'm@1', shadow: { model: 'm@3', error: 'OSP_ERR_INFERENCE' } } as never, watching, isFault), [
    { role: 'shadow', event: fault('OSP_ERR_INFERENCE') },
  ]);
  assert.deepEqual(eventsOfResult({ model: 'm@2' }, {}, isFault), []);
});
