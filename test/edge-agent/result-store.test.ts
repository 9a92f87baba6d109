import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { openResultStore, type NewResult } from '../../edge-agent/result-store.js';
import { check } from '../../protocol/validator.js';
import { ResultRecordSchema } from '../../protocol/messages.js';
import { tempDir } from './fixtures.js';

const result = (i: number, extra: Partial<NewResult> = {}): NewResult => ({
  ts: 1_700_000_000_000 + i,
  camera: 'cam1',
  source: 'http',
  model: 'demo-anomaly@1.0.0',
  verdict: i % 3 === 0 ? 'defect' : 'ok',
  label: i % 3 === 0 ? 'anomaly' : 'good',
  score: i / 10,
  latencyMs: 4.5,
  ...extra,
});

test('append assigns strictly increasing seqs and pendingAfter pages through them', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  t.after(() => store.close());
  assert.equal(store.lastSeq, 0);
  assert.equal(store.ackedSeq, 0);
  const seqs = [1, 2, 3, 4, 5].map((i) =>
    store.append(result(i, i === 2 ? { frame: 'part-2.jpg', detections: [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }] } : {})),
  );
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  assert.equal(store.lastSeq, 5);
  assert.equal(store.pending, 5);

  const page = store.pendingAfter(1, 2);
  assert.deepEqual(
    page.map((r) => r.seq),
    [2, 3],
  );
  assert.deepEqual(page[0], { seq: 2, ...result(2), frame: 'part-2.jpg', detections: [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }] });
  assert.equal('frame' in page[1]!, false, 'absent optional fields stay absent');
  // Records come back exactly as the protocol ships them.
  for (const r of store.pendingAfter(0, 100)) assert.ok(check(ResultRecordSchema, r).ok);
  assert.deepEqual(store.pendingAfter(5, 10), []);
  assert.deepEqual(store.counts(), { results: 5, defects: 1, pending: 5 });
});

test('acks never move backwards nor past the last seq, and survive a reopen', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  for (let i = 1; i <= 10; i++) store.append(result(i));
  assert.equal(store.markAcked(4), 4);
  assert.equal(store.markAcked(2), 4, 'a stale ack is ignored');
  assert.equal(store.ackedSeq, 4);
  assert.equal(store.pending, 6);
  assert.deepEqual(
    store.pendingAfter(store.ackedSeq, 3).map((r) => r.seq),
    [5, 6, 7],
  );
  assert.equal(store.markAcked(99), 10, 'an ack past lastSeq is clamped');
  assert.equal(store.pending, 0);
  assert.deepEqual(store.counts(), { results: 10, defects: 3, pending: 0 });
  store.close();
  store.close(); // idempotent

  const again = openResultStore(dir);
  t.after(() => again.close());
  assert.equal(again.lastSeq, 10);
  assert.equal(again.ackedSeq, 10);
  assert.equal(again.append(result(11)), 11);
});

test('seqs are never reused, even after rows are deleted (retention)', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  for (let i = 1; i <= 3; i++) store.append(result(i));
  store.markAcked(3);
  store.close();
  // Retention (issue 5) deletes acked rows; here a second connection does it.
  const db = new Database(path.join(dir, 'results.db'));
  db.prepare('DELETE FROM results').run();
  db.close();
  const again = openResultStore(dir);
  t.after(() => again.close());
  assert.equal(again.lastSeq, 3);
  assert.equal(again.append(result(4)), 4);
});

test('the file is in WAL mode with synchronous FULL', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  t.after(() => store.close());
  assert.deepEqual(store.settings, { journalMode: 'wal', synchronous: 'FULL' });
  store.append(result(1));
  // WAL is a property of the file: another connection sees it too.
  const db = new Database(store.file, { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
});

test('batch: appends share one commit; a batch that fails stores none of its rows and leaves the counters as they were', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  t.after(() => store.close());
  store.append(result(1));
  const seqs = store.batch(() => [2, 3, 4].map((i) => store.append(result(i))));
  assert.deepEqual(seqs, [2, 3, 4]);
  assert.equal(store.lastSeq, 4);
  // Committed: another connection sees the rows.
  const other = new Database(path.join(dir, 'results.db'), { readonly: true });
  t.after(() => other.close());
  assert.equal((other.prepare('SELECT count(*) AS n FROM results').get() as { n: number }).n, 4);

  assert.throws(
    () =>
      store.batch(() => {
        store.append(result(5));
        store.append(result(6));
        throw new Error('disk on fire');
      }),
    /disk on fire/,
  );
  assert.equal(store.lastSeq, 4, 'lastSeq restored');
  assert.equal(store.usage().rows, 4, 'row count restored');
  assert.equal(store.pending, 4);
  assert.deepEqual(store.pendingAfter(0, 10).map((r) => r.seq), [1, 2, 3, 4], 'nothing of the failed batch is stored');
  // AUTOINCREMENT was rolled back with it: the next seq is 5, no gap.
  assert.equal(store.append(result(7)), 5);
});
