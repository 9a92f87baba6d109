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
  assert.equal(check.pragma('user_version', { simple: true }), 4);
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
