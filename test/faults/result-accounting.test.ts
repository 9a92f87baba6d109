/**
 * The fault trials' exactly-once accounting. The wipe case is the regression of issue 13: a
 * wiped disk's unacked tail (answered after the last ack, never delivered) used to be expected
 * at the fleet, so a trial failed whenever the line got a verdict between the sync and the kill.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { accountResults, type ResultRow, type WipedStore } from './result-accounting.js';

const row = (edge: string, store: string, seq: number, verdict = 'ok'): ResultRow & { seq: number } => ({
  key: `${edge}/${store}/${seq}`,
  seq,
  line: 'line-A',
  verdict,
  label: verdict === 'ok' ? 'good' : 'scratch',
});
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('a wipe loses only its unacked tail, counted and listed, and the rest must all be at the fleet', () => {
  // Store s1 was wiped after ack 5 with rows 1..7; rows 6 and 7 never reached the fleet.
  const wiped: WipedStore[] = [{ edge: 'press-1', storeId: 's1', ackedSeq: 5, rows: range(1, 7).map((s) => row('press-1', 's1', s)) }];
  const live = range(1, 3).map((s) => row('press-1', 's2', s));
  const fleet = [...range(1, 5).map((s) => row('press-1', 's1', s)), ...live];
  const answers = new Map([['press-1/s1/7', 'ok'], ['press-1/s2/2', 'ok']]);
  const a = accountResults(live, wiped, fleet, answers);
  assert.deepEqual(a.problems, []);
  assert.deepEqual(a.counts, { produced: 10, atFleet: 8, lost: 0, duplicated: 0, notProduced: 0, lostWithWipe: 2, lostWithWipeSeqs: { 'press-1/s1': [6, 7] } });
});

test('an unacked row of a wiped store that did reach the fleet is not a loss', () => {
  const wiped: WipedStore[] = [{ edge: 'press-1', storeId: 's1', ackedSeq: 1, rows: range(1, 2).map((s) => row('press-1', 's1', s)) }];
  const a = accountResults([], wiped, range(1, 2).map((s) => row('press-1', 's1', s)), new Map());
  assert.deepEqual([a.problems, a.counts.lostWithWipe, a.counts.atFleet], [[], 0, 2]);
});

test('an acked result missing, a duplicate, an invented row, a changed verdict, an answer never stored: each is a failure', () => {
  const wiped: WipedStore[] = [{ edge: 'press-1', storeId: 's1', ackedSeq: 5, rows: range(1, 5).map((s) => row('press-1', 's1', s)) }];
  const live = range(1, 3).map((s) => row('press-2', 's9', s));
  const fleet = [
    ...range(1, 4).map((s) => row('press-1', 's1', s)), // acked 5 missing
    row('press-2', 's9', 1),
    row('press-2', 's9', 1), // twice
    row('press-2', 's9', 2, 'defect'), // the edge said ok
    row('press-2', 's9', 3),
    row('press-2', 's9', 4), // no edge produced it
  ];
  const a = accountResults(live, wiped, fleet, new Map([['press-2/s9/7', 'ok']]));
  assert.deepEqual([a.counts.lost, a.counts.duplicated, a.counts.notProduced, a.counts.lostWithWipe], [1, 1, 1, 0]);
  assert.deepEqual(a.problems, [
    'result press-2/s9/2: fleet has line-A/defect/scratch, edge produced line-A/ok/good',
    '1 produced result(s) missing at the fleet: press-1/s1/5',
    '1 result(s) twice at the fleet',
    '1 result(s) at the fleet that no edge produced: press-2/s9/4',
    'answered press-2/s9/7 ok, stored nothing',
  ]);
});

test('without a wipe nothing may be missing at all', () => {
  const live = range(1, 3).map((s) => row('press-1', 's1', s));
  const a = accountResults(live, [], live.slice(0, 2), new Map());
  assert.deepEqual([a.counts.lost, a.counts.lostWithWipe, a.problems], [1, 0, ['1 produced result(s) missing at the fleet: press-1/s1/3']]);
});
