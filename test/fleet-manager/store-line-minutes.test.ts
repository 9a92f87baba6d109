/**
 * Line statistics from the per-minute aggregate (line_minutes, schema 3): the aggregate must always
 * equal a recount of the rows, and every lineStats answer must equal the grouped count over the
 * rows themselves (the query that served it before schema 3), whatever the bucket and window.
 * Also: a bad batch fails alone (SQLite's group commit too), and close() stores what was handed in.
 * Every behaviour runs against SQLite and PostgreSQL; the schema 2 upgrade is SQLite's own history.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openSqliteStore, UNKNOWN_LINE, type FleetStore, type StatsRow } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { T0, result, results, tempDir } from './helpers.js';
import { openFleetStore, sqliteRows, type FleetStoreUnderTest } from './fleet-store-backend.js';
import { testBackends } from '../helpers/store-backends.js';

const silent = pino({ level: 'silent' });
const meta = (receivedAt = T0) => ({ receivedAt });
const MINUTE = 60_000;

/** A small deterministic PRNG (mulberry32), so a failure replays. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rows = FleetStoreUnderTest['rows'];

/** The aggregate's rows, and the same groups recounted from the results table. */
async function aggregateAndRecount(rows: Rows) {
  const aggregate = await rows('SELECT line, minute, verdict, label, model, sum(count) AS count FROM line_minutes GROUP BY 1, 2, 3, 4, 5 HAVING sum(count) <> 0 ORDER BY 1, 2, 3, 4, 5');
  const recount = await rows(
    `SELECT line, (ts / 60000) * 60000 AS minute, verdict, label, model, count(*) AS count
     FROM results GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5`,
  );
  return { aggregate, recount };
}

/** The stats query over the rows themselves: what lineStats answered before the aggregate. */
function rawStats(rows: Rows, line: string, from: number, to: number, b: number): Promise<StatsRow[]> {
  return rows<StatsRow>(
    `SELECT (ts / CAST($4 AS INTEGER)) * CAST($4 AS INTEGER) AS bucket, verdict, label, model, count(*) AS count
     FROM results WHERE line = $1 AND ts >= $2 AND ts < $3
     GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
    [line, from, to, b],
  );
}

/** Random results of one edge: seqs from..to, timestamps spread over a few hours at ms precision. */
function randomResults(rand: () => number, from: number, to: number): ResultRecord[] {
  const labels = ['good', 'scratch', 'dent'];
  return Array.from({ length: to - from + 1 }, (_, i) => {
    const defect = rand() < 0.2;
    return result(from + i, {
      ts: T0 + Math.floor(rand() * 3 * 3_600_000),
      verdict: defect ? 'defect' : 'ok',
      label: defect ? labels[1 + Math.floor(rand() * 2)]! : labels[0]!,
      model: rand() < 0.7 ? 'm@1' : 'm@2',
    });
  });
}

async function fill(store: FleetStore, seed: number): Promise<void> {
  const rand = prng(seed);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1' }), meta());
  await store.recordState('e2', envelope('state', 'e2', { online: true, line: 'L2' }), meta());
  // e3 sends results before its first state: stored under the unknown line, moved later.
  await store.ingestResults('e3', randomResults(rand, 1, 300), meta());
  await store.ingestResults('e1', randomResults(rand, 1, 400), meta());
  await store.ingestResults('e2', randomResults(rand, 1, 400), meta());
  // Resends (duplicates) and a store that went back in time (conflicts) add no counts.
  await store.ingestResults('e1', (await store.listResults({ edge: 'e1', limit: 50 })).items.map(({ id, edgeId, line, storeId, ...r }) => r), meta());
  await store.ingestResults('e2', randomResults(rand, 350, 450), meta());
  await store.recordState('e3', envelope('state', 'e3', { online: true, line: 'L1' }), meta());
  await store.ingestResults('e3', randomResults(rand, 301, 500), meta());
  // e4 reports no line at all: its rows stay under unknown.
  await store.ingestResults('e4', randomResults(rand, 1, 100), meta());
}

testBackends('line_minutes equals a recount of the rows, through duplicates, conflicts and a line assigned late', async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  await fill(store, 1);
  const { aggregate, recount } = await aggregateAndRecount(rows);
  assert.ok(aggregate.length > 100, 'the data spans many groups');
  assert.deepEqual(aggregate, recount);
  const lines = (await rows<{ line: string }>('SELECT DISTINCT line FROM line_minutes ORDER BY 1')).map((r) => r.line);
  assert.deepEqual(lines, ['L1', 'L2', UNKNOWN_LINE]);
  assert.equal(await store.hasLine(UNKNOWN_LINE), true);
});

testBackends('a line assigned late leaves no empty unknown groups behind', async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  await store.ingestResults('e1', results(1, 5), meta());
  assert.equal(await store.hasLine(UNKNOWN_LINE), true);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1' }), meta());
  assert.deepEqual(await rows('SELECT line, sum(count) AS n FROM line_minutes GROUP BY 1'), [{ line: 'L1', n: 5 }]);
  assert.equal(await store.hasLine(UNKNOWN_LINE), false);
  assert.equal(await store.hasLine('L1'), true);
});

testBackends('lineStats answers exactly what the rows give, for every bucket size and any window', async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  await fill(store, 2);
  const rand = prng(3);
  const buckets = [1_000, 10_000, MINUTE, 90_000, 5 * MINUTE, 7 * MINUTE, 3_600_000, 86_400_000];
  const span = 3 * 3_600_000;
  let compared = 0;
  for (const line of ['L1', 'L2', UNKNOWN_LINE, 'nowhere']) {
    for (const b of buckets) {
      const windows: [number, number][] = [
        [T0 - 86_400_000, T0 + 86_400_000], // everything, aligned
        [T0, T0 + span], // minute-aligned both ends
        [T0 + 12_345, T0 + 12_345 + 40_000], // within one minute
        [T0 + 59_999, T0 + 120_001], // one whole minute and two slivers
      ];
      for (let i = 0; i < 4; i++) {
        const from = T0 - 600_000 + Math.floor(rand() * span);
        windows.push([from, from + 1 + Math.floor(rand() * span)]);
      }
      for (const [from, to] of windows) {
        const got = await store.lineStats(line, from, to, b);
        assert.deepEqual(got, await rawStats(rows, line, from, to, b), `${line} ${from}..${to} bucket ${b}`);
        compared += got.length;
      }
    }
  }
  assert.ok(compared > 1000, 'the comparisons saw real groups');
});

testBackends('listing results by line still pages newest first, also for a line quiet for long', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.recordState('old', envelope('state', 'old', { online: true, line: 'Old' }), meta());
  await store.recordState('new', envelope('state', 'new', { online: true, line: 'New' }), meta());
  await store.ingestResults('old', results(1, 5), meta());
  await store.ingestResults('new', results(1, 300, { ts: T0 + 86_400_000 }).map((r, i) => ({ ...r, ts: r.ts + i })), meta());
  const first = await store.listResults({ line: 'Old', limit: 3 });
  assert.deepEqual(first.items.map((r) => r.seq), [5, 4, 3]);
  const rest = await store.listResults({ line: 'Old', limit: 3, after: first.next! });
  assert.deepEqual(rest.items.map((r) => r.seq), [2, 1]);
  assert.equal(rest.next, null);
  assert.deepEqual((await store.listResults({ line: 'Nowhere', limit: 3 })).items, []);
  assert.equal((await store.listResults({ line: 'New', limit: 1000 })).items.length, 300);
});

// SQLite stores a group of batches in one transaction (group commit); PostgreSQL each batch in its
// own. Either way a bad batch fails alone. The bad value is one each database refuses.
testBackends('a bad batch fails alone, the batches handed in beside it are stored and acked', async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  // Handed in the same event-loop turn, so SQLite puts them in one transaction first.
  // A value SQLite cannot bind, or PostgreSQL cannot read as BIGINT, makes the insert throw (the
  // schema check at ingest keeps these out).
  const bad = results(1, 3).map((r, i) =>
    i !== 1 ? r : backend === 'sqlite' ? { ...r, camera: {} as unknown as string } : { ...r, ts: r.ts + 0.5 },
  );
  const [a, b, c] = await Promise.allSettled([
    store.ingestResults('e1', results(1, 10), meta()),
    store.ingestResults('e2', bad, meta()),
    store.ingestResults('e3', results(1, 4), meta()),
  ]);
  assert.deepEqual(a, { status: 'fulfilled', value: { ackedSeq: 10, inserted: 10, conflicts: 0 } });
  assert.equal(b.status, 'rejected');
  assert.match(String((b as PromiseRejectedResult).reason), backend === 'sqlite' ? /can only bind/ : /bigint/);
  assert.deepEqual(c, { status: 'fulfilled', value: { ackedSeq: 4, inserted: 4, conflicts: 0 } });
  // Nothing of the bad batch stayed, in the rows or in the aggregate.
  assert.deepEqual(await rows("SELECT count(*) AS n FROM results WHERE edge_id = 'e2'"), [{ n: 0 }]);
  const { aggregate, recount } = await aggregateAndRecount(rows);
  assert.deepEqual(aggregate, recount);
  // The store carries on: the edge resends the batch fixed.
  assert.deepEqual(await store.ingestResults('e2', results(1, 3), meta()), { ackedSeq: 3, inserted: 3, conflicts: 0 });
  assert.equal((await store.getEdge('e2'))!.ackedSeq, 3);
});

testBackends('a row the database skips (OR IGNORE on a NOT NULL column) is never acked', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  const batch = results(1, 4).map((r) => (r.seq === 3 ? { ...r, camera: null as unknown as string } : r));
  assert.deepEqual(await store.ingestResults('e1', batch, meta()), { ackedSeq: 2, inserted: 3, conflicts: 0 });
});

testBackends('close() stores and answers the batches handed in before it, and later calls fail', async (t, backend) => {
  const { store, open: reopen } = await openFleetStore(t, backend);
  const pending = [
    store.ingestResults('e1', results(1, 100), meta()),
    store.ingestResults('e2', results(1, 50), meta()),
    store.ingestResults('e1', results(101, 120), meta()),
  ];
  await store.close();
  assert.deepEqual(await Promise.all(pending), [
    { ackedSeq: 100, inserted: 100, conflicts: 0 },
    { ackedSeq: 50, inserted: 50, conflicts: 0 },
    { ackedSeq: 120, inserted: 20, conflicts: 0 },
  ]);
  await assert.rejects(store.ingestResults('e1', results(121, 121), meta()), /closed/);
  await assert.rejects(store.listEdges(), /closed/);
  const again = await reopen();
  assert.deepEqual((await again.listEdges()).map((e) => [e.id, e.ackedSeq]), [['e1', 120], ['e2', 50]]);
});

test('sqlite: a database of schema 2 gets line_minutes from its rows and loses the covering index', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  const first = openSqliteStore({ file, logger: silent });
  await fill(first, 4);
  await first.close();
  // Back to the schema 2 shape: the covering index and no aggregate.
  const old = new Database(file);
  old.exec(`DROP TABLE line_minutes;
    CREATE INDEX results_line_ts ON results (line, ts, verdict, label, model);
    PRAGMA user_version = 2;`);
  old.close();

  const store = openSqliteStore({ file, logger: silent });
  t.after(() => store.close());
  const db = new Database(file, { readonly: true });
  t.after(() => db.close());
  const rows: Rows = async <T,>(sql: string, params?: unknown[]) => sqliteRows<T>(db, sql, params);
  assert.equal(db.pragma('user_version', { simple: true }), 5);
  const indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'results_line_ts'").all();
  assert.deepEqual(indexes, []);
  const { aggregate, recount } = await aggregateAndRecount(rows);
  assert.ok(aggregate.length > 100);
  assert.deepEqual(aggregate, recount);
  assert.deepEqual(await store.lineStats('L1', T0, T0 + 3 * 3_600_000, 3_600_000), await rawStats(rows, 'L1', T0, T0 + 3 * 3_600_000, 3_600_000));
});
