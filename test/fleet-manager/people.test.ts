/**
 * People on the fleet's HTTP API, over real HTTP and a real SQLite file: sign-in and sessions
 * (cookie flags, expiry, CSRF), the sign-in rate limit on an injected clock, API tokens (expiry,
 * revocation, a demoted owner), user administration, enrollment tokens and edge credentials, and
 * the audit log with its filters.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { createSignInLimiter } from '../../fleet-manager/sign-in-limiter.js';
import { sessionCookie } from '../../fleet-manager/routes/auth.js';
import { credentialsFor } from '../helpers/identity.js';
import { T0, tempDir } from './helpers.js';

const HOUR = 3_600_000;
const PASSWORD = 'correct horse battery';

/** A fleet app (no MQTT, no control plane) on port 0 whose clock the test moves. */
async function startApp(t: TestContext) {
  const file = join(await tempDir(t), 'fleet.db');
  const logger = pino({ level: 'silent' });
  const clock = { now: T0 };
  const now = () => clock.now;
  const store = openSqliteStore({ file, logger });
  const identity = openSqliteIdentityStore({ file, logger, now });
  const app = await buildApp({ store, identity, logger, now, auth: { sessionTtlMs: HOUR, signInLimiter: createSignInLimiter({ now }) } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => {
    await app.close();
    await identity.close();
    await store.close();
  });
  const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const creds = credentialsFor(identity);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- bodies are checked by the asserts
  async function call(method: string, path: string, opts: { body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: Headers; body: any }> {
    const headers: Record<string, string> = { ...opts.headers };
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${url}${path}`, { method, headers, ...(opts.body !== undefined && { body: JSON.stringify(opts.body) }) });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: text && (res.headers.get('content-type') ?? '').includes('json') ? JSON.parse(text) : text };
  }
  async function signIn(username: string, password = PASSWORD) {
    const res = await call('POST', '/api/auth/sign-in', { body: { username, password } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const cookie = /^(osprey_session=[^;]+)/.exec(res.headers.get('set-cookie')!)![1]!;
    return { cookie, csrf: res.body.csrfToken as string, res };
  }
  return { url, clock, identity, creds, call, signIn };
}

test('sign-in sets an HttpOnly, SameSite=Strict session cookie; me answers who; sign-out ends the session', async (t) => {
  const f = await startApp(t);
  await f.identity.addUser({ username: 'alice', password: PASSWORD, role: 'operator' });
  const { cookie, csrf, res } = await f.signIn('alice');
  const setCookie = res.headers.get('set-cookie')!;
  assert.match(setCookie, /^osprey_session=osps_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+; /);
  for (const flag of ['HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${HOUR / 1000}`]) assert.ok(setCookie.split('; ').includes(flag), `${flag} in ${setCookie}`);
  // Plain HTTP here: a Secure cookie would never come back; over TLS the flag is set.
  assert.ok(!setCookie.includes('Secure'));
  assert.ok(sessionCookie('osps_x.y', HOUR, true).split('; ').includes('Secure'));
  assert.deepEqual({ username: res.body.user.username, role: res.body.role, via: res.body.via }, { username: 'alice', role: 'operator', via: 'session' });
  assert.ok(!JSON.stringify(res.body).includes(PASSWORD));

  const me = await f.call('GET', '/api/auth/me', { headers: { cookie } });
  assert.equal(me.status, 200);
  assert.equal(me.body.user.username, 'alice');
  assert.equal(me.body.csrfToken, csrf);

  // Sign-out is a state change: without the CSRF header a forged request cannot end the session.
  assert.equal((await f.call('POST', '/api/auth/sign-out', { headers: { cookie } })).status, 403);
  const out = await f.call('POST', '/api/auth/sign-out', { headers: { cookie, 'x-osprey-csrf': csrf } });
  assert.equal(out.status, 204);
  assert.match(out.headers.get('set-cookie')!, /^osprey_session=; .*Max-Age=0/);
  const after = await f.call('GET', '/api/auth/me', { headers: { cookie } });
  assert.equal(after.status, 401);
  assert.equal(after.body.error, 'OSP_ERR_UNAUTHENTICATED');
});

test('a wrong password, an unknown user and a disabled user get the same 401 and no cookie', async (t) => {
  const f = await startApp(t);
  await f.identity.addUser({ username: 'alice', password: PASSWORD, role: 'viewer' });
  await f.identity.addUser({ username: 'gone', password: PASSWORD, role: 'viewer' });
  await f.identity.setDisabled('gone', true);
  const answers = [];
  for (const body of [{ username: 'alice', password: 'wrong password!' }, { username: 'nobody', password: PASSWORD }, { username: 'gone', password: PASSWORD }]) {
    const res = await f.call('POST', '/api/auth/sign-in', { body });
    assert.equal(res.headers.get('set-cookie'), null);
    answers.push([res.status, res.body.message]);
  }
  assert.deepEqual(answers, Array(3).fill([401, 'wrong username or password, or the user is disabled']));
  // Bad input is a 400 that names the field.
  const bad = await f.call('POST', '/api/auth/sign-in', { body: { username: 'alice' } });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /password/);
});

test('sign-in is rate-limited per client: the 6th failure in a minute is 429 with Retry-After, and it recovers on the clock', async (t) => {
  const f = await startApp(t);
  await f.identity.addUser({ username: 'alice', password: PASSWORD, role: 'viewer' });
  // Several usernames from one address: the per-IP budget counts them all.
  for (const username of ['alice', 'bob', 'carol', 'dave', 'erin']) {
    assert.equal((await f.call('POST', '/api/auth/sign-in', { body: { username, password: 'not the password' } })).status, 401);
  }
  f.clock.now += 20_000;
  const limited = await f.call('POST', '/api/auth/sign-in', { body: { username: 'alice', password: PASSWORD } });
  assert.equal(limited.status, 429);
  assert.equal(limited.body.error, 'OSP_ERR_RATE_LIMITED');
  assert.equal(limited.headers.get('retry-after'), '40');
  assert.equal(limited.headers.get('set-cookie'), null, 'the right password does not get through while limited');
  f.clock.now += 40_000;
  assert.equal((await f.call('POST', '/api/auth/sign-in', { body: { username: 'alice', password: PASSWORD } })).status, 200);
});

test('a session expires after auth.sessionTtlMs', async (t) => {
  const f = await startApp(t);
  await f.identity.addUser({ username: 'alice', password: PASSWORD, role: 'viewer' });
  const { cookie } = await f.signIn('alice');
  f.clock.now += HOUR - 1;
  assert.equal((await f.call('GET', '/api/auth/me', { headers: { cookie } })).status, 200);
  f.clock.now += 1;
  assert.equal((await f.call('GET', '/api/auth/me', { headers: { cookie } })).status, 401);
});

test('CSRF: a state change from a session needs the x-osprey-csrf header of that session', async (t) => {
  const f = await startApp(t);
  await f.identity.addUser({ username: 'alice', password: PASSWORD, role: 'operator' });
  await f.identity.addUser({ username: 'mallory', password: PASSWORD, role: 'operator' });
  const alice = await f.signIn('alice');
  const mallory = await f.signIn('mallory');
  const body = { name: 'ci' };
  assert.equal((await f.call('POST', '/api/tokens', { body, headers: { cookie: alice.cookie } })).status, 403);
  assert.equal((await f.call('POST', '/api/tokens', { body, headers: { cookie: alice.cookie, 'x-osprey-csrf': mallory.csrf } })).status, 403);
  const ok = await f.call('POST', '/api/tokens', { body, headers: { cookie: alice.cookie, 'x-osprey-csrf': alice.csrf } });
  assert.equal(ok.status, 201);
  // Reads need no header.
  assert.equal((await f.call('GET', '/api/tokens', { headers: { cookie: alice.cookie } })).status, 200);
});

test('API tokens: shown once, role at most the creator\'s, expire, can be revoked, and follow a demoted owner', async (t) => {
  const f = await startApp(t);
  const admin = await f.creds.headers('admin');
  await f.identity.addUser({ username: 'ops', password: PASSWORD, role: 'admin' });
  const ops = await f.signIn('ops');
  const session = { cookie: ops.cookie, 'x-osprey-csrf': ops.csrf };

  const made = await f.call('POST', '/api/tokens', { body: { name: 'ci', expiresInDays: 1 }, headers: session });
  assert.equal(made.status, 201);
  const token = made.body.token as string;
  assert.match(token, /^ospt_/);
  assert.deepEqual({ ...made.body.record, createdAt: 0 }, { id: made.body.record.id, username: 'ops', name: 'ci', role: 'admin', createdAt: 0, expiresAt: T0 + 86_400_000, revokedAt: null, lastUsedAt: null });
  const bearer = { authorization: `Bearer ${token}` };
  assert.equal((await f.call('GET', '/api/users', { headers: bearer })).status, 200);
  // The list never shows the secret again.
  const listed = await f.call('GET', '/api/tokens', { headers: bearer });
  assert.ok(!JSON.stringify(listed.body).includes(token.split('.')[1]!));

  // A narrow token cannot mint a wider one, and cannot do what its role lacks.
  const narrow = await f.call('POST', '/api/tokens', { body: { name: 'read-only', role: 'viewer' }, headers: bearer });
  assert.equal(narrow.status, 201);
  const viewerBearer = { authorization: `Bearer ${narrow.body.token}` };
  assert.equal((await f.call('GET', '/api/users', { headers: viewerBearer })).status, 403);
  const wider = await f.call('POST', '/api/tokens', { body: { name: 'escalate', role: 'admin' }, headers: viewerBearer });
  assert.equal(wider.status, 403);

  // Demoting the owner demotes the token at once.
  const demoted = await f.call('PATCH', '/api/users/ops', { body: { role: 'viewer' }, headers: admin });
  assert.equal(demoted.status, 200);
  assert.equal((await f.call('GET', '/api/users', { headers: bearer })).status, 403);
  assert.equal((await f.call('GET', '/api/auth/me', { headers: bearer })).body.role, 'viewer');
  await f.call('PATCH', '/api/users/ops', { body: { role: 'admin' }, headers: admin });
  assert.equal((await f.call('GET', '/api/users', { headers: bearer })).status, 200);

  // Expiry, on the clock.
  f.clock.now += 86_400_000;
  assert.equal((await f.call('GET', '/api/auth/me', { headers: bearer })).status, 401);

  // Revocation: by its owner; someone else's token is "not found" to a non-admin.
  const again = await f.call('POST', '/api/tokens', { body: { name: 'ci2' }, headers: await f.creds.headers('operator') });
  const other = await f.call('DELETE', `/api/tokens/${again.body.record.id}`, { headers: viewerBearer });
  assert.equal(other.status, 404);
  const revoked = await f.call('DELETE', `/api/tokens/${again.body.record.id}`, { headers: await f.creds.headers('operator') });
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.revokedAt, f.clock.now);
  assert.equal((await f.call('GET', '/api/auth/me', { headers: { authorization: `Bearer ${again.body.token}` } })).status, 401);
});

test('user administration: add, bad input, role change, disable ends sessions, password reset, the last admin is kept', async (t) => {
  const f = await startApp(t);
  const admin = await f.creds.headers('admin');
  const added = await f.call('POST', '/api/users', { body: { username: 'bob', password: PASSWORD, role: 'inspector' }, headers: admin });
  assert.equal(added.status, 201);
  assert.deepEqual([added.body.username, added.body.role, added.body.disabled], ['bob', 'inspector', false]);
  assert.ok(!('passwordHash' in added.body) && !JSON.stringify(added.body).includes('scrypt'));
  assert.equal((await f.call('POST', '/api/users', { body: { username: 'bob', password: PASSWORD, role: 'viewer' }, headers: admin })).status, 409);

  for (const [body, field] of [
    [{ username: 'x', password: PASSWORD, role: 'god' }, /role/],
    [{ username: 'bad name', password: PASSWORD, role: 'viewer' }, /username/],
    [{ username: 'x', password: PASSWORD, role: 'viewer', extra: 1 }, /extra/],
    [{ username: 'x', password: 'short', role: 'viewer' }, /12 characters/],
  ] as const) {
    const res = await f.call('POST', '/api/users', { body, headers: admin });
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.match(res.body.message, field);
    assert.ok(!res.body.message.includes('\n'));
  }

  const bob = await f.signIn('bob');
  const disabled = await f.call('PATCH', '/api/users/bob', { body: { disabled: true }, headers: admin });
  assert.equal(disabled.body.disabled, true);
  assert.equal((await f.call('GET', '/api/auth/me', { headers: { cookie: bob.cookie } })).status, 401);
  await f.call('PATCH', '/api/users/bob', { body: { disabled: false }, headers: admin });

  const bob2 = await f.signIn('bob');
  const reset = await f.call('PUT', '/api/users/bob/password', { body: { password: 'a brand new password' }, headers: admin });
  assert.equal(reset.status, 200);
  assert.equal((await f.call('GET', '/api/auth/me', { headers: { cookie: bob2.cookie } })).status, 401, 'a password reset ends the sessions');
  await f.signIn('bob', 'a brand new password');

  // test-admin is the only admin: demoting or disabling it would lock everyone out.
  const last = await f.call('PATCH', '/api/users/test-admin', { body: { role: 'viewer' }, headers: admin });
  assert.equal(last.status, 409);
  assert.match(last.body.message, /last enabled admin/);
  assert.equal((await f.call('PATCH', '/api/users/nobody', { body: { role: 'viewer' }, headers: admin })).status, 404);
  assert.equal((await f.call('PATCH', '/api/users/bob', { body: {}, headers: admin })).status, 400);
});

test('enrollment tokens per edge or line, edge credentials listed without secrets and revoked', async (t) => {
  const f = await startApp(t);
  const admin = await f.creds.headers('admin');
  const perEdge = await f.call('POST', '/api/enrollment-tokens', { body: { edgeId: 'edge-1' }, headers: admin });
  assert.equal(perEdge.status, 201);
  assert.match(perEdge.body.token, /^ospn_/);
  assert.deepEqual([perEdge.body.record.edgeId, perEdge.body.record.createdBy, perEdge.body.record.expiresAt], ['edge-1', 'user:test-admin', T0 + 3_600_000]);
  const perLine = await f.call('POST', '/api/enrollment-tokens', { body: { line: 'L1', ttlSeconds: 600 }, headers: admin });
  assert.equal(perLine.body.record.line, 'L1');
  assert.equal((await f.call('POST', '/api/enrollment-tokens', { body: { ttlSeconds: 600 }, headers: admin })).status, 400);
  assert.equal((await f.call('POST', '/api/enrollment-tokens', { body: { edgeId: '../x' }, headers: admin })).status, 400);
  const list = await f.call('GET', '/api/enrollment-tokens', { headers: admin });
  assert.equal(list.body.tokens.length, 2);
  assert.ok(!JSON.stringify(list.body).includes(perEdge.body.token.split('.')[1]));

  const credential = await f.identity.redeemEnrollmentToken(perEdge.body.token, 'edge-1');
  const creds = await f.call('GET', '/api/edge-credentials', { headers: admin });
  assert.deepEqual(creds.body.credentials.map((c: { edgeId: string; revokedAt: null }) => [c.edgeId, c.revokedAt]), [['edge-1', null]]);
  assert.ok(!JSON.stringify(creds.body).includes('$7$'), 'no hash of the secret either');
  assert.equal((await f.call('DELETE', '/api/edges/edge-1/credentials', { headers: admin })).body.revoked, 1);
  assert.equal(await f.identity.resolveEdgeCredential(credential.credential), null);
  assert.equal((await f.call('DELETE', '/api/edges/edge-1/credentials', { headers: admin })).status, 404);
  // Enrollment is an admin's: an operator is refused.
  assert.equal((await f.call('POST', '/api/enrollment-tokens', { body: { edgeId: 'edge-2' }, headers: await f.creds.headers('operator') })).status, 403);
});

test('the audit log: one row per successful change, who and from where, filters and pages, never a secret', async (t) => {
  const f = await startApp(t);
  const admin = await f.creds.headers('admin');
  await f.identity.addUser({ username: 'alice', password: PASSWORD, role: 'operator' });
  const alice = await f.signIn('alice');
  await f.call('POST', '/api/users', { body: { username: 'bob', password: 'bobs long password', role: 'viewer' }, headers: admin });
  await f.call('POST', '/api/users', { body: { username: 'bob', password: 'bobs long password', role: 'viewer' }, headers: admin }); // 409: no row
  await f.call('PATCH', '/api/users/bob', { body: { role: 'inspector' }, headers: admin });
  await f.call('PUT', '/api/users/bob/password', { body: { password: 'another long password' }, headers: admin });
  const token = await f.call('POST', '/api/tokens', { body: { name: 'ci' }, headers: admin });

  const all = await f.call('GET', '/api/audit', { headers: admin });
  assert.equal(all.status, 200);
  const rows = all.body.entries as { action: string; actor: string; target: string; source: string; before?: unknown; after?: unknown }[];
  assert.deepEqual(rows.map((r) => [r.action, r.actor, r.target]), [
    ['token.create', 'user:test-admin', `token:${token.body.record.id}`],
    ['user.password', 'user:test-admin', 'user:bob'],
    ['user.update', 'user:test-admin', 'user:bob'],
    ['user.add', 'user:test-admin', 'user:bob'],
    ['auth.sign-in', 'user:alice', 'user:alice'],
  ]);
  assert.deepEqual([rows[2]!.before, rows[2]!.after], [{ role: 'viewer', disabled: false }, { role: 'inspector', disabled: false }]);
  assert.equal(rows[0]!.source, '127.0.0.1');
  const text = JSON.stringify(all.body);
  for (const secret of ['bobs long password', 'another long password', PASSWORD, token.body.token.split('.')[1], alice.cookie.split('.')[1]]) {
    assert.ok(!text.includes(secret), 'no secret in the audit log');
  }

  const users = await f.call('GET', '/api/audit?action=user.&limit=2', { headers: admin });
  assert.deepEqual(users.body.entries.map((r: { action: string }) => r.action), ['user.password', 'user.update']);
  const next = await f.call('GET', `/api/audit?action=user.&limit=2&beforeId=${users.body.nextBeforeId}`, { headers: admin });
  assert.deepEqual(next.body.entries.map((r: { action: string }) => r.action), ['user.add']);
  assert.equal(next.body.nextBeforeId, null);
  assert.equal((await f.call('GET', '/api/audit?actor=user:alice', { headers: admin })).body.entries.length, 1);
  assert.equal((await f.call('GET', `/api/audit?from=${T0 + 1}`, { headers: admin })).body.entries.length, 0);
  const bad = await f.call('GET', '/api/audit?limit=0', { headers: admin });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /limit/);
  assert.equal((await f.call('GET', '/api/audit', { headers: { cookie: alice.cookie } })).status, 403);
});
