/**
 * Results keyed by (edge, store, seq) (issue 5): a wiped edge database is a new store whose seqs
 * restart at 1, and the fleet must keep both stores' rows, ack each on its own, and notice a
 * store that went back in time. Run against SQLite and PostgreSQL; the upgrade of a file from
 * before storeIds is SQLite's own history.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import { T0, results, tempDir } from './helpers.js';
import { openFleetStore } from './fleet-store-backend.js';
import { testBackends } from '../helpers/store-backends.js';

const silent = pino({ level: 'silent' });
const meta = (receivedAt = T0) => ({ receivedAt });
const OLD = 'oldStoreAAAAAAAA';
const NEW = 'newStoreBBBBBBBB';

testBackends('a wiped edge (new store, seqs from 1) keeps every row of both stores, each acked on its own', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1', storeId: OLD }), meta());
  assert.deepEqual(await store.ingestResults('e1', results(1, 10), meta(), OLD), { ackedSeq: 10, inserted: 10, conflicts: 0 });

  // The PC's disk is replaced: a new store starts at seq 1 with other frames.
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1', storeId: NEW, lastSeq: 0 }), meta());
  assert.equal((await store.getEdge('e1'))!.ackedSeq, 0, "the edge's ack follows its new store");
  const fresh = results(1, 4, { ts: T0 + 1e6, verdict: 'defect', label: 'scratch' });
  assert.deepEqual(await store.ingestResults('e1', fresh, meta(), NEW), { ackedSeq: 4, inserted: 4, conflicts: 0 });
  // A late resend of the old store is still a duplicate of the old store, not of the new one.
  assert.deepEqual(await store.ingestResults('e1', results(9, 10), meta(), OLD), { ackedSeq: 10, inserted: 0, conflicts: 0 });

  const edge = (await store.getEdge('e1'))!;
  assert.deepEqual([edge.storeId, edge.ackedSeq], [OLD, 10], 'the last report was from the old store');
  const page = await store.listResults({ edge: 'e1', limit: 100 });
  assert.equal(page.items.length, 14);
  assert.deepEqual(page.items.filter((r) => r.storeId === NEW).map((r) => r.seq).sort(), [1, 2, 3, 4]);
  const stats = await store.lineStats('L1', 0, T0 * 2, 86_400_000);
  assert.equal(stats.reduce((n, r) => n + r.count, 0), 14);
  assert.equal(stats.filter((r) => r.verdict === 'defect').reduce((n, r) => n + r.count, 0), 4);
});

testBackends('a store that went back in time (a restored results.db) is reported as conflicts, never taken as duplicates silently', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.ingestResults('e1', results(1, 10), meta(), OLD);
  // The same seqs again, but other frames (other timestamps).
  const other = results(6, 12, { ts: T0 + 5e6 });
  assert.deepEqual(await store.ingestResults('e1', other, meta(), OLD), { ackedSeq: 12, inserted: 2, conflicts: 5 });
});

test('sqlite: a fleet database from before storeIds is migrated: rows and acks kept under the empty store', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  // The schema version 1 shape, written by hand: UNIQUE (edge_id, seq) and no store columns.
  const db = new Database(file);
  db.exec(`
    CREATE TABLE edges (id TEXT PRIMARY KEY, line TEXT, cameras TEXT NOT NULL DEFAULT '[]', first_seen INTEGER NOT NULL,
      last_seen INTEGER NOT NULL, online INTEGER NOT NULL DEFAULT 0, state TEXT, telemetry TEXT, telemetry_at INTEGER,
      acked_seq INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE results (id INTEGER PRIMARY KEY, edge_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
      line TEXT NOT NULL, camera TEXT NOT NULL, source TEXT NOT NULL, frame TEXT, model TEXT NOT NULL, verdict TEXT NOT NULL,
      label TEXT NOT NULL, score REAL NOT NULL, latency_ms REAL NOT NULL, detections TEXT, UNIQUE (edge_id, seq));
    CREATE INDEX results_line_ts ON results (line, ts, verdict, label, model);
    CREATE INDEX results_ts ON results (ts);
    CREATE INDEX results_edge_ts ON results (edge_id, ts);
    PRAGMA user_version = 1;
  `);
  db.prepare('INSERT INTO edges (id, line, first_seen, last_seen, acked_seq) VALUES (?, ?, ?, ?, ?)').run('e1', 'L1', T0, T0, 3);
  const insert = db.prepare(
    `INSERT INTO results (edge_id, seq, ts, line, camera, source, model, verdict, label, score, latency_ms)
     VALUES ('e1', ?, ?, 'L1', 'cam-1', 'simulated', 'm@1', 'ok', 'good', 0.1, 4.5)`,
  );
  for (let seq = 1; seq <= 3; seq++) insert.run(seq, T0 + seq);
  db.close();

  const store = openSqliteStore({ file, logger: silent });
  t.after(() => store.close());
  // An edge without storeId carries on where it was; a new store of the same edge starts at 0.
  assert.deepEqual(await store.ingestResults('e1', results(4, 5), meta()), { ackedSeq: 5, inserted: 2, conflicts: 0 });
  assert.deepEqual(await store.ingestResults('e1', results(1, 2), meta(), NEW), { ackedSeq: 2, inserted: 2, conflicts: 0 });
  assert.equal((await store.listResults({ edge: 'e1', limit: 100 })).items.length, 7);
  const check = new Database(file, { readonly: true });
  t.after(() => check.close());
  assert.equal(check.pragma('user_version', { simple: true }), 5);
  assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
  const indexes = check.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results' AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all();
  // Schema 3: the covering index gave way to line_minutes, filled from the migrated rows.
  assert.deepEqual(indexes, ['results_edge_ts', 'results_ts']);
  const minutes = check.prepare('SELECT line, minute, verdict, label, model, count FROM line_minutes ORDER BY model').all();
  const minute = Math.floor(T0 / 60_000) * 60_000;
  assert.deepEqual(minutes, [
    { line: 'L1', minute, verdict: 'ok', label: 'good', model: 'builtin-anomaly@1', count: 4 },
    { line: 'L1', minute, verdict: 'ok', label: 'good', model: 'm@1', count: 3 },
  ]);
});

test('sqlite: a fleet database of schema 4 (store ids in every row) is migrated to store keys: rows, ids, acks and dedup kept', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  // The schema 4 shape of the tables this migration rebuilds, written by hand.
  const db = new Database(file);
  db.exec(`
    CREATE TABLE edges (id TEXT PRIMARY KEY, line TEXT, cameras TEXT NOT NULL DEFAULT '[]', first_seen INTEGER NOT NULL,
      last_seen INTEGER NOT NULL, online INTEGER NOT NULL DEFAULT 0, state TEXT, telemetry TEXT, telemetry_at INTEGER,
      acked_seq INTEGER NOT NULL DEFAULT 0, store_id TEXT NOT NULL DEFAULT '');
    CREATE TABLE edge_stores (edge_id TEXT NOT NULL, store_id TEXT NOT NULL, acked_seq INTEGER NOT NULL DEFAULT 0,
      first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL, PRIMARY KEY (edge_id, store_id)) WITHOUT ROWID;
    CREATE TABLE results (id INTEGER PRIMARY KEY, edge_id TEXT NOT NULL, seq INTEGER NOT NULL, ts INTEGER NOT NULL,
      line TEXT NOT NULL, camera TEXT NOT NULL, source TEXT NOT NULL, frame TEXT, model TEXT NOT NULL, verdict TEXT NOT NULL,
      label TEXT NOT NULL, score REAL NOT NULL, latency_ms REAL NOT NULL, detections TEXT, store_id TEXT NOT NULL DEFAULT '',
      shadow_model TEXT, shadow_verdict TEXT, shadow_label TEXT, shadow_score REAL, shadow_latency_ms REAL, shadow_error TEXT,
      UNIQUE (edge_id, store_id, seq));
    CREATE INDEX results_ts ON results (ts);
    CREATE INDEX results_edge_ts ON results (edge_id, ts);
    PRAGMA user_version = 4;
  `);
  db.prepare('INSERT INTO edges (id, line, first_seen, last_seen, acked_seq, store_id) VALUES (?, ?, ?, ?, ?, ?)').run('e1', 'L1', T0, T0, 2, NEW);
  db.prepare('INSERT INTO edges (id, line, first_seen, last_seen, acked_seq, store_id) VALUES (?, ?, ?, ?, ?, ?)').run('e2', 'L1', T0, T0, 1, '');
  const ack = db.prepare('INSERT INTO edge_stores (edge_id, store_id, acked_seq, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)');
  ack.run('e1', OLD, 3, T0, T0);
  ack.run('e1', NEW, 2, T0, T0);
  // e2's store has rows but no ack row (a file that never had one): it gets one, acked 0.
  const insert = db.prepare(
    `INSERT INTO results (id, edge_id, store_id, seq, ts, line, camera, source, model, verdict, label, score, latency_ms, shadow_model, shadow_label)
     VALUES (?, ?, ?, ?, ?, 'L1', 'cam-1', 'simulated', 'm@1', 'ok', 'good', 0.1, 4.5, ?, ?)`,
  );
  let id = 100;
  for (let seq = 1; seq <= 3; seq++) insert.run(id++, 'e1', OLD, seq, T0 + seq * 1000, null, null);
  for (let seq = 1; seq <= 2; seq++) insert.run(id++, 'e1', NEW, seq, T0 + 10_000 + seq * 1000, 'm@2', 'scratch');
  insert.run(id++, 'e2', '', 1, T0 + 20_000, null, null);
  db.close();

  const store = openSqliteStore({ file, logger: silent });
  t.after(() => store.close());
  // Every row kept under its store, with its id (result cursors stay valid) and its shadow outcome.
  const stored = (await store.listResults({ limit: 100 })).items.map((r) => [r.id, r.edgeId, r.storeId ?? '', r.seq]);
  assert.deepEqual(stored, [
    [105, 'e2', '', 1],
    [104, 'e1', NEW, 2],
    [103, 'e1', NEW, 1],
    [102, 'e1', OLD, 3],
    [101, 'e1', OLD, 2],
    [100, 'e1', OLD, 1],
  ]);
  assert.equal((await store.getResult('e1', OLD, 2))!.ts, T0 + 2000);
  assert.equal((await store.getResult('e1', NEW, 2))!.ts, T0 + 12_000);
  assert.equal(await store.getResult('e1', '', 2), null);
  // Acks per store kept; resends of stored rows are no inserts; new rows go on from the ack.
  assert.equal(await store.storeAckedSeq('e1', OLD), 3);
  assert.equal(await store.storeAckedSeq('e2', ''), 0);
  assert.deepEqual(await store.ingestResults('e1', results(1, 3, { ts: 0 }).map((r) => ({ ...r, ts: T0 + r.seq * 1000, model: 'm@1' })), meta(), OLD), { ackedSeq: 3, inserted: 0, conflicts: 0 });
  assert.deepEqual(await store.ingestResults('e1', results(3, 30), meta(), NEW), { ackedSeq: 30, inserted: 28, conflicts: 0 });
  assert.deepEqual(await store.ingestResults('e2', results(1, 2), meta()), { ackedSeq: 2, inserted: 1, conflicts: 1 });

  const check = new Database(file, { readonly: true });
  t.after(() => check.close());
  assert.equal(check.pragma('user_version', { simple: true }), 5);
  assert.equal(check.pragma('integrity_check', { simple: true }), 'ok');
  const columns = check.prepare('SELECT name FROM pragma_table_info(?)').pluck();
  assert.ok(!columns.all('results').includes('store_id') && columns.all('results').includes('store_key'));
  assert.ok(columns.all('edge_stores').includes('key'));
  const tables = check.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%before%'").pluck().all();
  assert.deepEqual(tables, [], 'the renamed tables are gone');
  const rowShadow = check.prepare('SELECT shadow_model, shadow_label FROM results WHERE id = 103').get();
  assert.deepEqual(rowShadow, { shadow_model: 'm@2', shadow_label: 'scratch' });
});
