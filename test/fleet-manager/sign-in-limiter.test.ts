/** The sign-in limiter on an injected clock: per-key budgets, recovery, and bounded memory. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSignInLimiter } from '../../fleet-manager/sign-in-limiter.js';

test('five failures per key and minute; a username is limited whichever address tries it', () => {
  let now = 0;
  const limiter = createSignInLimiter({ now: () => now });
  for (let i = 0; i < 5; i++) assert.equal(limiter.attempt([`ip:10.0.0.${i}`, 'user:alice']), 0);
  // A sixth address, the same user: refused until the user's window ends.
  now = 15_000;
  assert.equal(limiter.attempt(['ip:10.0.0.9', 'user:alice']), 45_000);
  assert.equal(limiter.attempt(['ip:10.0.0.9', 'user:bob']), 0, 'other users from that address are not limited');
  now = 60_000;
  assert.equal(limiter.attempt(['ip:10.0.0.9', 'user:alice']), 0);
});

test('a successful attempt is forgiven: people who sign in do not use up their address budget', () => {
  const limiter = createSignInLimiter({ now: () => 0 });
  for (let i = 0; i < 20; i++) {
    assert.equal(limiter.attempt(['ip:office', `user:u${i}`]), 0);
    limiter.forgive(['ip:office', `user:u${i}`]);
  }
});

test('memory stays bounded: at most maxKeys windows, the oldest forgotten first', () => {
  let now = 0;
  const limiter = createSignInLimiter({ now: () => now, maxKeys: 100 });
  for (let i = 0; i < 10_000; i++) {
    now = i;
    limiter.attempt([`ip:${i}`]);
    assert.ok(limiter.size() <= 100);
  }
  assert.equal(limiter.size(), 100);
});
