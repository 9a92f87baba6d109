import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createAttemptLimiter } from '../../fleet-manager/attempt-limiter.js';

test('failed attempts block an address until its window ends, and memory stays bounded', () => {
  let now = 1_000;
  const l = createAttemptLimiter({ maxFailures: 3, windowMs: 60_000, maxKeys: 100, now: () => now });
  for (let i = 0; i < 2; i++) l.fail('10.0.0.1');
  assert.equal(l.blockedFor('10.0.0.1'), 0, 'below the limit');
  l.fail('10.0.0.1');
  assert.equal(l.blockedFor('10.0.0.1'), 60_000);
  assert.equal(l.blockedFor('10.0.0.2'), 0, 'per address');
  now += 59_999;
  assert.equal(l.blockedFor('10.0.0.1'), 1);
  now += 1;
  assert.equal(l.blockedFor('10.0.0.1'), 0, 'a new window');
  // A flood of addresses: never more than maxKeys tracked, the oldest dropped first.
  for (let i = 0; i < 10_000; i++) l.fail(`192.0.2.${i}`);
  assert.equal(l.size, 100);
  for (let i = 0; i < 3; i++) l.fail('10.0.0.9');
  assert.ok(l.blockedFor('10.0.0.9') > 0, 'the newest address is tracked');
});
