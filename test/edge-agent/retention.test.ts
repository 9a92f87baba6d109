/**
 * The edge store's identity, retention and quota (issue 5): real SQLite files in a temp dir.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { openResultStore, type NewResult } from '../../edge-agent/result-store.js';
import { createRetention } from '../../edge-agent/retention.js';
import { createRateLimiter } from '../../edge-agent/rate-limiter.js';
import { tempDir, testLogger } from './fixtures.js';

const T0 = 1_700_000_000_000;
const result = (i: number, extra: Partial<NewResult> = {}): NewResult => ({
  ts: T0 + i * 1000,
  camera: 'cam1',
  source: 'http',
  model: 'demo-anomaly@1.0.0',
  verdict: i % 4 === 0 ? 'defect' : 'ok',
  label: i % 4 === 0 ? 'anomaly' : 'good',
  score: i / 100,
  latencyMs: 4.5,
  ...extra,
});

test('a new database gets a random storeId that survives reopening; a wiped one gets another', async (t) => {
  const dir = await tempDir(t);
  const first = openResultStore(dir);
  const id = first.storeId;
  assert.match(id ?? '', /^[A-Za-z0-9_-]{16}$/);
  first.append(result(1));
  first.close();

  const again = openResultStore(dir);
  assert.equal(again.storeId, id);
  assert.equal(again.append(result(2)), 2);
  again.close();

  for (const f of ['results.db', 'results.db-wal', 'results.db-shm']) await rm(path.join(dir, f), { force: true });
  const wiped = openResultStore(dir);
  t.after(() => wiped.close());
  assert.notEqual(wiped.storeId, undefined);
  assert.notEqual(wiped.storeId, id);
  assert.equal(wiped.append(result(3)), 1, 'seqs restart: that is why the store needs an identity');
});

test('a database that held results before storeIds keeps none (its rows were sent without one)', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  store.append(result(1));
  store.close();
  // What an older build left behind: no store_info table.
  const db = new Database(path.join(dir, 'results.db'));
  db.exec('DROP TABLE store_info');
  db.close();
  const reopened = openResultStore(dir);
  t.after(() => reopened.close());
  assert.equal(reopened.storeId, undefined);
  assert.equal(reopened.append(result(2)), 2);
});

test('prune deletes acknowledged rows only, oldest first, by age; usage follows', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  t.after(() => store.close());
  for (let i = 1; i <= 100; i++) store.append(result(i));
  assert.equal(store.usage().rows, 100);
  const bytesFull = store.usage().bytes;
  assert.ok(bytesFull > 0);

  assert.equal(store.prune({ limit: 1000 }), 0, 'nothing acked: nothing deleted');
  store.markAcked(60);
  // Older than result 30's ts: rows 1..29.
  assert.equal(store.prune({ beforeTs: T0 + 30 * 1000, limit: 1000 }), 29);
  assert.equal(store.usage().rows, 71);
  // Any age, but never past the ack.
  assert.equal(store.prune({ limit: 1000 }), 31);
  assert.deepEqual(store.pendingAfter(0, 1000).map((r) => r.seq), Array.from({ length: 40 }, (_, i) => 61 + i));
  assert.equal(store.usage().rows, 40);
  // Seqs are never reused after deletes.
  assert.equal(store.append(result(101)), 101);
});

test('quota: the line keeps its verdicts, results past the quota are counted not stored, storing resumes with room', async (t) => {
  const dir = await tempDir(t);
  const raw = openResultStore(dir);
  t.after(() => raw.close());
  const changes: { full: boolean; notStored: number }[] = [];
  const retention = createRetention({
    store: raw,
    config: { ackedMaxAgeMs: 3_600_000, maxBytes: 1 << 30, maxRows: 50, intervalMs: 60_000 },
    logger: testLogger(),
    onQuota: (full, f) => changes.push({ full, notStored: f.notStored }),
  });
  t.after(() => retention.close());
  const store = retention.store;

  const seqs: number[] = [];
  for (let i = 1; i <= 60; i++) seqs.push(store.append(result(i)));
  assert.deepEqual(seqs.slice(0, 50), Array.from({ length: 50 }, (_, i) => i + 1));
  assert.deepEqual(seqs.slice(50), Array(10).fill(0), 'past the quota: answered, not stored');
  assert.equal(retention.full, true);
  assert.deepEqual(retention.alarms(), ['result-quota']);
  assert.deepEqual(retention.stats().notStored, 10);
  assert.deepEqual(retention.stats().notStoredDefects, 3, 'results 52, 56, 60 were defects');
  assert.deepEqual(changes, [{ full: true, notStored: 0 }]);
  assert.equal(raw.lastSeq, 50);

  // The fleet acks 20: acked rows make room, oldest first; storing resumes below 95 %.
  raw.markAcked(20);
  const next = store.append(result(61));
  assert.equal(next, 51, 'seqs stay gap-free: the fleet\'s contiguous ack keeps working');
  assert.equal(retention.full, false);
  assert.deepEqual(retention.alarms(), []);
  assert.deepEqual(changes.at(-1), { full: false, notStored: 10 });
  assert.equal(raw.pendingAfter(0, 1000)[0]!.seq > 1, true, 'acked rows went first');
  assert.ok(raw.pendingAfter(0, 1000).every((r) => r.seq > 0));
  // No unacknowledged row was ever deleted.
  assert.deepEqual(raw.pendingAfter(20, 1000).map((r) => r.seq), Array.from({ length: 31 }, (_, i) => 21 + i));
});

test('the byte quota counts live pages; age-based pruning runs in chunks off the frame path', async (t) => {
  const dir = await tempDir(t);
  const raw = openResultStore(dir);
  t.after(() => raw.close());
  let now = T0 + 10_000 * 1000;
  const retention = createRetention({
    store: raw,
    config: { ackedMaxAgeMs: 1000 * 1000, maxBytes: 1 << 20, maxRows: 0, intervalMs: 60_000 },
    logger: testLogger(),
    now: () => now,
  });
  t.after(() => retention.close());
  const frame = 'x'.repeat(400);
  let stored = 0;
  for (let i = 1; i <= 5000 && !retention.full; i++) if (retention.store.append(result(i, { frame })) > 0) stored++;
  assert.equal(retention.full, true, 'a 1 MiB quota fills with ~2000 rows of ~500 bytes');
  assert.ok(stored > 1000 && stored < 5000, `stored ${stored}`);
  assert.ok(raw.usage().bytes >= (1 << 20) * 0.95);

  raw.markAcked(raw.lastSeq);
  now = T0 + (stored + 2000) * 1000; // every row is now older than ackedMaxAgeMs
  const deleted = await retention.prune();
  assert.equal(deleted, stored);
  assert.equal(raw.usage().rows, 0);
  assert.ok(retention.store.append(result(1, { frame })) > 0);
  assert.equal(retention.full, false);
});

test('the catch-up rate limiter holds the average rate without splitting batches', () => {
  let now = 0;
  const limiter = createRateLimiter(1000, 500, () => now);
  assert.equal(limiter.delayMs(), 0);
  limiter.take(500);
  assert.equal(limiter.delayMs(), 0, 'the burst covers the first batch');
  limiter.take(500);
  assert.equal(limiter.delayMs(), 500, 'in debt by 500 results at 1000/s');
  now = 500;
  assert.equal(limiter.delayMs(), 0);
  const unlimited = createRateLimiter(0);
  unlimited.take(1e9);
  assert.equal(unlimited.delayMs(), 0);
});
