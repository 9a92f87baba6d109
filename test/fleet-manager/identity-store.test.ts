/**
 * The identity store on a real SQLite file: secrets are stored only as hashes, tokens and
 * credentials stop working when they should, and an enrollment token is spent exactly once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { openSqliteIdentityStore, type IdentityStore } from '../../fleet-manager/identity-store.js';
import { isOspreyError } from '../../protocol/errors.js';
import { tempDir } from './helpers.js';
import type { TestContext } from 'node:test';

async function open(t: TestContext, now = () => Date.now()): Promise<{ store: IdentityStore; file: string }> {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteIdentityStore({ file, logger: pino({ level: 'silent' }), now: () => now() });
  t.after(() => store.close());
  return { store, file };
}

/** Every byte the database holds on disk (main file and WAL). */
async function diskBytes(file: string): Promise<string> {
  const parts = await Promise.all([file, `${file}-wal`].map((f) => readFile(f).catch(() => Buffer.alloc(0))));
  return Buffer.concat(parts).toString('latin1');
}

test('identity store: passwords, tokens, sessions and edge credentials are never stored in the clear', async (t) => {
  const { store, file } = await open(t);
  const password = 'correct horse battery staple';
  const user = await store.addUser({ username: 'alice', password, role: 'operator' });
  const { token } = await store.createApiToken({ userId: user.id, name: 'ci', role: 'viewer', expiresAt: null });
  const session = await store.createSession({ userId: user.id, ttlMs: 60_000, ip: '127.0.0.1' });
  const enrollment = await store.createEnrollmentToken({ edgeId: 'edge-1', line: null, ttlMs: 60_000, createdBy: 'user:alice' });
  const { credential } = await store.redeemEnrollmentToken(enrollment.token, 'edge-1');

  const bytes = await diskBytes(file);
  for (const [what, secret] of [['password', password], ['API token', token], ['session', session.token], ['enrollment token', enrollment.token], ['edge credential', credential]] as const) {
    const secretPart = secret.includes('.') ? secret.split('.')[1]! : secret;
    assert.ok(!bytes.includes(secretPart), `the ${what} is on disk in the clear`);
  }
  assert.equal((await store.verifyPassword('alice', password))?.username, 'alice');
  assert.equal(await store.verifyPassword('alice', `${password}!`), null);
  assert.equal(await store.verifyPassword('nobody', password), null);
  assert.equal((await store.resolveApiToken(token))?.user.username, 'alice');
  assert.equal((await store.resolveSession(session.token))?.user.username, 'alice');
  assert.equal((await store.resolveEdgeCredential(credential))?.edgeId, 'edge-1');
});

test('identity store: a token only works until it expires or is revoked, and never for a disabled user', async (t) => {
  let clock = 1_000_000;
  const { store } = await open(t, () => clock);
  const user = await store.addUser({ username: 'bob', password: 'a long enough password', role: 'admin' });
  const expiring = await store.createApiToken({ userId: user.id, name: 'short', role: 'viewer', expiresAt: clock + 1000 });
  const revoked = await store.createApiToken({ userId: user.id, name: 'gone', role: 'viewer', expiresAt: null });
  assert.ok(await store.resolveApiToken(expiring.token));
  clock += 1000;
  assert.equal(await store.resolveApiToken(expiring.token), null, 'expired token still works');
  await store.revokeApiToken(revoked.record.id);
  assert.equal(await store.resolveApiToken(revoked.token), null, 'revoked token still works');

  const kept = await store.createApiToken({ userId: user.id, name: 'kept', role: 'admin', expiresAt: null });
  const session = await store.createSession({ userId: user.id, ttlMs: 60_000, ip: null });
  await store.setDisabled('bob', true);
  assert.equal(await store.resolveApiToken(kept.token), null, "a disabled user's token still works");
  assert.equal(await store.resolveSession(session.token), null, "a disabled user's session still works");
  // A token whose secret is right but id is another token's is nobody's.
  const [, secret] = kept.token.split('.');
  assert.equal(await store.resolveApiToken(`ospt_${expiring.record.id}.${secret}`), null);
});

test('identity store: a token carries no more than its owner may, and passwords have a minimum length', async (t) => {
  const { store } = await open(t);
  const viewer = await store.addUser({ username: 'vic', password: 'a long enough password', role: 'viewer' });
  await assert.rejects(store.createApiToken({ userId: viewer.id, name: 'x', role: 'admin', expiresAt: null }), (err) => isOspreyError(err, 'OSP_ERR_FORBIDDEN'));
  await assert.rejects(store.addUser({ username: 'eve', password: 'short', role: 'viewer' }), (err) => isOspreyError(err, 'OSP_ERR_BAD_REQUEST'));
  await assert.rejects(store.addUser({ username: 'vic', password: 'another long password', role: 'viewer' }), (err) => isOspreyError(err, 'OSP_ERR_CONFLICT'));
  await assert.rejects(store.addUser({ username: 'bad name\n', password: 'another long password', role: 'viewer' }), (err) => isOspreyError(err, 'OSP_ERR_BAD_REQUEST'));
});

test('identity store: an enrollment token is spent exactly once, expires, binds its edge, and re-enrolling revokes the old credential', async (t) => {
  let clock = 5_000_000;
  const { store } = await open(t, () => clock);
  const bound = await store.createEnrollmentToken({ edgeId: 'edge-a', line: null, ttlMs: 10_000, createdBy: 'test' });
  await assert.rejects(store.redeemEnrollmentToken(bound.token, 'edge-b'), (err) => isOspreyError(err, 'OSP_ERR_UNAUTHENTICATED') && /another edge/.test(err.message));
  // Two redemptions at once: exactly one wins.
  const outcomes = await Promise.allSettled([store.redeemEnrollmentToken(bound.token, 'edge-a'), store.redeemEnrollmentToken(bound.token, 'edge-a')]);
  assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
  const first = (outcomes.find((o) => o.status === 'fulfilled') as PromiseFulfilledResult<{ credential: string }>).value.credential;

  // A line's token enrolls new edges only; an enrolled one is re-enrolled with a token made for it.
  const lineToken = await store.createEnrollmentToken({ edgeId: null, line: 'L1', ttlMs: 10_000, createdBy: 'test' });
  await assert.rejects(store.redeemEnrollmentToken(lineToken.token, 'edge-a'), (err) => isOspreyError(err, 'OSP_ERR_UNAUTHENTICATED') && /enrolled already/.test(err.message));
  assert.equal((await store.redeemEnrollmentToken(lineToken.token, 'edge-new')).record.line, 'L1', 'the refused attempt did not spend the token');
  const rebind = await store.createEnrollmentToken({ edgeId: 'edge-a', line: null, ttlMs: 10_000, createdBy: 'test' });
  const again = await store.redeemEnrollmentToken(rebind.token, 'edge-a');
  assert.equal(await store.resolveEdgeCredential(first), null, 'the credential replaced by re-enrollment still works');
  assert.equal((await store.resolveEdgeCredential(again.credential))?.edgeId, 'edge-a');

  const late = await store.createEnrollmentToken({ edgeId: null, line: null, ttlMs: 10_000, createdBy: 'test' });
  clock += 10_000;
  await assert.rejects(store.redeemEnrollmentToken(late.token, 'edge-c'), (err) => isOspreyError(err, 'OSP_ERR_UNAUTHENTICATED') && /expired/.test(err.message));
  await assert.rejects(store.redeemEnrollmentToken('ospn_garbage', 'edge-c'), (err) => isOspreyError(err, 'OSP_ERR_UNAUTHENTICATED'));
  assert.equal(await store.revokeEdgeCredentials('edge-a'), 1);
  assert.equal(await store.resolveEdgeCredential(again.credential), null);
});

test('identity store: the audit log keeps before/after, filters by actor and action prefix, pages newest first', async (t) => {
  const { store } = await open(t);
  for (let i = 0; i < 5; i++) {
    await store.appendAudit({ actor: i % 2 ? 'user:a' : 'user:b', action: i < 3 ? 'PUT /api/config' : 'user.add', target: `/x/${i}`, source: '127.0.0.1', outcome: '200', before: { i }, after: { i: i + 1 } });
  }
  const all = await store.queryAudit({});
  assert.deepEqual(all.map((r) => r.target), ['/x/4', '/x/3', '/x/2', '/x/1', '/x/0']);
  assert.deepEqual(all[0]!.before, { i: 4 });
  assert.deepEqual((await store.queryAudit({ actor: 'user:a' })).map((r) => r.target), ['/x/3', '/x/1']);
  assert.deepEqual((await store.queryAudit({ action: 'user.' })).map((r) => r.target), ['/x/4', '/x/3']);
  // LIKE wildcards in the filter are literal.
  assert.deepEqual(await store.queryAudit({ action: '%' }), []);
  assert.deepEqual((await store.queryAudit({ limit: 2, beforeId: all[1]!.id })).map((r) => r.target), ['/x/2', '/x/1']);
});
