/**
 * The review store itself (issue 16, 18), the same cases on SQLite and PostgreSQL: a review per
 * result replaced and removed (answering what it replaced), which results are reviewed, accuracy
 * counts over a time range, and keyset pages in (ts, edge, store, seq) order, text compared byte
 * by byte on both backends.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { openSqliteReviewStore, type ReviewRecord, type ReviewStore } from '../../fleet-manager/review-store.js';
import { REVIEW_PG_MIGRATIONS, pgReviewStore } from '../../fleet-manager/pg/review-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { tempDir } from './helpers.js';

async function open(t: TestContext, backend: StoreBackend): Promise<ReviewStore> {
  if (backend === 'postgres') return pgReviewStore(await pgTestPool(t, REVIEW_PG_MIGRATIONS));
  const store = openSqliteReviewStore({ file: join(await tempDir(t), 'fleet.db') });
  t.after(() => store.close());
  return store;
}

const rec = (edgeId: string, storeId: string, seq: number, ts: number, over: Partial<ReviewRecord> = {}): ReviewRecord => ({
  edgeId, storeId, seq, line: 'L1', model: 'inspect@1', modelVerdict: 'defect', modelLabel: 'scratch', ts,
  review: 'confirmed', verdict: 'defect', label: 'scratch', reviewer: 'user:ines', reviewedAt: ts + 1, ...over,
});

testBackends('a review per result: replaced (answering the one before), read, removed; which results are reviewed', async (t, backend) => {
  const s = await open(t, backend);
  const first = rec('e1', 'sA', 1, 100);
  assert.equal(await s.put(first), null);
  const changed = rec('e1', 'sA', 1, 100, { review: 'false-call', verdict: 'ok', label: 'good', reviewer: 'user:olga', reviewedAt: 500 });
  assert.deepEqual(await s.put(changed), first);
  assert.deepEqual(await s.get(first), changed);
  await s.put(rec('e1', 'sB', 1, 100));
  assert.deepEqual([...(await s.reviewed([first, { edgeId: 'e1', storeId: 'sB', seq: 1 }, { edgeId: 'e1', storeId: 'sA', seq: 2 }]))].sort(), ['e1/sA/1', 'e1/sB/1']);
  assert.deepEqual([...(await s.reviewed([]))], []);
  assert.deepEqual(await s.remove(first), changed);
  assert.equal(await s.remove(first), null);
  assert.equal(await s.get(first), null);
});

testBackends('accuracy per model over [from, to) of one line', async (t, backend) => {
  const s = await open(t, backend);
  await s.put(rec('e1', 'sA', 1, 100));
  await s.put(rec('e1', 'sA', 2, 200, { review: 'false-call', verdict: 'ok', label: 'good' }));
  await s.put(rec('e1', 'sA', 3, 300, { review: 'relabelled', label: 'dent' }));
  await s.put(rec('e1', 'sA', 4, 400, { modelVerdict: 'ok', modelLabel: 'good', review: 'missed-defect', label: 'scratch' }));
  await s.put(rec('e1', 'sA', 5, 500, { modelVerdict: 'ok', modelLabel: 'good', review: 'confirmed', verdict: 'ok', label: 'good', model: 'Inspect@2' }));
  await s.put(rec('e2', 'sA', 1, 100, { line: 'L2' }));
  const zero = { confirmed: 0, confirmedDefects: 0, falseCalls: 0, relabelled: 0, missedDefects: 0 };
  assert.deepEqual(await s.accuracy('L1'), [
    { ...zero, model: 'Inspect@2', reviewed: 1, defectCalls: 0, okCalls: 1, confirmed: 1 },
    { ...zero, model: 'inspect@1', reviewed: 4, defectCalls: 3, okCalls: 1, confirmed: 1, confirmedDefects: 1, falseCalls: 1, relabelled: 1, missedDefects: 1 },
  ]);
  assert.deepEqual(await s.accuracy('L1', 200, 400), [{ ...zero, model: 'inspect@1', reviewed: 2, defectCalls: 2, okCalls: 0, falseCalls: 1, relabelled: 1 }]);
  assert.deepEqual(await s.accuracy('L9'), []);
});

testBackends('a line\'s reviews page by keyset in (ts, edge, store, seq) order, ids compared byte by byte', async (t, backend) => {
  const s = await open(t, backend);
  // Inserted out of order; ties on ts broken by edge ('B' before 'a' byte-wise), store, then seq.
  const keys: [string, string, number, number][] = [
    ['a', 'sA', 1, 200], ['B', 'sA', 2, 200], ['a', 'sB', 1, 200], ['a', 'sA', 2, 200], ['a', 'sA', 9, 100], ['z', 'sA', 1, 300], ['B', 'sA', 1, 50],
  ];
  for (const [e, st, seq, ts] of keys) await s.put(rec(e, st, seq, ts));
  await s.put(rec('a', 'sA', 3, 200, { line: 'L2' }));
  const expected = ['B/sA/1@50', 'a/sA/9@100', 'B/sA/2@200', 'a/sA/1@200', 'a/sA/2@200', 'a/sB/1@200', 'z/sA/1@300'];
  const label = (r: ReviewRecord) => `${r.edgeId}/${r.storeId}/${r.seq}@${r.ts}`;
  const pages: string[][] = [];
  let after: ReviewRecord | undefined;
  for (;;) {
    const page = await s.list({ line: 'L1', limit: 2, ...(after && { after }) });
    if (page.length === 0) break;
    pages.push(page.map(label));
    after = page.at(-1);
  }
  assert.deepEqual(pages, [expected.slice(0, 2), expected.slice(2, 4), expected.slice(4, 6), expected.slice(6)]);
  assert.deepEqual((await s.list({ line: 'L1', limit: 10, from: 100, to: 300 })).map(label), expected.slice(1, 6));
  const mid = (await s.list({ line: 'L1', limit: 10 }))[3]!;
  assert.deepEqual((await s.list({ line: 'L1', limit: 10, to: 300, after: mid })).map(label), expected.slice(4, 6));
});
