/**
 * The rollout gate counters FleetStore keeps at ingest (edge_model_counts, fleet-manager/gate-counts.ts):
 * they equal what the rollout engine used to scan from `results` (the row-id scans this replaced,
 * kept here as the reference), count only rows actually inserted, are filled once from the rows of
 * an older database, and the live baseline (recentDefectRate) reads the edge's newest results.
 * Run against SQLite and PostgreSQL; the schema 3 upgrade is SQLite's own history.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openSqliteStore, type CandidateCounts, type FleetStore, type GateMode } from '../../fleet-manager/store.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { T0, result } from './helpers.js';
import { openFleetStore, sqliteRows, type FleetStoreUnderTest } from './fleet-store-backend.js';
import { testBackends } from '../helpers/store-backends.js';

const silent = pino({ level: 'silent' });
const meta = (receivedAt = T0) => ({ receivedAt });
const EDGES = ['e1', 'e2', 'e3'];

/**
 * The scans the rollout engine ran over `results` before the counters (control-store.ts, schema 3),
 * over every row, written with CASE so that one text serves both databases.
 */
function referenceScan(rows: FleetStoreUnderTest['rows'], model: string, mode: GateMode): Promise<CandidateCounts[]> {
  const one = (cond: string) => `sum(CASE WHEN ${cond} THEN 1 ELSE 0 END)`;
  const sql =
    mode === 'live'
      ? `SELECT edge_id AS "edgeId", count(*) AS frames, ${one("verdict = 'defect'")} AS defects,
                0 AS paired, 0 AS agree, 0 AS "baseDefects", 0 AS errors
         FROM results WHERE model = $1 AND edge_id IN ($2, $3, $4)
         GROUP BY edge_id ORDER BY edge_id`
      : `SELECT edge_id AS "edgeId", count(*) AS frames,
                ${one("shadow_verdict = 'defect'")} AS defects,
                ${one('shadow_verdict IS NOT NULL')} AS paired,
                ${one('shadow_verdict = verdict')} AS agree,
                ${one("shadow_verdict IS NOT NULL AND verdict = 'defect'")} AS "baseDefects",
                ${one('shadow_error IS NOT NULL')} AS errors
         FROM results WHERE shadow_model = $1 AND edge_id IN ($2, $3, $4)
         GROUP BY edge_id ORDER BY edge_id`;
  return rows<CandidateCounts>(sql, [model, ...EDGES]);
}

const QUERIES: [string, GateMode][] = [
  ['m@1', 'live'],
  ['m@2', 'live'],
  ['m@2', 'shadow'],
  ['m@3', 'shadow'],
  ['m@9', 'live'],
  ['m@9', 'shadow'],
];

async function assertMatchesScan(store: FleetStore, rows: FleetStoreUnderTest['rows']): Promise<void> {
  for (const [model, mode] of QUERIES) {
    assert.deepEqual(await store.candidateCounters(EDGES, model, mode), await referenceScan(rows, model, mode), `${model} ${mode}`);
  }
}

/** `rows` on a SQLite file, for the upgrade test. */
function fileRows(t: TestContext, file: string): FleetStoreUnderTest['rows'] {
  const db = new Database(file, { readonly: true });
  t.after(() => db.close());
  return async (sql, params) => sqliteRows(db, sql, params);
}

const defect = { verdict: 'defect', label: 'anomaly', score: 0.9 } as const;
const shadowOk = { model: 'm@2', verdict: 'ok', label: 'good', score: 0.2, latencyMs: 6 } as const;
const shadowDefect = { model: 'm@2', verdict: 'defect', label: 'anomaly', score: 0.8, latencyMs: 6 } as const;
const shadowError = { model: 'm@2', error: 'OSP_ERR_INFERENCE' } as const;

/** e1: 12 results of m@1 (4 defects), 8 of them with a shadow outcome of m@2; e2: live m@2 and a shadow m@3. */
function batchesE1(): ResultRecord[][] {
  return [
    [
      result(1, { model: 'm@1', ...defect, shadow: shadowDefect }), // agree, base defect
      result(2, { model: 'm@1', ...defect, shadow: shadowOk }), // disagree, base defect
      result(3, { model: 'm@1', shadow: shadowDefect }), // disagree
      result(4, { model: 'm@1', shadow: shadowOk }), // agree
    ],
    [
      result(5, { model: 'm@1', ...defect, shadow: shadowError }), // error: not paired
      result(6, { model: 'm@1', shadow: shadowError }),
      result(7, { model: 'm@1', shadow: { ...shadowOk, error: 'OSP_ERR_SLOW' } }), // a verdict and an error
      result(8, { model: 'm@1', shadow: shadowOk }),
    ],
    [result(9, { model: 'm@1', ...defect }), result(10, { model: 'm@1' }), result(11, { model: 'm@1' }), result(12, { model: 'm@1' })],
  ];
}

function batchesE2(): ResultRecord[][] {
  return [
    [result(1, { model: 'm@2', ...defect }), result(2, { model: 'm@2' }), result(3, { model: 'm@2', shadow: { model: 'm@3', verdict: 'ok', label: 'good', score: 0.1 } })],
    [result(4, { model: 'm@2', ...defect, shadow: { model: 'm@3', verdict: 'ok', label: 'good', score: 0.1 } })],
  ];
}

testBackends('gate counters: a mixed batch counts as the row scans did, and a redelivered duplicate counts nothing', async (t, backend) => {
  const { store, rows, open } = await openFleetStore(t, backend);
  const [a, b, c] = batchesE1();
  const [d, e] = batchesE2();
  // Batches of two edges handed in together (SQLite: one transaction, each its own savepoint).
  await Promise.all([store.ingestResults('e1', a!, meta()), store.ingestResults('e2', d!, meta())]);
  await store.ingestResults('e1', b!, meta());
  // Redelivered: a whole batch again, and one overlapping the stored rows (only seq 9..12 are new).
  assert.equal((await store.ingestResults('e1', a!, meta())).inserted, 0);
  assert.equal((await store.ingestResults('e1', [...b!.slice(2), ...c!], meta())).inserted, 4);
  // A conflicting resend (same key, other content) keeps the stored row and counts nothing.
  const conflict = await store.ingestResults('e2', [result(1, { model: 'm@2', shadow: shadowDefect })], meta());
  assert.deepEqual([conflict.inserted, conflict.conflicts], [0, 1]);
  await store.ingestResults('e2', e!, meta());

  // What each figure means, by hand for e1, then against the old scans for everything.
  assert.deepEqual(await store.candidateCounters(['e1'], 'm@1', 'live'), [
    { edgeId: 'e1', frames: 12, defects: 4, paired: 0, agree: 0, baseDefects: 0, errors: 0 },
  ]);
  assert.deepEqual(await store.candidateCounters(['e1', 'e3'], 'm@2', 'shadow'), [
    { edgeId: 'e1', frames: 8, defects: 2, paired: 6, agree: 4, baseDefects: 2, errors: 3 },
  ]);
  assert.deepEqual(await store.candidateCounters(['e1', 'e2'], 'm@2', 'live'), [
    { edgeId: 'e2', frames: 4, defects: 2, paired: 0, agree: 0, baseDefects: 0, errors: 0 },
  ]);
  assert.deepEqual(await store.candidateCounters([], 'm@1', 'live'), []);
  await assertMatchesScan(store, rows);

  // Cumulative across reopening: the counters are stored, not kept in memory.
  await store.close();
  const again = await open();
  await again.ingestResults('e1', [result(13, { model: 'm@1', ...defect, shadow: shadowOk })], meta());
  assert.deepEqual((await again.candidateCounters(['e1'], 'm@1', 'live'))[0], { edgeId: 'e1', frames: 13, defects: 5, paired: 0, agree: 0, baseDefects: 0, errors: 0 });
  await assertMatchesScan(again, rows);
});

testBackends('gate counters: the live baseline is the edge’s newest results by other models', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  // ts order differs from seq order: the newest by ts are seq 1..3.
  await store.ingestResults(
    'e1',
    [
      result(1, { ts: T0 + 90_000, model: 'm@1', ...defect }),
      result(2, { ts: T0 + 80_000, model: 'm@2', ...defect }), // the candidate's own: left out
      result(3, { ts: T0 + 70_000, model: 'm@1' }),
      result(4, { ts: T0 + 10_000, model: 'm@1', ...defect }),
      result(5, { ts: T0 + 20_000, model: 'm@1' }),
    ],
    meta(),
  );
  await store.ingestResults('e2', [result(1, { model: 'm@1', ...defect })], meta());
  assert.deepEqual(await store.recentDefectRate('e1', 'm@2', 2), { frames: 2, defects: 1 });
  assert.deepEqual(await store.recentDefectRate('e1', 'm@2', 3), { frames: 3, defects: 1 });
  assert.deepEqual(await store.recentDefectRate('e1', 'm@2', 100), { frames: 4, defects: 2 });
  assert.deepEqual(await store.recentDefectRate('e1', 'm@1', 100), { frames: 1, defects: 1 });
  assert.deepEqual(await store.recentDefectRate('e3', 'm@2', 100), { frames: 0, defects: 0 });
});

test('gate counters: a database of schema 3 gets them from its rows, once [sqlite]', async (t) => {
  const { store, file: sqliteFile } = await openFleetStore(t, 'sqlite');
  const file = sqliteFile!;
  for (const batch of batchesE1()) await store.ingestResults('e1', batch, meta());
  for (const batch of batchesE2()) await store.ingestResults('e2', batch, meta());
  await store.close();
  // Back to the schema 3 shape: no counters.
  const old = new Database(file);
  old.exec('DROP TABLE edge_model_counts; PRAGMA user_version = 3;');
  old.close();

  const upgraded = openSqliteStore({ file, logger: silent });
  await assertMatchesScan(upgraded, fileRows(t, file));
  const check = new Database(file, { readonly: true });
  t.after(() => check.close());
  assert.equal(check.pragma('user_version', { simple: true }), 5);
  await upgraded.close();
  // Reopened: not filled a second time.
  const reopened = openSqliteStore({ file, logger: silent });
  t.after(() => reopened.close());
  assert.equal((await reopened.candidateCounters(['e1'], 'm@1', 'live'))[0]!.frames, 12);
  await assertMatchesScan(reopened, fileRows(t, file));
});
