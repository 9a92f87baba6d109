/** The shared backoff and timeout helpers (protocol/backoff.ts, protocol/timeout.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../../protocol/backoff.js';
import { withTimeout } from '../../protocol/timeout.js';

test('backoffDelay doubles from the base up to the cap, drawn from the upper half', () => {
  const top = { baseMs: 100, maxMs: 500, random: () => 1 };
  const bottom = { ...top, random: () => 0 };
  assert.equal(backoffDelay(0, top), 0);
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffDelay(n, top)), [100, 200, 400, 500, 500]);
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(n, bottom)), [50, 100, 200, 250]);
});

test('withTimeout settles with the promise, or with onTimeout, and clears its timer', async () => {
  assert.equal(await withTimeout(Promise.resolve('done'), 10_000, () => 'late'), 'done');
  assert.equal(await withTimeout(new Promise(() => undefined), 5, () => 'late'), 'late');
  await assert.rejects(
    withTimeout(new Promise(() => undefined), 5, () => {
      throw new Error('too slow');
    }),
    /too slow/,
  );
  await assert.rejects(withTimeout(Promise.reject(new Error('own')), 10_000, () => 'late'), /own/);
  // A 10 s timer left behind would keep this process alive; the test runner would notice.
});
