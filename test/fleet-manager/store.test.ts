import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { UNKNOWN_LINE } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import { T0, result, results } from './helpers.js';
import { openFleetStore } from './fleet-store-backend.js';
import { testBackends } from '../helpers/store-backends.js';

const meta = (receivedAt = T0) => ({ receivedAt });

testBackends('store: ack is the highest contiguous seq and never skips a gap', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
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

testBackends('store: a seq twice in one batch is stored once; a copy with other content is a conflict', async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  const batch = [result(1), result(2), result(2, { ts: T0 + 99_000 }), result(3), result(3)];
  assert.deepEqual(await store.ingestResults('e1', batch, meta()), { ackedSeq: 3, inserted: 3, conflicts: 1 });
  assert.equal((await store.getResult('e1', '', 2))!.ts, T0 + 2000, 'the first copy is the one kept');
  assert.deepEqual(await rows('SELECT sum(count) AS n FROM line_minutes'), [{ n: 3 }]);
});

// SQLite writes a batch of new rows 20 per INSERT (fleet-manager/result-insert.ts) and falls back
// to one row at a time when a chunk inserts fewer rows than it holds; these batches are long
// enough to take that path, with a remainder after the last whole chunk.
testBackends('store: long batches: new rows, rows already there, a seq twice, and shadow outcomes all land as row by row', async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  // 30..35 are stored first, 33 of them another frame: the long batch's second chunk falls short.
  await store.ingestResults('e1', [...results(30, 32), result(33, { ts: T0 + 5 }), ...results(34, 35)], meta());
  assert.deepEqual(await store.ingestResults('e1', results(1, 50), meta()), { ackedSeq: 50, inserted: 44, conflicts: 1 });
  assert.equal((await store.getResult('e1', '', 33))!.ts, T0 + 5, 'the stored row is kept');

  // A seq twice in a batch of new rows: stored once, the copy with other content a conflict.
  const twice = [...results(1, 24), result(24, { label: 'other' }), ...results(25, 41)];
  assert.deepEqual(await store.ingestResults('e2', twice, meta()), { ackedSeq: 41, inserted: 41, conflicts: 1 });

  // All new, shadow outcomes in some chunks only and in the remainder, a detection in another.
  const shadow = { model: 'm@2', verdict: 'defect' as const, label: 'scratch', score: 0.75, latencyMs: 6.5 };
  const mixed = results(1, 45).map((r) =>
    r.seq === 7 || r.seq === 43 ? { ...r, shadow } : r.seq === 22 ? { ...r, verdict: 'defect' as const, label: 'dent', detections: [{ label: 'dent', score: 0.9, box: [1, 2, 3, 4] as [number, number, number, number] }] } : r,
  );
  assert.deepEqual(await store.ingestResults('e3', mixed, meta()), { ackedSeq: 45, inserted: 45, conflicts: 0 });
  assert.deepEqual(
    await rows("SELECT seq, shadow_model, shadow_label, shadow_score FROM results WHERE edge_id = 'e3' AND shadow_model IS NOT NULL ORDER BY seq"),
    [7, 43].map((seq) => ({ seq, shadow_model: 'm@2', shadow_label: 'scratch', shadow_score: 0.75 })),
  );
  assert.deepEqual((await store.getResult('e3', '', 22))!.detections, [{ label: 'dent', score: 0.9, box: [1, 2, 3, 4] }]);
  assert.equal((await store.getResult('e3', '', 45))!.label, 'good');

  // Every stored row counted once in the line statistics and the gate counters.
  assert.deepEqual(await rows('SELECT count(*) AS n FROM results'), [{ n: 6 + 44 + 41 + 45 }]);
  assert.deepEqual(await rows('SELECT sum(count) AS n FROM line_minutes'), [{ n: 6 + 44 + 41 + 45 }]);
  const counters = await store.candidateCounters(['e1', 'e2', 'e3'], 'builtin-anomaly@1', 'live');
  assert.deepEqual(counters.map((c) => [c.edgeId, c.frames, c.defects]), [['e1', 50, 0], ['e2', 41, 0], ['e3', 45, 1]]);
});

testBackends('store: text holding NUL (a label, a camera, a shadow label, a detection) is stored and acked; its resend is no conflict', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  const odd = (s: string) => `${s}\u0000x`;
  const batch = [
    result(1),
    result(2, { camera: odd('cam'), label: odd('scratch'), verdict: 'defect', frame: odd('f.png'), detections: [{ label: odd('dent'), score: 0.5, box: [1, 2, 3, 4] }] }),
    result(3, { shadow: { model: odd('m@2'), verdict: 'ok', label: odd('good'), error: odd('e') } }),
  ];
  // On PostgreSQL, whose text cannot hold NUL, this batch failed on every resend and stalled the edge.
  assert.deepEqual(await store.ingestResults('e1', batch, meta()), { ackedSeq: 3, inserted: 3, conflicts: 0 });
  assert.deepEqual(await store.ingestResults('e1', batch, meta()), { ackedSeq: 3, inserted: 0, conflicts: 0 }, 'the same batch again');
  const stored = (await store.getResult('e1', '', 2))!;
  // SQLite keeps the NUL; PostgreSQL stores U+FFFD in its place.
  const kept = backend === 'sqlite' ? '\u0000' : '\ufffd';
  assert.equal(stored.label, `scratch${kept}x`);
  assert.equal(stored.camera, `cam${kept}x`);
  assert.equal(stored.detections![0]!.label, `dent${kept}x`);
});

testBackends("store: an event's message and a state's line holding NUL are stored, not dropped", async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L\u00001', cameras: ['c\u00001'] }), meta(T0));
  await store.recordEvent('e1', envelope('events', 'e1', { kind: 'input-rejected', level: 'warn', message: 'bad file a\u0000b.png', data: { file: 'a\u0000b.png' } }), meta(T0 + 1));
  const kept = backend === 'sqlite' ? '\u0000' : '\ufffd';
  const edge = (await store.getEdge('e1'))!;
  assert.equal(edge.line, `L${kept}1`);
  const [ev] = await store.listEvents('e1', 10);
  assert.equal(ev!.message, `bad file a${kept}b.png`);
  assert.deepEqual(ev!.data, { file: 'a\u0000b.png' }, 'data is JSON text: its NUL is escaped, and comes back as sent');
});

testBackends("store: a shadow candidate's outcome is kept in its columns", async (t, backend) => {
  const { store, rows } = await openFleetStore(t, backend);
  const shadow = { model: 'm@2', verdict: 'defect' as const, label: 'scratch', score: 0.75, latencyMs: 6.5 };
  await store.ingestResults('e1', [result(1, { shadow }), result(2, { shadow: { model: 'm@2', error: 'timeout' } }), result(3)], meta());
  assert.deepEqual(
    await rows('SELECT seq, shadow_model, shadow_verdict, shadow_label, shadow_score, shadow_latency_ms, shadow_error FROM results ORDER BY seq'),
    [
      { seq: 1, shadow_model: 'm@2', shadow_verdict: 'defect', shadow_label: 'scratch', shadow_score: 0.75, shadow_latency_ms: 6.5, shadow_error: null },
      { seq: 2, shadow_model: 'm@2', shadow_verdict: null, shadow_label: null, shadow_score: null, shadow_latency_ms: null, shadow_error: 'timeout' },
      { seq: 3, shadow_model: null, shadow_verdict: null, shadow_label: null, shadow_score: null, shadow_latency_ms: null, shadow_error: null },
    ],
  );
});

testBackends('store: a batch stored is one transaction and survives reopening', async (t, backend) => {
  const { store, file, open, rows } = await openFleetStore(t, backend);
  await store.ingestResults('e1', [result(1), result(2, { detections: [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }], frame: 'a.png' })], meta());
  await store.close();
  const again = await open();
  assert.equal((await again.listEdges())[0]!.ackedSeq, 2);
  const page = await again.listResults({ limit: 10 });
  assert.deepEqual(page.items[0]!.detections, [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }]);
  assert.equal(page.items[0]!.frame, 'a.png');
  assert.equal('frame' in page.items[1]!, false);
  assert.deepEqual(await rows('SELECT sum(count) AS n FROM line_minutes'), [{ n: 2 }]);
  if (backend !== 'sqlite') return;
  const db = new Database(file!, { readonly: true });
  t.after(() => db.close());
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  const indexes = db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'results'").pluck().all();
  assert.deepEqual(indexes.filter((i) => !String(i).startsWith('sqlite_')).sort(), ['results_edge_ts', 'results_ts']);
});

testBackends('store: results before any state get the unknown line, fixed when the line is reported', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.ingestResults('e1', results(1, 2), meta());
  assert.deepEqual((await store.listResults({ limit: 10 })).items.map((r) => r.line), [UNKNOWN_LINE, UNKNOWN_LINE]);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1', cameras: ['c1'] }), meta(T0 + 5));
  await store.ingestResults('e1', results(3, 3), meta());
  assert.deepEqual((await store.listResults({ limit: 10 })).items.map((r) => r.line), ['L1', 'L1', 'L1']);
  assert.deepEqual(await store.listLines(), [{ line: 'L1', edges: 1, online: 1 }]);
  assert.equal(await store.hasLine('L1'), true);
  assert.equal(await store.hasLine('L9'), false);
});

testBackends('store: a last-will state marks offline and keeps what the edge reported before', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
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

testBackends('store: telemetry and events make an edge appear', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
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

testBackends('store: listing filters and pages, model versions, events newest first, all offline', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1' }), meta());
  await store.recordState('e2', envelope('state', 'e2', { online: true, line: 'L2' }), meta());
  // Two results share each ts, so paging must order by arrival too.
  const rows = results(1, 40).map((r) => ({
    ...r,
    ts: T0 + Math.floor(r.seq / 2) * 30_000 + 17,
    verdict: r.seq % 4 === 0 ? ('defect' as const) : ('ok' as const),
    label: r.seq % 4 === 0 ? 'scratch' : 'good',
    model: r.seq <= 25 ? 'm@1' : 'm@2',
  }));
  await store.ingestResults('e1', rows.slice(0, 30), meta());
  await store.ingestResults('e2', rows.slice(30), meta());
  const all = async (q: Omit<Parameters<typeof store.listResults>[0], 'limit' | 'after'>) => {
    const seen: string[] = [];
    let page = await store.listResults({ ...q, limit: 7 });
    for (;;) {
      seen.push(...page.items.map((r) => `${r.edgeId}/${r.seq}`));
      if (!page.next) return seen;
      page = await store.listResults({ ...q, limit: 7, after: page.next });
    }
  };
  const expect = (keep: (r: (typeof rows)[number], edge: string) => boolean) =>
    rows
      .map((r, i) => ({ r, edge: i < 30 ? 'e1' : 'e2', i }))
      .filter(({ r, edge }) => keep(r, edge))
      .sort((x, y) => y.r.ts - x.r.ts || y.i - x.i)
      .map(({ r, edge }) => `${edge}/${r.seq}`);
  assert.deepEqual(await all({}), expect(() => true));
  assert.deepEqual(await all({ verdict: 'defect' }), expect((r) => r.verdict === 'defect'));
  assert.deepEqual(await all({ label: 'good', model: 'm@2' }), expect((r) => r.label === 'good' && r.model === 'm@2'));
  assert.deepEqual(await all({ line: 'L2' }), expect((_, edge) => edge === 'e2'));
  assert.deepEqual(await all({ edge: 'e1', from: T0 + 150_017, to: T0 + 300_017 }), expect((r, edge) => edge === 'e1' && r.ts >= T0 + 150_017 && r.ts < T0 + 300_017));
  const offset = await store.listResults({ limit: 5, offset: 10 });
  assert.deepEqual(offset.items.map((r) => `${r.edgeId}/${r.seq}`), expect(() => true).slice(10, 15));

  assert.deepEqual(await store.lineVersions('L1'), [
    { model: 'm@1', first: T0 + 17, last: T0 + 12 * 30_000 + 17, count: 25 },
    { model: 'm@2', first: T0 + 13 * 30_000 + 17, last: T0 + 15 * 30_000 + 17, count: 5 },
  ]);
  assert.deepEqual(await store.lineVersions('nowhere'), []);
  assert.deepEqual((await store.recentVerdicts('e1', 2)).map((v) => v.verdict), ['ok', 'ok']);

  const ev = (kind: 'started' | 'stopping', ts: number) => envelope('events', 'e1', { kind, level: 'info' as const, message: kind, data: { n: ts } }, ts);
  await store.recordEvent('e1', ev('started', T0 + 1), meta(T0 + 5));
  await store.recordEvent('e1', ev('stopping', T0 + 2), meta(T0 + 6));
  assert.deepEqual(await store.listEvents('e1', 5), [
    { ts: T0 + 2, receivedAt: T0 + 6, kind: 'stopping', level: 'info', message: 'stopping', data: { n: T0 + 2 } },
    { ts: T0 + 1, receivedAt: T0 + 5, kind: 'started', level: 'info', message: 'started', data: { n: T0 + 1 } },
  ]);
  assert.equal(await store.markAllOffline(), 2);
  assert.equal(await store.markAllOffline(), 0);
  assert.deepEqual(await store.listLines(), [{ line: 'L1', edges: 1, online: 0 }, { line: 'L2', edges: 1, online: 0 }]);
});

testBackends('store: ping fails once closed', async (t, backend) => {
  const { store } = await openFleetStore(t, backend);
  await store.ping();
  await store.close();
  await assert.rejects(store.ping());
  await store.close(); // idempotent
});

testBackends('store: batches handed in together beyond one group commit are all stored and answered, also when closing at once', async (t, backend) => {
  const { store, open } = await openFleetStore(t, backend);
  // 100 batches of 500: on SQLite more rows than one group takes (40,000), so the rest go in later groups.
  const edges = Array.from({ length: 100 }, (_, i) => `e${i}`);
  const calls = edges.map((e) => store.ingestResults(e, results(1, 500), meta()));
  const closing = store.close();
  assert.deepEqual(await Promise.all(calls), edges.map(() => ({ ackedSeq: 500, inserted: 500, conflicts: 0 })));
  await closing;
  const again = await open();
  assert.deepEqual((await again.listEdges()).map((e) => e.ackedSeq), edges.map(() => 500));
});
