/**
 * The alert store itself (issue 17, 18), the same cases on SQLite (a temp dir) and PostgreSQL: one
 * open alert per (type, subject), repeats, acknowledgement, resolution, listing filters and
 * counts; and on PostgreSQL, two fleet instances (two pools) raising the same alert at once still
 * leave one open alert.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openSqliteAlertStore, rolloutSubject, type AlertInput, type AlertStore } from '../../fleet-manager/alert-store.js';
import { ALERT_PG_MIGRATIONS, pgAlertStore } from '../../fleet-manager/pg/alert-store-pg.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { pgDatabaseUrl, pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { tempDir } from './helpers.js';

async function open(t: TestContext, backend: StoreBackend, maxAlerts = 1000): Promise<AlertStore> {
  if (backend === 'postgres') return pgAlertStore(await pgTestPool(t, ALERT_PG_MIGRATIONS), { maxAlerts });
  const store = openSqliteAlertStore({ file: join(await tempDir(t), 'fleet.db'), maxAlerts });
  t.after(() => store.close());
  return store;
}

const blur = (over: Partial<AlertInput> = {}): AlertInput => ({
  type: 'image-blur', source: 'edge', subject: 'press-1', edgeId: 'press-1', line: 'L1', severity: 'warning', message: 'blurred', data: { sharpness: 2 }, ...over,
});

testBackends('raise then repeat: one open alert per (type, subject), updated in place; the newer report wins; resolve; a new raise is a new alert', async (t, backend) => {
  const s = await open(t, backend);
  const first = await s.raise(blur({ sourceTs: 100 }), 1000);
  assert.equal(first.created, true);
  assert.deepEqual(
    [first.alert.state, first.alert.count, first.alert.raisedAt, first.alert.updatedAt, first.alert.sourceTs, first.alert.rolloutId, first.alert.data],
    ['open', 1, 1000, 1000, 100, null, { sharpness: 2 }],
  );
  const again = await s.raise(blur({ severity: 'critical', message: 'very blurred', data: { sharpness: 1 }, line: null, sourceTs: 50 }), 2000);
  assert.equal(again.created, false);
  assert.equal(again.alert.id, first.alert.id);
  assert.deepEqual(
    [again.alert.count, again.alert.severity, again.alert.message, again.alert.data, again.alert.line, again.alert.raisedAt, again.alert.updatedAt, again.alert.sourceTs],
    [2, 'critical', 'very blurred', { sharpness: 1 }, 'L1', 1000, 2000, 100],
  );
  // Another subject or another type is another alert.
  const other = await s.raise(blur({ subject: 'press-2', edgeId: 'press-2' }), 2100);
  const rollout = await s.raise(blur({ type: 'rollout-failed', source: 'fleet', subject: rolloutSubject('ro-1'), edgeId: null, data: null }), 2200);
  assert.deepEqual([other.created, rollout.created, rollout.alert.rolloutId], [true, true, 'ro-1']);
  assert.equal((await s.open('image-blur', 'press-1'))?.id, first.alert.id);
  assert.deepEqual((await s.listActive()).map((a) => a.id), [first.alert.id, other.alert.id, rollout.alert.id]);
  assert.deepEqual((await s.activeOf('press-1')).map((a) => a.id), [first.alert.id]);

  const resolved = await s.resolve('image-blur', 'press-1', 3000, 300);
  assert.deepEqual([resolved?.state, resolved?.resolvedAt, resolved?.updatedAt, resolved?.sourceTs], ['resolved', 3000, 3000, 300]);
  assert.equal(await s.resolve('image-blur', 'press-1', 3100), null, 'nothing open to resolve');
  assert.equal(await s.open('image-blur', 'press-1'), null);
  const next = await s.raise(blur(), 4000);
  assert.equal(next.created, true);
  assert.notEqual(next.alert.id, first.alert.id);
  assert.equal((await s.latest('image-blur', 'press-1'))?.id, next.alert.id);
  assert.equal((await s.get(first.alert.id))?.state, 'resolved');
  assert.equal(await s.get(999_999), null);
});

testBackends('acknowledge: the first acknowledgement stays; an unknown id is null; counts and per-type gauges follow', async (t, backend) => {
  const s = await open(t, backend);
  const a = (await s.raise(blur(), 1000)).alert;
  await s.raise(blur({ type: 'camera-shift' }), 1000);
  await s.raise(blur({ type: 'camera-shift', subject: 'press-2', edgeId: 'press-2' }), 1000);
  assert.deepEqual(await s.counts(), { open: 3, acknowledged: 0 });
  const ack = await s.acknowledge(a.id, 'user:alice', 1500);
  assert.deepEqual([ack?.changed, ack?.alert.state, ack?.alert.acknowledgedBy, ack?.alert.acknowledgedAt, ack?.alert.updatedAt], [true, 'acknowledged', 'user:alice', 1500, 1500]);
  const twice = await s.acknowledge(a.id, 'user:bob', 1600);
  assert.deepEqual([twice?.changed, twice?.alert.acknowledgedBy, twice?.alert.acknowledgedAt], [false, 'user:alice', 1500]);
  assert.equal(await s.acknowledge(999_999, 'user:bob', 1600), null);
  assert.deepEqual(await s.counts(), { open: 2, acknowledged: 1 });
  assert.deepEqual(await s.openAlertsByType(), { 'image-blur': 1, 'camera-shift': 2 });
  await s.resolve('camera-shift', 'press-2', 2000);
  assert.deepEqual(await s.openAlertsByType(), { 'image-blur': 1, 'camera-shift': 1 });
  // An empty store counts zeros, not nulls.
  const empty = await open(t, backend);
  assert.deepEqual(await empty.counts(), { open: 0, acknowledged: 0 });
  assert.deepEqual(await empty.openAlertsByType(), {});
});

testBackends('list: newest first, every filter, keyset paging by id; big data is cut', async (t, backend) => {
  const s = await open(t, backend);
  const ids: number[] = [];
  for (let i = 0; i < 6; i++) {
    const line = i % 2 === 0 ? 'L1' : 'L2';
    ids.push((await s.raise(blur({ type: i < 3 ? 'image-blur' : 'disk-low', subject: `e${i}`, edgeId: `e${i}`, line }), 1000 + i * 100)).alert.id);
  }
  await s.acknowledge(ids[1]!, 'user:a', 2000);
  await s.resolve('image-blur', 'e2', 2000);
  const q = async (query: Omit<Parameters<AlertStore['list']>[0], 'limit'>, limit = 100) => (await s.list({ limit, ...query })).map((a) => ids.indexOf(a.id));
  assert.deepEqual(await q({}), [5, 4, 3, 2, 1, 0]);
  assert.deepEqual(await q({ state: 'open' }), [5, 4, 3, 0]);
  assert.deepEqual(await q({ state: 'acknowledged' }), [1]);
  assert.deepEqual(await q({ state: 'resolved' }), [2]);
  assert.deepEqual(await q({ state: 'active' }), [5, 4, 3, 1, 0]);
  assert.deepEqual(await q({ type: 'disk-low' }), [5, 4, 3]);
  assert.deepEqual(await q({ line: 'L2' }), [5, 3, 1]);
  assert.deepEqual(await q({ edgeId: 'e4' }), [4]);
  assert.deepEqual(await q({ since: 1200, until: 1400 }), [3, 2]);
  assert.deepEqual(await q({ before: ids[3] }), [2, 1, 0]);
  assert.deepEqual(await q({ type: 'image-blur', state: 'open', line: 'L1' }), [0]);
  assert.deepEqual(await q({}, 2), [5, 4]);
  const big = await s.raise(blur({ subject: 'big', data: { blob: 'x'.repeat(5000) } }), 3000);
  assert.deepEqual(big.alert.data, { truncated: true, bytes: JSON.stringify({ blob: 'x'.repeat(5000) }).length });
});

test('PostgreSQL: two fleet instances raising the same alert at once leave one open alert, counted once per raise', { skip: postgresSkip() }, async (t) => {
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 4 }), openPgPool(url, { max: 4 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, ALERT_PG_MIGRATIONS);
  const [a, b] = pools.map((p) => pgAlertStore(p, { maxAlerts: 1000 })) as [AlertStore, AlertStore];
  const rounds = 5;
  const perInstance = 8;
  for (let round = 0; round < rounds; round++) {
    const subject = `press-${round}`;
    const outcomes = await Promise.all(
      Array.from({ length: perInstance * 2 }, (_, i) => (i % 2 === 0 ? a : b).raise(blur({ subject, edgeId: subject, message: `m${i}` }), 1000 + i)),
    );
    assert.equal(outcomes.filter((o) => o.created).length, 1, `round ${round}: exactly one raise created the alert`);
    assert.equal(new Set(outcomes.map((o) => o.alert.id)).size, 1, `round ${round}: every raise answered the same alert`);
    const open = await b.activeOf(subject);
    assert.equal(open.length, 1, `round ${round}: one open alert`);
    assert.equal(open[0]!.count, perInstance * 2, `round ${round}: every raise counted`);
  }
  assert.deepEqual(await a.counts(), { open: rounds, acknowledged: 0 });
});

testBackends('the change log: raised, acknowledged and resolved are logged with the alert as it was, repeats are not; read after a number; the newest maxAlerts kept', async (t, backend) => {
  const s = await open(t, backend, 4);
  const a = await s.raise(blur(), 1000);
  await s.raise(blur({ message: 'still blurred' }), 1100);
  await s.acknowledge(a.alert.id, 'user:ann', 1200);
  await s.acknowledge(a.alert.id, 'user:bob', 1250);
  await s.resolve('image-blur', 'press-1', 1300);
  await s.resolve('image-blur', 'press-1', 1350);
  const log = await s.changesAfter(0, 100);
  assert.deepEqual(
    log.map((c) => [c.event, c.alert.id, c.alert.state, c.alert.count, c.alert.acknowledgedBy, c.alert.updatedAt]),
    [
      ['raised', a.alert.id, 'open', 1, null, 1000],
      ['acknowledged', a.alert.id, 'acknowledged', 2, 'user:ann', 1200],
      ['resolved', a.alert.id, 'resolved', 2, 'user:ann', 1300],
    ],
    'one row per change told, each with the alert as it was then; a repeat, a second acknowledgement and a second resolve add none',
  );
  assert.ok(log[0]!.seq < log[1]!.seq && log[1]!.seq < log[2]!.seq, 'numbers grow');
  assert.deepEqual((await s.changesAfter(log[0]!.seq, 1)).map((c) => c.event), ['acknowledged'], 'read after a number, at most limit');
  assert.deepEqual(await s.changesAfter(log[2]!.seq, 100), []);
  // Bounded: four more changes leave the newest four.
  for (let i = 0; i < 4; i++) await s.raise(blur({ subject: `press-${i + 2}`, edgeId: `press-${i + 2}` }), 2000 + i);
  const kept = await s.changesAfter(0, 100);
  assert.deepEqual(kept.map((c) => [c.event, c.alert.edgeId]), [0, 1, 2, 3].map((i) => ['raised', `press-${i + 2}`]));
});

test('PostgreSQL: changes logged by two fleet instances at once are read in commit order: a reader following the log misses none', { skip: postgresSkip(), timeout: 60_000 }, async (t) => {
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 6 }), openPgPool(url, { max: 6 }), openPgPool(url, { max: 2 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, ALERT_PG_MIGRATIONS);
  const [a, b, reader] = pools.map((p) => pgAlertStore(p, { maxAlerts: 10_000 })) as [AlertStore, AlertStore, AlertStore];
  const subjects = Array.from({ length: 300 }, (_, i) => `press-${i}`);
  // A reader that follows the log as the webhook sender does: it never looks below what it has read.
  const seen: string[] = [];
  let cursor = 0;
  let writing = true;
  const follow = (async () => {
    for (;;) {
      const done = !writing;
      const batch = await reader.changesAfter(cursor, 50);
      for (const c of batch) {
        seen.push(`${c.event} ${c.alert.edgeId}`);
        cursor = c.seq;
      }
      if (done && batch.length < 50) return;
    }
  })();
  // Raise and resolve every subject, spread over both instances, 12 at a time.
  for (let i = 0; i < subjects.length; i += 12) {
    await Promise.all(
      subjects.slice(i, i + 12).map(async (subject, k) => {
        const store = k % 2 === 0 ? a : b;
        await store.raise(blur({ subject, edgeId: subject }), 1000);
        await (k % 3 === 0 ? a : b).resolve('image-blur', subject, 2000);
      }),
    );
  }
  writing = false;
  await follow;
  const all = (await reader.changesAfter(0, 10_000)).map((c) => `${c.event} ${c.alert.edgeId}`);
  assert.equal(all.length, subjects.length * 2, 'every raise and every resolve logged once');
  assert.deepEqual([...seen].sort(), [...all].sort(), 'the reader following the log saw every change');
});

testBackends("an edge's alarm message and line holding NUL raise an alert, not an error", async (t, backend) => {
  const s = await open(t, backend);
  const { alert } = await s.raise(blur({ message: 'blurred \u0000 lens', line: 'L\u00001' }), 1000);
  const kept = backend === 'sqlite' ? '\u0000' : '\ufffd';
  assert.deepEqual([alert.message, alert.line], [`blurred ${kept} lens`, `L${kept}1`]);
  assert.deepEqual((await s.changesAfter(0, 10)).map((c) => c.alert.message), [`blurred ${kept} lens`]);
});
