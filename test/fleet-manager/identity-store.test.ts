/**
 * The identity store on a real SQLite file and on a real PostgreSQL database (the same cases on
 * both): secrets are stored only as hashes, tokens and credentials stop working when they should,
 * and an enrollment token is spent exactly once, also by two instances redeeming it at once.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type pg from 'pg';
import { pino } from 'pino';
import { openSqliteIdentityStore, type IdentityStore } from '../../fleet-manager/identity-store.js';
import { IDENTITY_PG_MIGRATIONS, pgIdentityStore } from '../../fleet-manager/pg/identity-store-pg.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { isOspreyError } from '../../protocol/errors.js';
import { pgDatabaseUrl, pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { tempDir } from './helpers.js';
import type { TestContext } from 'node:test';

const silent = pino({ level: 'silent' });
const pgSkip = postgresSkip();

interface Opened {
  store: IdentityStore;
  /** Everything the backend keeps: the SQLite file and its WAL, or every row of every table. */
  storedText(): Promise<string>;
}

async function openSqlite(t: TestContext, now: () => number): Promise<Opened> {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteIdentityStore({ file, logger: silent, now });
  t.after(() => store.close());
  return { store, storedText: () => diskBytes(file) };
}

async function openPostgres(t: TestContext, now: () => number): Promise<Opened> {
  const pool = await pgTestPool(t, IDENTITY_PG_MIGRATIONS);
  const store = pgIdentityStore(pool, { logger: silent, now });
  t.after(() => store.close());
  return { store, storedText: () => allRows(pool) };
}

/** Every byte the database holds on disk (main file and WAL). */
async function diskBytes(file: string): Promise<string> {
  const parts = await Promise.all([file, `${file}-wal`].map((f) => readFile(f).catch(() => Buffer.alloc(0))));
  return Buffer.concat(parts).toString('latin1');
}

/** Every row of every table of the database, as text. */
async function allRows(pool: pg.Pool): Promise<string> {
  const tables = (await pool.query<{ t: string }>("SELECT quote_ident(table_name) AS t FROM information_schema.tables WHERE table_schema = 'public'")).rows;
  assert.ok(tables.length >= 6, 'the identity tables exist');
  const out: string[] = [];
  for (const { t } of tables) out.push(...(await pool.query<{ r: string }>(`SELECT x::text AS r FROM ${t} x`)).rows.map((r) => r.r));
  return out.join('\n');
}

for (const backend of ['sqlite', 'postgres'] as const) {
  const skip = backend === 'postgres' ? pgSkip : false;
  const open = (t: TestContext, now = () => Date.now()) => (backend === 'sqlite' ? openSqlite : openPostgres)(t, () => now());

  test(`identity store (${backend}): passwords, tokens, sessions and edge credentials are never stored in the clear`, { skip }, async (t) => {
    const { store, storedText } = await open(t);
    const password = 'correct horse battery staple';
    const user = await store.addUser({ username: 'alice', password, role: 'operator' });
    const { token } = await store.createApiToken({ userId: user.id, name: 'ci', role: 'viewer', expiresAt: null });
    const session = await store.createSession({ userId: user.id, ttlMs: 60_000, ip: '127.0.0.1' });
    const enrollment = await store.createEnrollmentToken({ edgeId: 'edge-1', line: null, ttlMs: 60_000, createdBy: 'user:alice' });
    const { credential } = await store.redeemEnrollmentToken(enrollment.token, 'edge-1');

    const bytes = await storedText();
    for (const [what, secret] of [['password', password], ['API token', token], ['session', session.token], ['enrollment token', enrollment.token], ['edge credential', credential]] as const) {
      const secretPart = secret.includes('.') ? secret.split('.')[1]! : secret;
      assert.ok(!bytes.includes(secretPart), `the ${what} is stored in the clear`);
    }
    assert.equal((await store.verifyPassword('alice', password))?.username, 'alice');
    assert.equal(await store.verifyPassword('alice', `${password}!`), null);
    assert.equal(await store.verifyPassword('nobody', password), null);
    assert.equal((await store.resolveApiToken(token))?.user.username, 'alice');
    assert.equal((await store.resolveSession(session.token))?.user.username, 'alice');
    assert.equal((await store.resolveEdgeCredential(credential))?.edgeId, 'edge-1');
  });

  test(`identity store (${backend}): a token only works until it expires or is revoked, and never for a disabled user`, { skip }, async (t) => {
    let clock = 1_000_000;
    const { store } = await open(t, () => clock);
    const user = await store.addUser({ username: 'bob', password: 'a long enough password', role: 'admin' });
    const expiring = await store.createApiToken({ userId: user.id, name: 'short', role: 'viewer', expiresAt: clock + 1000 });
    const revoked = await store.createApiToken({ userId: user.id, name: 'gone', role: 'viewer', expiresAt: null });
    assert.ok(await store.resolveApiToken(expiring.token));
    assert.equal((await store.getApiToken(expiring.record.id))?.lastUsedAt, clock, 'a use is noted');
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

  test(`identity store (${backend}): a token carries no more than its owner may, and passwords have a minimum length`, { skip }, async (t) => {
    const { store } = await open(t);
    const viewer = await store.addUser({ username: 'vic', password: 'a long enough password', role: 'viewer' });
    await assert.rejects(store.createApiToken({ userId: viewer.id, name: 'x', role: 'admin', expiresAt: null }), (err) => isOspreyError(err, 'OSP_ERR_FORBIDDEN'));
    await assert.rejects(store.addUser({ username: 'eve', password: 'short', role: 'viewer' }), (err) => isOspreyError(err, 'OSP_ERR_BAD_REQUEST'));
    await assert.rejects(store.addUser({ username: 'vic', password: 'another long password', role: 'viewer' }), (err) => isOspreyError(err, 'OSP_ERR_CONFLICT'));
    await assert.rejects(store.addUser({ username: 'bad name\n', password: 'another long password', role: 'viewer' }), (err) => isOspreyError(err, 'OSP_ERR_BAD_REQUEST'));
  });

  test(`identity store (${backend}): an enrollment token is spent exactly once, expires, binds its edge, and re-enrolling revokes the old credential`, { skip }, async (t) => {
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

  test(`identity store (${backend}): the audit log keeps before/after, filters by actor and action prefix, pages newest first`, { skip }, async (t) => {
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
}

/** Two fleet instances: two pools and two stores on one PostgreSQL database. */
async function twoInstances(t: TestContext): Promise<[IdentityStore, IdentityStore, pg.Pool]> {
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 4 }), openPgPool(url, { max: 4 })] as const;
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0], IDENTITY_PG_MIGRATIONS);
  return [pgIdentityStore(pools[0], { logger: silent }), pgIdentityStore(pools[1], { logger: silent }), pools[0]];
}

const refusedWith = (o: PromiseSettledResult<unknown>, why: RegExp) =>
  o.status === 'rejected' && isOspreyError(o.reason, 'OSP_ERR_UNAUTHENTICATED') && why.test((o.reason as Error).message);

test('identity store (postgres): two instances redeeming the same enrollment token at once: exactly one succeeds, every time', { skip: pgSkip }, async (t) => {
  const [a, b, pool] = await twoInstances(t);
  const tokens = await Promise.all(Array.from({ length: 20 }, (_, i) => a.createEnrollmentToken({ edgeId: `edge-${i}`, line: null, ttlMs: 60_000, createdBy: 'test' })));
  const outcomes = await Promise.all(tokens.map((tk, i) => Promise.allSettled([a.redeemEnrollmentToken(tk.token, `edge-${i}`), b.redeemEnrollmentToken(tk.token, `edge-${i}`)])));
  for (const [i, pair] of outcomes.entries()) {
    assert.equal(pair.filter((o) => o.status === 'fulfilled').length, 1, `token ${i}: ${pair.map((o) => o.status).join(', ')}`);
    assert.ok(pair.some((o) => refusedWith(o, /used already/)), `token ${i}: the loser is told the token was used`);
  }
  const live = (await pool.query<{ edge_id: string; n: number }>('SELECT edge_id, count(*) AS n FROM edge_credentials WHERE revoked_at IS NULL GROUP BY edge_id')).rows;
  assert.equal(live.length, 20);
  assert.ok(live.every((r) => r.n === 1), 'one live credential per edge');
  // The winner's credential works on the other instance too.
  const won = outcomes.map((pair) => (pair.find((o) => o.status === 'fulfilled') as PromiseFulfilledResult<{ credential: string }>).value.credential);
  assert.equal((await b.resolveEdgeCredential(won[0]!))?.edgeId, 'edge-0');
});

test("identity store (postgres): two line tokens enrolling the same new edge at once on two instances: one wins, the other is told it is enrolled", { skip: pgSkip }, async (t) => {
  const [a, b, pool] = await twoInstances(t);
  for (let i = 0; i < 10; i++) {
    const [ta, tb] = await Promise.all([a, b].map((s) => s.createEnrollmentToken({ edgeId: null, line: 'L1', ttlMs: 60_000, createdBy: 'test' })));
    const pair = await Promise.allSettled([a.redeemEnrollmentToken(ta!.token, `new-${i}`), b.redeemEnrollmentToken(tb!.token, `new-${i}`)]);
    assert.equal(pair.filter((o) => o.status === 'fulfilled').length, 1, `edge new-${i}`);
    assert.ok(pair.some((o) => refusedWith(o, /enrolled already/)));
  }
  assert.equal((await pool.query('SELECT count(*) AS n FROM edge_credentials WHERE revoked_at IS NULL')).rows[0].n, 10);
  // The refused line tokens were not spent.
  assert.equal((await a.listEnrollmentTokens()).filter((r) => r.usedAt === null).length, 10);
});

test('identity store (postgres): the same username added on two instances at once: one user, one conflict', { skip: pgSkip }, async (t) => {
  const [a, b] = await twoInstances(t);
  const pair = await Promise.allSettled([a, b].map((s) => s.addUser({ username: 'carol', password: 'a long enough password', role: 'viewer' })));
  assert.equal(pair.filter((o) => o.status === 'fulfilled').length, 1);
  assert.ok(pair.some((o) => o.status === 'rejected' && isOspreyError(o.reason, 'OSP_ERR_CONFLICT')));
  assert.equal(await b.countUsers(), 1);
});
