/**
 * FleetStore on PostgreSQL with several fleet instances (issue 18): two pools on one database, each
 * with its own store, ingest interleaved and overlapping batches of the same edges at once, while
 * one edge gets its line half way. Every result must be stored once, every ack end at the last seq,
 * and line_minutes and the rollout gate counters equal a recount of the rows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { envelope } from '../../protocol/validator.js';
import type { ResultRecord } from '../../protocol/messages.js';
import type { FleetStore, IngestOutcome } from '../../fleet-manager/store.js';
import { UNKNOWN_LINE } from '../../fleet-manager/store.js';
import { T0, captureLogger, result, results } from './helpers.js';
import { openFleetStore } from './fleet-store-backend.js';
import { postgresSkip } from '../helpers/postgres.js';
import { FLEET_PG_SQL } from '../../fleet-manager/pg/fleet-store-pg.js';

const skip = postgresSkip();

/** mulberry32, so a failure replays. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Seqs 1..n of one edge in overlapping batches (each may repeat the end of the one before), shuffled. */
function overlappingBatches(rand: () => number, n: number): ResultRecord[][] {
  const rows = Array.from({ length: n }, (_, i) => {
    const defect = rand() < 0.3;
    return result(i + 1, {
      ts: T0 + Math.floor(rand() * 10 * 60_000),
      verdict: defect ? 'defect' : 'ok',
      label: defect ? (rand() < 0.5 ? 'scratch' : 'dent') : 'good',
      model: rand() < 0.5 ? 'm@1' : 'm@2',
      // Half the frames also ran a shadow candidate: a verdict, an error, or both.
      ...(rand() < 0.5 && {
        shadow: rand() < 0.2 ? { model: 'm@3', error: 'OSP_ERR_SLOW' } : { model: 'm@3', verdict: rand() < 0.3 ? 'defect' : 'ok', label: 'x', score: 0.5 },
      }),
    });
  });
  const batches: ResultRecord[][] = [];
  for (let start = 0; start < n; ) {
    const size = 1 + Math.floor(rand() * 80);
    const back = Math.min(start, Math.floor(rand() * 10));
    batches.push(rows.slice(start - back, start + size));
    start += size;
  }
  for (let i = batches.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [batches[i], batches[j]] = [batches[j]!, batches[i]!];
  }
  return batches;
}

test('two instances ingesting overlapping batches of the same edges at once: every result once, exact acks, line_minutes and gate counters', { skip }, async (t) => {
  const log = captureLogger('info');
  const { store: a, open, rows } = await openFleetStore(t, 'postgres', log.logger);
  const b = await open();
  const rand = prng(18);
  const N = 1500;
  const edges = ['e1', 'e2', 'e3'];
  await a.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1' }), { receivedAt: T0 });
  await b.recordState('e3', envelope('state', 'e3', { online: true, line: 'L1' }), { receivedAt: T0 });
  // e2 reports no line until half its batches are in: its early rows go to the unknown line and move.

  // Each instance stores its share of every edge's batches one after another (an instance serialises
  // an edge), the two instances and the three edges all at once.
  const outcomes = new Map<string, IngestOutcome[]>(edges.map((e) => [e, []]));
  const lanes: Promise<void>[] = [];
  for (const edge of edges) {
    const batches = overlappingBatches(rand, N);
    const shares: [FleetStore, ResultRecord[][]][] = [
      [a, batches.filter((_, i) => i % 2 === 0)],
      [b, batches.filter((_, i) => i % 2 === 1)],
    ];
    for (const [store, share] of shares) {
      lanes.push(
        (async () => {
          for (const [i, batch] of share.entries()) {
            if (edge === 'e2' && store === b && i === Math.floor(share.length / 2)) {
              await store.recordState('e2', envelope('state', 'e2', { online: true, line: 'L1' }), { receivedAt: T0 });
            }
            outcomes.get(edge)!.push(await store.ingestResults(edge, batch, { receivedAt: T0 }));
          }
        })(),
      );
    }
  }
  await Promise.all(lanes);
  // e2's early rows were under the unknown line when its line came, and were moved.
  const moved = log.lines.filter((l) => l.msg === 'line assigned to earlier results');
  assert.equal(moved.length, 1);
  assert.equal(moved[0]!.edgeId, 'e2');
  assert.ok((moved[0]!.results as number) > 0);

  for (const edge of edges) {
    const got = outcomes.get(edge)!;
    assert.equal(got.reduce((n, o) => n + o.inserted, 0), N, `${edge}: each row inserted by exactly one batch`);
    assert.equal(got.reduce((n, o) => n + o.conflicts, 0), 0, `${edge}: overlaps are duplicates, not conflicts`);
    assert.equal(Math.max(...got.map((o) => o.ackedSeq)), N, `${edge}: some batch acked the last seq`);
    assert.equal(await a.storeAckedSeq(edge, ''), N);
    assert.equal((await b.getEdge(edge))!.ackedSeq, N);
    const [count] = await rows<{ n: number; seqs: number; lo: number; hi: number }>(
      'SELECT count(*) AS n, count(DISTINCT seq) AS seqs, min(seq) AS lo, max(seq) AS hi FROM results WHERE edge_id = $1',
      [edge],
    );
    assert.deepEqual(count, { n: N, seqs: N, lo: 1, hi: N });
  }
  const aggregate = await rows('SELECT line, minute, verdict, label, model, sum(count) AS count FROM line_minutes GROUP BY 1, 2, 3, 4, 5 HAVING sum(count) <> 0 ORDER BY 1, 2, 3, 4, 5');
  const recount = await rows(
    `SELECT line, (ts / 60000) * 60000 AS minute, verdict, label, model, count(*) AS count
     FROM results GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5`,
  );
  assert.ok(aggregate.length >= 40, 'the edges share many line_minutes groups');
  assert.deepEqual(aggregate, recount);
  assert.deepEqual(await rows('SELECT DISTINCT line FROM results'), [{ line: 'L1' }], `no row left under ${UNKNOWN_LINE}`);
  for (const [model, mode] of [['m@1', 'live'], ['m@2', 'live'], ['m@3', 'shadow']] as const) {
    const recounted = await rows(
      mode === 'live'
        ? `SELECT edge_id AS "edgeId", count(*) AS frames, count(*) FILTER (WHERE verdict = 'defect') AS defects,
             0 AS paired, 0 AS agree, 0 AS "baseDefects", 0 AS errors
           FROM results WHERE model = $1 GROUP BY 1 ORDER BY 1`
        : `SELECT edge_id AS "edgeId", count(*) AS frames, count(*) FILTER (WHERE shadow_verdict = 'defect') AS defects,
             count(shadow_verdict) AS paired, count(*) FILTER (WHERE shadow_verdict = verdict) AS agree,
             count(*) FILTER (WHERE shadow_verdict IS NOT NULL AND verdict = 'defect') AS "baseDefects", count(shadow_error) AS errors
           FROM results WHERE shadow_model = $1 GROUP BY 1 ORDER BY 1`,
      [model],
    );
    assert.equal(recounted.length, 3);
    assert.deepEqual(await a.candidateCounters(edges, model, mode), recounted, `${model} ${mode}`);
  }
  const stats = await b.lineStats('L1', T0 - 60_000, T0 + 3_600_000, 3_600_000);
  assert.equal(stats.reduce((n, r) => n + r.count, 0), 3 * N);
});

test('the ack walk probes the index seq by seq: it never reads the edge\'s other rows, even on a table without statistics yet', { skip }, async (t) => {
  const { store, rows } = await openFleetStore(t, 'postgres');
  // 2000 rows of one edge in a fresh table (no ANALYZE yet), as a new fleet's first hours are.
  for (let from = 1; from <= 2000; from += 500) await store.ingestResults('e1', results(from, from + 499), { receivedAt: T0 });
  const [{ store_id: storeId }] = await rows<{ store_id: string }>('SELECT store_id FROM edge_stores WHERE edge_id = $1', ['e1']);
  const [{ 'QUERY PLAN': plan }] = await rows<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${FLEET_PG_SQL.walkAndAck}`, ['e1', storeId, 1500, true]);
  const nodes: string[] = [];
  const walk = (n: { 'Node Type': string; Plans?: unknown[] }) => {
    nodes.push(n['Node Type']);
    for (const c of n.Plans ?? []) walk(c as typeof n);
  };
  walk((plan as [{ Plan: { 'Node Type': string } }])[0].Plan);
  // As a join, the planner hashed every row of the edge on each batch (2.5× slower ingest with two instances).
  assert.ok(!nodes.some((n) => n.startsWith('Hash') || n === 'Seq Scan'), `plan: ${nodes.join(' > ')}`);
  assert.ok(nodes.includes('Index Only Scan') || nodes.includes('Index Scan'), `plan: ${nodes.join(' > ')}`);
});
