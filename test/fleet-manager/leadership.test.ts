/**
 * Leader election (fleet-manager/leadership.ts): one leader of several electors on one
 * PostgreSQL database, and another takes over within seconds when the leader's session dies
 * (terminated by the server, or its process killed with SIGKILL). Real PostgreSQL, real processes.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { pino } from 'pino';
import { pgLeadership, singleLeadership, type Leadership } from '../../fleet-manager/leadership.js';
import { pgDatabaseUrl } from '../helpers/pg-database.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { LEADER_PG_MIGRATIONS } from '../../fleet-manager/leadership.js';

/** A fresh database with the leader table, as the storage factory makes it. */
async function leaderDatabase(): Promise<string> {
  const url = await pgDatabaseUrl();
  const pool = openPgPool(url);
  try {
    await migratePg(pool, LEADER_PG_MIGRATIONS);
  } finally {
    await pool.end();
  }
  return url;
}
import { postgresSkip } from '../helpers/postgres.js';

const RETRY_MS = 200;
const silent = pino({ level: 'silent' });

/** An elector whose changes are recorded, each with the time it came. */
function elector(url: string, name: string, announce?: { url: string; instance: string }): { l: Leadership; changes: { leader: boolean; at: number }[]; next: (leader: boolean) => Promise<number> } {
  const l = pgLeadership({ url, logger: silent, retryMs: RETRY_MS, applicationName: name, ...(announce && { announce: () => announce }) });
  const changes: { leader: boolean; at: number }[] = [];
  const waiters: { leader: boolean; resolve: (at: number) => void }[] = [];
  l.onChange((leader) => {
    const at = performance.now();
    changes.push({ leader, at });
    for (const w of waiters.splice(0)) {
      if (w.leader === leader) w.resolve(at);
      else waiters.push(w);
    }
  });
  return {
    l,
    changes,
    next: (leader) => new Promise((resolve) => waiters.push({ leader, resolve })),
  };
}

test('single-instance leadership leads from start to stop', async () => {
  const l = singleLeadership();
  const heard: boolean[] = [];
  l.onChange((v) => void heard.push(v));
  assert.equal(l.isLeader(), false);
  await l.start();
  assert.equal(l.isLeader(), true);
  await l.stop();
  assert.equal(l.isLeader(), false);
  assert.deepEqual(heard, [true, false]);
});

test('one of two electors leads; when its session is terminated the other takes over within seconds', { skip: postgresSkip() }, async (t) => {
  const url = await leaderDatabase();
  const a = elector(url, 'elector-a');
  const b = elector(url, 'elector-b');
  t.after(() => Promise.all([a.l.stop(), b.l.stop()]));
  await a.l.start();
  await b.l.start();
  assert.equal(a.l.isLeader(), true, 'the first to try leads');
  assert.equal(b.l.isLeader(), false, 'the lock is held: the second follows');

  const admin = new pg.Client({ connectionString: url });
  // The file's server may stop before this test's after-hooks run: its goodbye is no failure.
  admin.on('error', () => {});
  await admin.connect();
  t.after(() => admin.end());
  const aLost = a.next(false);
  const bLeads = b.next(true).then((at) => ({ next: b, other: a, at }));
  const killedAt = performance.now();
  const { rows } = await admin.query<{ n: number }>("SELECT count(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity WHERE application_name = 'elector-a'");
  assert.equal(rows[0]!.n, 1, "the leader's one session was terminated");
  const lostAt = await aLost;
  // Whoever tries first after the loss takes the free lock: b, or a again on a new session.
  const { next, other, at: takenAt } = await Promise.race([bLeads, a.next(true).then((at) => ({ next: a, other: b, at }))]);
  const takeoverMs = takenAt - killedAt;
  t.diagnostic(`takeover after pg_terminate_backend: ${takeoverMs.toFixed(0)} ms (retryMs ${RETRY_MS}); old leader knew after ${(lostAt - killedAt).toFixed(0)} ms`);
  assert.ok(takeoverMs < 10 * RETRY_MS + 1000, `took over in ${takeoverMs} ms`);
  assert.ok(lostAt <= takenAt + 50, 'the old leader stopped leading no later than the new one began');
  assert.equal(next.l.isLeader(), true);
  assert.equal(other.l.isLeader(), false, 'one leader at a time');

  // The other follows; when the leader stops, it leads.
  const otherLeads = other.next(true);
  await next.l.stop();
  await otherLeads;
  assert.equal(other.l.isLeader(), true);
  assert.equal(next.l.isLeader(), false);
  assert.deepEqual(next.changes.slice(-2).map((c) => c.leader), [true, false]);
});

test('the leader announces where it answers; followers learn it at their next try, and the next leader replaces it', { skip: postgresSkip() }, async (t) => {
  const url = await leaderDatabase();
  const a = elector(url, 'announce-a', { url: 'http://10.0.0.1:8080', instance: 'fleet-a' });
  const b = elector(url, 'announce-b', { url: 'http://10.0.0.2:8080', instance: 'fleet-b' });
  t.after(() => Promise.all([a.l.stop(), b.l.stop()]));
  assert.equal(b.l.leader(), null, 'nothing known before the first try');
  const before = Date.now();
  await a.l.start();
  await b.l.start();
  assert.equal(a.l.isLeader(), true);
  const seen = b.l.leader();
  assert.deepEqual({ ...seen, since: 0 }, { url: 'http://10.0.0.1:8080', instance: 'fleet-a', since: 0 });
  assert.ok(seen!.since >= before && seen!.since <= Date.now(), 'since: when it took the lock');
  assert.deepEqual(a.l.leader(), seen, 'the leader knows itself');

  const bLeads = b.next(true);
  await a.l.stop();
  await bLeads;
  assert.equal(b.l.leader()?.instance, 'fleet-b');
  const c = elector(url, 'announce-c', { url: 'http://10.0.0.3:8080', instance: 'fleet-c' });
  t.after(() => c.l.stop());
  await c.l.start();
  assert.equal(c.l.isLeader(), false);
  assert.deepEqual(c.l.leader(), b.l.leader(), 'a new follower reads the new leader, not the old row');
});

test('a leader process killed with SIGKILL frees the lock and another elector takes over within seconds', { skip: postgresSkip() }, async (t) => {
  const url = await leaderDatabase();
  const script = fileURLToPath(new URL('../helpers/leader-child.js', import.meta.url));
  const child = spawn(process.execPath, [script, url], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout! });
  const [first] = (await once(lines, 'line')) as [string];
  assert.equal(first, 'leader', 'the child leads the empty database');

  const b = elector(url, 'elector-b');
  t.after(() => b.l.stop());
  await b.l.start();
  assert.equal(b.l.isLeader(), false, 'the child holds the lock');

  const bLeads = b.next(true);
  const killedAt = performance.now();
  child.kill('SIGKILL');
  await once(child, 'exit');
  const takeoverMs = (await bLeads) - killedAt;
  t.diagnostic(`takeover after SIGKILL of the leader process: ${takeoverMs.toFixed(0)} ms (retryMs ${RETRY_MS})`);
  assert.ok(takeoverMs < 10 * RETRY_MS + 1000, `took over in ${takeoverMs} ms`);
  assert.equal(b.l.isLeader(), true);
});

test('an elector that cannot reach the database follows and keeps trying', async (t) => {
  // A port nobody listens on (connect refused at once): never leader, start still resolves.
  const l = pgLeadership({ url: 'postgres://osprey@127.0.0.1:1/none', logger: silent, retryMs: RETRY_MS });
  t.after(() => l.stop());
  await l.start();
  assert.equal(l.isLeader(), false);
});
