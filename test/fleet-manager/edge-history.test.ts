/**
 * `GET /api/edges/:id/telemetry` and `POST /api/edges/:id/threshold-preview` over real HTTP on a
 * real SQLite fleet database: telemetry folded per minute with bounded retention and range, the
 * preview's count equal to the stored verdicts replayed by hand, bounds and permissions, one-line
 * errors naming the field.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { TELEMETRY_RETENTION_MS } from '../../fleet-manager/edge-history-db.js';
import { T0, result, tempDir } from './helpers.js';

const MIN = 60_000;

async function build(t: TestContext) {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  const creds = openTestIdentity(t, file);
  let now = T0 + 30 * MIN;
  const app = await buildApp({ store, identity: creds.identity, logger: pino({ level: 'silent' }), now: () => now });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => {
    await app.close();
    await store.close();
  });
  const call = async (role: 'viewer' | 'operator' | 'inspector' | 'admin', method: string, path: string, body?: unknown) => {
    const headers: Record<string, string> = { ...(await creds.headers(role)) };
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await fetch(`${url}${path}`, { method, headers, ...(body !== undefined && { body: JSON.stringify(body) }) });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- checked by the asserts
    return { status: res.status, body: (await res.json()) as any };
  };
  return { store, creds, call, setNow: (ms: number) => (now = ms) };
}

function telemetry(edgeId: string, at: number, over: { fps: number; p50: number; p95: number; queue: number; frames: number; failed?: number; cpu?: number }) {
  return envelope(
    'telemetry',
    edgeId,
    {
      intervalMs: 10_000, frames: over.frames, defects: 0, failed: over.failed ?? 0, failures: {}, fps: over.fps,
      latencyMs: { count: over.frames, p50: over.p50, p95: over.p95, p99: over.p95, max: over.p95 }, queueDepth: over.queue, lastSeq: 0, ackedSeq: 0,
      pendingResults: 0, cpuPercent: over.cpu ?? 10, rssBytes: 1e8,
      storage: { resultRows: 1, resultBytes: 4096, notStored: 0, notStoredDefects: 0, images: 1, imageBytes: 2048, imagesPending: 0, imagesEvicted: 0 },
      perModel: {},
    },
    at,
  );
}

test('GET /api/edges/:id/telemetry: one row per minute (mean fps, worst p95, summed frames), oldest first, in [from, to)', async (t) => {
  const { store, call } = await build(t);
  const put = (at: number, over: Parameters<typeof telemetry>[2]) => store.recordTelemetry('e1', telemetry('e1', at, over), { receivedAt: at });
  await put(T0 + 1 * MIN + 5_000, { fps: 10, p50: 4, p95: 9, queue: 1, frames: 100, failed: 1 });
  await put(T0 + 1 * MIN + 15_000, { fps: 20, p50: 6, p95: 7, queue: 3, frames: 200, failed: 2 });
  await put(T0 + 2 * MIN + 1_000, { fps: 5, p50: 3, p95: 5, queue: 0, frames: 50 });
  await put(T0 + 20 * MIN, { fps: 1, p50: 1, p95: 1, queue: 0, frames: 10 });

  const res = await call('viewer', 'GET', `/api/edges/e1/telemetry?from=${T0}&to=${new Date(T0 + 10 * MIN).toISOString()}`);
  assert.equal(res.status, 200);
  assert.deepEqual([res.body.from, res.body.to, res.body.retentionMs], [T0, T0 + 10 * MIN, TELEMETRY_RETENTION_MS]);
  assert.deepEqual(res.body.minutes.map((m: { minute: number }) => m.minute), [T0 + MIN, T0 + 2 * MIN]);
  const [first] = res.body.minutes;
  assert.deepEqual(
    [first.samples, first.at, first.fps, first.latencyP50Ms, first.latencyP95Ms, first.queueDepth, first.frames, first.failed, first.resultBytes, first.imageBytes],
    [2, T0 + MIN + 15_000, 15, 5, 9, 3, 300, 3, 4096, 2048],
  );
  // Defaults: the six hours before now (T0 + 30 min).
  assert.equal((await call('viewer', 'GET', '/api/edges/e1/telemetry')).body.minutes.length, 3);
});

test('GET /api/edges/:id/telemetry: bounded retention and range; bad input is a one-line 400 naming the field; unknown edge 404', async (t) => {
  const { store, call, setNow } = await build(t);
  await store.recordTelemetry('e1', telemetry('e1', T0, { fps: 1, p50: 1, p95: 1, queue: 0, frames: 1 }), { receivedAt: T0 });
  // A report past the retention drops the minutes older than it.
  const later = T0 + TELEMETRY_RETENTION_MS + 2 * MIN;
  await store.recordTelemetry('e1', telemetry('e1', later, { fps: 2, p50: 1, p95: 1, queue: 0, frames: 1 }), { receivedAt: later });
  setNow(later + MIN);
  const all = await call('viewer', 'GET', `/api/edges/e1/telemetry?from=${later + 2 * MIN - TELEMETRY_RETENTION_MS}`);
  assert.equal(all.status, 200);
  assert.deepEqual(all.body.minutes.map((m: { fps: number }) => m.fps), [2]);
  assert.deepEqual(await store.telemetryHistory('e1', 0, later + MIN), (await store.telemetryHistory('e1', later - MIN, later + MIN)), 'the old minute is gone from the database');

  const bad = async (query: string, message: RegExp, status = 400) => {
    const res = await call('viewer', 'GET', `/api/edges/e1/telemetry${query}`);
    assert.equal(res.status, status, query);
    assert.match(res.body.message, message);
    assert.doesNotMatch(res.body.message, /\n/);
  };
  await bad(`?from=${T0}&to=${T0 + TELEMETRY_RETENTION_MS + 1}`, /^querystring\/from: the range may span at most 7 days$/);
  await bad(`?from=${T0 + 5}&to=${T0}`, /^querystring\/from must be before to$/);
  await bad('?from=yesterday', /^querystring\/from must be an ISO 8601 date or epoch milliseconds$/);
  await bad('?since=1', /querystring must NOT have additional properties \(since\)/);
  const missing = await call('viewer', 'GET', '/api/edges/nobody/telemetry');
  assert.deepEqual([missing.status, missing.body.message], [404, 'no edge nobody']);
});

test('POST /api/edges/:id/threshold-preview: the count is the stored verdicts replayed under the new threshold, latest `limit` only', async (t) => {
  const { store, call, creds } = await build(t);
  // 1200 results: the oldest 200 would all change and must not be counted.
  const rows: ResultRecord[] = [];
  for (let seq = 1; seq <= 1200; seq++) {
    const score = (seq * 37 % 100) / 100;
    const kind = seq % 3;
    if (seq <= 200) rows.push(result(seq, { verdict: 'ok', label: 'good', score: 0.99 }));
    else if (kind === 0) rows.push(result(seq, { verdict: 'defect', label: 'scratch', score: Math.max(score, 0.5) }));
    else if (kind === 1) rows.push(result(seq, { verdict: 'defect', label: 'dent', score: Math.max(score, 0.5) }));
    else rows.push(result(seq, { verdict: 'ok', label: 'good', score: Math.min(score, 0.49) }));
  }
  await store.ingestResults('e1', rows, { receivedAt: T0 });
  const newest = rows.slice(200);
  const byHand = (threshold: number) => {
    const toOk = newest.filter((r) => r.verdict === 'defect' && r.label === 'scratch' && r.score < threshold).length;
    const toDefect = newest.filter((r) => r.verdict === 'ok' && r.score >= threshold).length;
    return { toOk, toDefect, changed: toOk + toDefect };
  };

  for (const threshold of [0.7, 0.3, 0.5]) {
    const res = await call('operator', 'POST', '/api/edges/e1/threshold-preview', { label: 'scratch', threshold });
    assert.equal(res.status, 200);
    const want = byHand(threshold);
    assert.deepEqual(res.body, { edgeId: 'e1', label: 'scratch', threshold, current: null, considered: 1000, ...want });
  }
  assert.ok(byHand(0.7).toOk > 0 && byHand(0.3).toDefect > 0, 'both directions are exercised');
  const few = await call('admin', 'POST', '/api/edges/e1/threshold-preview', { label: 'scratch', threshold: 0.3, limit: 10 });
  assert.equal(few.body.considered, 10);

  // Nothing changes, so nothing is audited.
  const audit = await creds.identity.queryAudit({ limit: 100 });
  assert.deepEqual(audit.filter((a) => a.action.includes('threshold-preview')), []);
});

test('POST /api/edges/:id/threshold-preview: validated (one line naming the field), operator and admin only, unknown edge 404', async (t) => {
  const { store, call } = await build(t);
  await store.ingestResults('e1', [result(1)], { receivedAt: T0 });
  const bad = async (body: unknown, message: RegExp) => {
    const res = await call('operator', 'POST', '/api/edges/e1/threshold-preview', body);
    assert.equal(res.status, 400, JSON.stringify(body));
    assert.match(res.body.message, message);
    assert.doesNotMatch(res.body.message, /\n/);
  };
  await bad({ label: 'scratch', threshold: 1.5 }, /^body\/threshold must be <= 1$/);
  await bad({ label: 'scratch', threshold: -0.1 }, /^body\/threshold must be >= 0$/);
  await bad({ label: '', threshold: 0.5 }, /^body\/label must NOT have fewer than 1 characters$/);
  await bad({ label: 'scratch', threshold: 0.5, limit: 1001 }, /^body\/limit must be <= 1000$/);
  await bad({ threshold: 0.5 }, /body must have required property 'label'/);
  for (const role of ['viewer', 'inspector'] as const) {
    assert.equal((await call(role, 'POST', '/api/edges/e1/threshold-preview', { label: 'x', threshold: 0.5 })).status, 403, role);
  }
  const missing = await call('operator', 'POST', '/api/edges/nobody/threshold-preview', { label: 'x', threshold: 0.5 });
  assert.deepEqual([missing.status, missing.body.message], [404, 'no edge nobody']);
});
