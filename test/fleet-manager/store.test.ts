import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openSqliteStore, UNKNOWN_LINE } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import { T0, result, results, tempDir } from './helpers.js';

const silent = pino({ level: 'silent' });
const meta = (receivedAt = T0) => ({ receivedAt });

async function openStore(t: import('node:test').TestContext) {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteStore({ file, logger: silent });
  t.after(() => store.close());
  return { store, file };
}

test('store: ack is the highest contiguous seq and never skips a gap', async (t) => {
  const { store } = await openStore(t);
  assert.deepEqual(await store.ingestResults('e1', results(11, 20), meta()), { ackedSeq: 0, inserted: 10, conflicts: 0 });
  assert.deepEqual(await store.ingestResults('e1', results(21, 25), meta()), { ackedSeq: 0, inserted: 5, conflicts: 0 });
  // Filling 1..10 closes the gap: the walk goes on through 11..25.
  assert.deepEqual(await store.ingestResults('e1', results(1, 10), meta()), { ackedSeq: 25, inserted: 10, conflicts: 0 });
  // A duplicate batch inserts nothing and acks the same.
  assert.deepEqual(await store.ingestResults('e1', results(1, 10), meta()), { ackedSeq: 25, inserted: 0, conflicts: 0 });
  // A batch overlapping the ack stores only its new rows.
  assert.deepEqual(await store.ingestResults('e1', results(20, 30), meta()), { ackedSeq: 30, inserted: 5, conflicts: 0 });
  // Another edge has its own sequence.
  assert.deepEqual(await store.ingestResults('e2', results(1, 3), meta()), { ackedSeq: 3, inserted: 3, conflicts: 0 });
  const edges = await store.listEdges();
  assert.deepEqual(edges.map((e) => [e.id, e.ackedSeq]), [['e1', 30], ['e2', 3]]);
});

test('store: a batch stored is one transaction and survives reopening', async (t) => {
  const { store, file } = await openStore(t);
  await store.ingestResults('e1', [result(1), result(2, { detections: [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }], frame: 'a.png' })], meta());
  await store.close();
  const again = openSqliteStore({ file, logger: silent });
  t.after(() => again.close());
  assert.equal((await again.listEdges())[0]!.ackedSeq, 2);
  const page = await again.listResults({ limit: 10 });
  assert.deepEqual(page.items[0]!.detections, [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }]);
  assert.equal(page.items[0]!.frame, 'a.png');
  assert.equal('frame' in page.items[1]!, false);
  const db = new Database(file, { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  const indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results'").pluck().all();
  assert.deepEqual(indexes.filter((i) => !String(i).startsWith('sqlite_')).sort(), ['results_edge_ts', 'results_ts']);
  assert.equal(db.prepare('SELECT sum(count) FROM line_minutes').pluck().get(), 2);
});

test('store: results before any state get the unknown line, fixed when the line is reported', async (t) => {
  const { store } = await openStore(t);
  await store.ingestResults('e1', results(1, 2), meta());
  assert.deepEqual((await store.listResults({ limit: 10 })).items.map((r) => r.line), [UNKNOWN_LINE, UNKNOWN_LINE]);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1', cameras: ['c1'] }), meta(T0 + 5));
  await store.ingestResults('e1', results(3, 3), meta());
  assert.deepEqual((await store.listResults({ limit: 10 })).items.map((r) => r.line), ['L1', 'L1', 'L1']);
  assert.deepEqual(await store.listLines(), [{ line: 'L1', edges: 1, online: 1 }]);
  assert.equal(await store.hasLine('L1'), true);
  assert.equal(await store.hasLine('L9'), false);
});

test('store: a last-will state marks offline and keeps what the edge reported before', async (t) => {
  const { store } = await openStore(t);
  const active = { name: 'm', version: '2' };
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1', cameras: ['c1', 'c2'], active }), meta(T0));
  await store.recordState('e1', envelope('state', 'e1', { online: false }), meta(T0 + 1000));
  const [edge] = await store.listEdges();
  assert.equal(edge!.online, false);
  assert.equal(edge!.line, 'L1');
  assert.deepEqual(edge!.cameras, ['c1', 'c2']);
  assert.deepEqual(edge!.state?.active, active);
  assert.equal(edge!.firstSeen, T0);
  assert.equal(edge!.lastSeen, T0 + 1000);
  // A replayed retained state never moves lastSeen past what the edge itself stamped.
  await store.recordState('e1', envelope('state', 'e1', { online: false }, T0 + 500), { receivedAt: T0 + 9000, replay: true });
  assert.equal((await store.listEdges())[0]!.lastSeen, T0 + 1000);
});

test('store: telemetry and events make an edge appear', async (t) => {
  const { store } = await openStore(t);
  const telemetry = envelope('telemetry', 'e2', {
    intervalMs: 5000, frames: 50, defects: 2, failed: 0, failures: {}, fps: 10,
    latencyMs: { count: 50, p50: 3, p95: 7, p99: 9, max: 12 }, queueDepth: 0, lastSeq: 50, ackedSeq: 40,
    pendingResults: 10, cpuPercent: 30, rssBytes: 1e8, perModel: {},
  });
  await store.recordTelemetry('e2', telemetry, meta(T0));
  await store.recordEvent('e3', envelope('events', 'e3', { kind: 'started', level: 'info', message: 'hello' }), meta(T0));
  const edges = await store.listEdges();
  assert.deepEqual(edges.map((e) => [e.id, e.line, e.online]), [['e2', null, false], ['e3', null, false]]);
  assert.deepEqual(edges[0]!.telemetry, telemetry);
  assert.equal(edges[0]!.telemetryAt, T0);
  assert.deepEqual(await store.listLines(), [{ line: UNKNOWN_LINE, edges: 2, online: 0 }]);
});

test('store: ping fails once closed', async (t) => {
  const { store } = await openStore(t);
  await store.ping();
  await store.close();
  await assert.rejects(store.ping());
  await store.close(); // idempotent
});

test('store: batches handed in together beyond one group commit are all stored and answered, also when closing at once', async (t) => {
  const { store, file } = await openStore(t);
  // 100 batches of 500: more rows than one group takes (40,000), so the rest go in later groups.
  const edges = Array.from({ length: 100 }, (_, i) => `e${i}`);
  const calls = edges.map((e) => store.ingestResults(e, results(1, 500), meta()));
  const closing = store.close();
  assert.deepEqual(await Promise.all(calls), edges.map(() => ({ ackedSeq: 500, inserted: 500, conflicts: 0 })));
  await closing;
  const again = openSqliteStore({ file, logger: silent });
  t.after(() => again.close());
  assert.deepEqual((await again.listEdges()).map((e) => e.ackedSeq), edges.map(() => 500));
});
