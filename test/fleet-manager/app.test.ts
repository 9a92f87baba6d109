import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { openSqliteStore, type FleetStore } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { T0, result, tempDir } from './helpers.js';

const S = 1000;
const M = 60 * S;

/** The inserted data set: every stats and results assertion below is computed from it by hand. */
const DATA: Record<string, { line: string; results: ResultRecord[] }> = {
  e1: {
    line: 'L1',
    results: [
      result(1, { ts: T0 + 5 * S, verdict: 'ok', label: 'good', model: 'm@1' }),
      result(2, { ts: T0 + 20 * S, verdict: 'defect', label: 'scratch', model: 'm@1', camera: 'cam-2' }),
      result(3, { ts: T0 + 65 * S, verdict: 'defect', label: 'dent', model: 'm@2' }),
      result(4, { ts: T0 + 70 * S, verdict: 'ok', label: 'good', model: 'm@2' }),
    ],
  },
  e2: {
    line: 'L1',
    results: [
      result(1, { ts: T0 + 30 * S, verdict: 'defect', label: 'scratch', model: 'm@1' }),
      result(2, { ts: T0 + 125 * S, verdict: 'ok', label: 'good', model: 'm@1' }),
    ],
  },
  e3: { line: 'L2', results: [result(1, { ts: T0 + 10 * S, verdict: 'defect', label: 'scratch', model: 'm@1' })] },
};

/** A built app around a real SQLite store holding DATA; closed after the test. */
async function build(t: TestContext, opts: { status?: () => { mqttConnected: boolean; ingest: never } } = {}) {
  const file = join(await tempDir(t), 'fleet.db');
  const store: FleetStore = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  const creds = openTestIdentity(t, file);
  const { identity } = creds;
  for (const [id, d] of Object.entries(DATA)) {
    await store.recordState(id, envelope('state', id, { online: id !== 'e3', line: d.line, cameras: ['cam-1'], active: { name: 'm', version: '2' }, agentVersion: '0.1.0' }), { receivedAt: T0 });
    await store.ingestResults(id, d.results, { receivedAt: T0 + 200 * S });
  }
  const app = await buildApp({ store, identity, logger: pino({ level: 'silent' }), now: () => T0 + 10 * M, ...opts });
  t.after(async () => {
    await app.close();
    await store.close();
  });
  // Results are confidential: the reads below are an admin's (a real API token).
  const headers = await creds.headers('admin');
  const get = (url: string) => app.inject({ url, headers });
  return { app, store, get };
}

const L1_STATS = {
  line: 'L1',
  from: T0,
  to: T0 + 3 * M,
  bucket: '1m',
  bucketMs: M,
  buckets: [
    { start: T0, total: 3, ok: 1, defect: 2, defectRate: 2 / 3, byLabel: { good: 1, scratch: 2 }, byModel: { 'm@1': { total: 3, defect: 2, defectRate: 2 / 3 } } },
    { start: T0 + M, total: 2, ok: 1, defect: 1, defectRate: 0.5, byLabel: { dent: 1, good: 1 }, byModel: { 'm@2': { total: 2, defect: 1, defectRate: 0.5 } } },
    { start: T0 + 2 * M, total: 1, ok: 1, defect: 0, defectRate: 0, byLabel: { good: 1 }, byModel: { 'm@1': { total: 1, defect: 0, defectRate: 0 } } },
  ],
  totals: {
    total: 6, ok: 3, defect: 3, defectRate: 0.5,
    byLabel: { good: 3, scratch: 2, dent: 1 },
    byModel: { 'm@1': { total: 4, defect: 2, defectRate: 0.5 }, 'm@2': { total: 2, defect: 1, defectRate: 0.5 } },
  },
};

test('GET /api/lines/:line/stats answers exact counts per bucket, label and model', async (t) => {
  const { get } = await build(t);
  const res = await get(`/api/lines/L1/stats?from=${T0}&to=${T0 + 3 * M}&bucket=1m`);
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /^application\/json/);
  assert.deepEqual(res.json(), L1_STATS);

  // ISO times give the same window; `to` is exclusive, so 08:02:00 drops the last bucket.
  const iso = await get('/api/lines/L1/stats?from=2025-01-01T08:00:00Z&to=2025-01-01T08:02:00.000Z&bucket=1m');
  assert.deepEqual(iso.json().buckets.map((b: { start: number }) => b.start), [T0, T0 + M]);
  assert.equal(iso.json().totals.total, 5);

  // One 5-minute bucket holds everything; another line is kept apart.
  const wide = await get(`/api/lines/L1/stats?from=${T0}&to=${T0 + 5 * M}&bucket=5m`);
  assert.deepEqual(wide.json().buckets, [{ start: T0, ...L1_STATS.totals }]);
  const l2 = await get(`/api/lines/L2/stats?from=${T0}&to=${T0 + M}&bucket=10s`);
  assert.deepEqual(l2.json().buckets, [
    { start: T0 + 10 * S, total: 1, ok: 0, defect: 1, defectRate: 1, byLabel: { scratch: 1 }, byModel: { 'm@1': { total: 1, defect: 1, defectRate: 1 } } },
  ]);
});

test('GET /api/lines/:line/stats defaults to the last 24 h in 1 h buckets', async (t) => {
  const { get } = await build(t);
  const res = await get('/api/lines/L1/stats');
  assert.equal(res.statusCode, 200);
  const body = res.json();
  assert.equal(body.to, T0 + 10 * M);
  assert.equal(body.from, T0 + 10 * M - 24 * 60 * M);
  assert.equal(body.bucketMs, 60 * M);
  assert.deepEqual(body.buckets.map((b: { start: number; total: number }) => [b.start, b.total]), [[T0, 6]]);
});

test('GET /api/lines/:line/stats?format=csv is long format, one row per bucket × verdict × label', async (t) => {
  const { get } = await build(t);
  const res = await get(`/api/lines/L1/stats?from=${T0}&to=${T0 + 3 * M}&bucket=1m&format=csv`);
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'text/csv; charset=utf-8');
  assert.equal(
    res.body,
    [
      'bucket_start,bucket_start_ms,line,verdict,label,count,bucket_total,bucket_defect_rate',
      '2025-01-01T08:00:00.000Z,1735718400000,L1,defect,scratch,2,3,0.666667',
      '2025-01-01T08:00:00.000Z,1735718400000,L1,ok,good,1,3,0.666667',
      '2025-01-01T08:01:00.000Z,1735718460000,L1,defect,dent,1,2,0.500000',
      '2025-01-01T08:01:00.000Z,1735718460000,L1,ok,good,1,2,0.500000',
      '2025-01-01T08:02:00.000Z,1735718520000,L1,ok,good,1,1,0.000000',
      '',
    ].join('\r\n'),
  );
});

test('stats: bad parameters get 400 naming the parameter, unknown lines 404', async (t) => {
  const { get } = await build(t);
  const cases: [string, number, RegExp][] = [
    ['/api/lines/L1/stats?bucket=7x', 400, /bucket/],
    ['/api/lines/L1/stats?bucket=0s', 400, /bucket/],
    ['/api/lines/L1/stats?from=yesterday', 400, /from/],
    [`/api/lines/L1/stats?from=${T0 + M}&to=${T0}`, 400, /from must be before to/],
    [`/api/lines/L1/stats?from=0&to=${T0}&bucket=1s`, 400, /more than 100000 buckets/],
    ['/api/lines/L1/stats?format=xml', 400, /format/],
    ['/api/lines/L1/stats?colour=red', 400, /additional properties \(colour\)/],
    ['/api/lines/nope/stats', 404, /line nope not found/],
  ];
  for (const [url, status, message] of cases) {
    const res = await get(url);
    assert.equal(res.statusCode, status, url);
    const body = res.json();
    assert.deepEqual(Object.keys(body), ['error', 'message'], url);
    assert.equal(body.error, status === 404 ? 'OSP_ERR_NOT_FOUND' : 'OSP_ERR_BAD_REQUEST', url);
    assert.match(body.message, message, url);
  }
});

/** Every stored result as the API shows it, newest first. */
function allNewestFirst() {
  return Object.entries(DATA)
    .flatMap(([edgeId, d]) => d.results.map((r) => ({ edgeId, line: d.line, ...r, hasImage: false })))
    .sort((a, b) => b.ts - a.ts);
}
const keyOf = (r: { edgeId: string; seq: number }) => `${r.edgeId}#${r.seq}`;

test('GET /api/results pages newest first with a cursor, and with an offset', async (t) => {
  const { get } = await build(t);
  const expected = allNewestFirst();
  const seen: unknown[] = [];
  let url = '/api/results?limit=3';
  let pages = 0;
  for (;;) {
    const body = (await get(url)).json();
    seen.push(...body.items);
    pages++;
    if (body.nextCursor === null) break;
    url = `/api/results?limit=3&cursor=${body.nextCursor}`;
  }
  assert.equal(pages, 3);
  assert.deepEqual(seen, expected);

  const page = (await get('/api/results?limit=2&offset=2')).json();
  assert.deepEqual(page.items.map(keyOf), expected.slice(2, 4).map(keyOf));
  assert.equal(typeof page.nextCursor, 'string');
  const last = (await get('/api/results?limit=7')).json();
  assert.equal(last.items.length, 7);
  assert.equal(last.nextCursor, null);
});

test('GET /api/results filters by edge, line, verdict, label, model and time', async (t) => {
  const { get } = await build(t);
  const all = allNewestFirst();
  const cases: [string, (r: (typeof all)[number]) => boolean][] = [
    ['edge=e1', (r) => r.edgeId === 'e1'],
    ['line=L1&verdict=defect', (r) => r.line === 'L1' && r.verdict === 'defect'],
    ['label=good', (r) => r.label === 'good'],
    ['model=m@2', (r) => r.model === 'm@2'],
    [`from=${T0 + 20 * S}&to=2025-01-01T08:01:05Z`, (r) => r.ts >= T0 + 20 * S && r.ts < T0 + 65 * S],
    ['edge=e2&label=scratch&from=2025-01-01T08:00:00Z', (r) => r.edgeId === 'e2' && r.label === 'scratch'],
    ['line=L3', () => false],
  ];
  for (const [query, keep] of cases) {
    const body = (await get(`/api/results?${query}`)).json();
    assert.deepEqual(body.items.map(keyOf), all.filter(keep).map(keyOf), query);
  }
});

test('GET /api/results rejects bad paging with the one error shape', async (t) => {
  const { get } = await build(t);
  for (const [query, message] of [
    ['limit=1001', /limit/],
    ['limit=0', /limit/],
    ['cursor=abc&offset=1', /either cursor or offset/],
    ['cursor=bm9wZQ', /cursor/],
    ['verdict=maybe', /verdict/],
    ['from=last-week', /from/],
  ] as const) {
    const res = await get(`/api/results?${query}`);
    assert.equal(res.statusCode, 400, query);
    assert.equal(res.json().error, 'OSP_ERR_BAD_REQUEST');
    assert.match(res.json().message, message, query);
  }
});

test('GET /api/edges and /api/lines describe the fleet', async (t) => {
  const { get } = await build(t);
  const edges = (await get('/api/edges')).json().edges;
  assert.deepEqual(edges[0], {
    id: 'e1', line: 'L1', cameras: ['cam-1'], online: true, firstSeen: T0, lastSeen: T0 + 200 * S,
    ackedSeq: 4, lastSeq: null, backlog: null, storeId: null, activeModel: 'm@2', agentVersion: '0.1.0', telemetry: null, convergence: null,
  });
  assert.deepEqual(edges.map((e: { id: string; online: boolean }) => [e.id, e.online]), [['e1', true], ['e2', true], ['e3', false]]);
  assert.deepEqual((await get('/api/lines')).json(), {
    lines: [{ line: 'L1', edges: 2, online: 2 }, { line: 'L2', edges: 1, online: 0 }],
  });
});

test('GET /health reports the database and MQTT; 503 when degraded', async (t) => {
  let mqttConnected = true;
  const ingest = { messages: 3, dropped: 1, resultsStored: 2, acksSent: 1, storeErrors: 0, conflicts: 0 };
  const { app, store } = await build(t, { status: () => ({ mqttConnected, ingest }) as never });
  const ok = await app.inject('/health');
  assert.equal(ok.statusCode, 200);
  assert.deepEqual(ok.json(), { status: 'ok', db: true, mqtt: true, uptimeS: 0, ingest });
  mqttConnected = false;
  assert.equal((await app.inject('/health')).statusCode, 503);
  mqttConnected = true;
  await store.close();
  const down = await app.inject('/health');
  assert.equal(down.statusCode, 503);
  assert.equal(down.json().db, false);
});

test('unknown routes answer 404 in the one error shape', async (t) => {
  const { app } = await build(t);
  const res = await app.inject('/api/nothing?x=1');
  assert.equal(res.statusCode, 404);
  assert.deepEqual(res.json(), { error: 'OSP_ERR_NOT_FOUND', message: 'no route GET /api/nothing' });
});
