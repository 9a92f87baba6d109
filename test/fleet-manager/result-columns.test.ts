/** A result batch as columns (fleet-manager/result-columns.ts): what crosses to the storage thread comes back equal. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { packResults, unpackResults } from '../../fleet-manager/result-columns.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { result } from './helpers.js';

test('result columns: every shape of record comes back deep-equal, in order, through structured clone', () => {
  const rows: ResultRecord[] = [
    result(1),
    result(2, { frame: 'a.png', score: -0, latencyMs: 0.1 + 0.2 }),
    result(3, { detections: [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }] }),
    result(4, { shadow: { model: 'cand@2', verdict: 'defect', label: 'dent', score: 0.7, latencyMs: 3 } }),
    { ...result(5), frame: undefined } as ResultRecord,
    result(6, { ts: 8_640_000_000_000, seq: 2 ** 53 - 1, verdict: 'defect', label: 'ü-label', camera: 'c'.repeat(64) }),
  ];
  const back = unpackResults(structuredClone(packResults(rows)));
  assert.deepStrictEqual(back, rows);
  assert.ok('frame' in back[4]! && !('frame' in back[0]!));
  assert.ok(Object.is(back[1]!.score, -0));
  assert.deepStrictEqual(unpackResults(structuredClone(packResults([]))), []);
});
