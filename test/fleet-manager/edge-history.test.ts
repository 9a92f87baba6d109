/**
 * `GET /api/edges/:id/telemetry` and `POST /api/edges/:id/threshold-preview` over real HTTP on a
 * real fleet database (SQLite and PostgreSQL): telemetry folded per minute with bounded retention and range, the
 * preview's count equal to the stored verdicts replayed by hand, bounds and permissions, one-line
 * errors naming the field.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import type { ResultRecord } from '../../protocol/messages.js';
import type { MonitorFigures } from '../../protocol/monitoring.js';
import { TELEMETRY_RETENTION_MS } from '../../fleet-manager/edge-history-db.js';
import { T0, result, tempDir } from './helpers.js';
import { openFleetStore } from './fleet-store-backend.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';

const MIN = 60_000;

async function build(t: TestContext, backend: StoreBackend) {
  const { store, file } = await openFleetStore(t, backend);
  // The identity store is SQLite here whatever the fleet store's backend.
  const creds = openTestIdentity(t, file ?? join(await tempDir(t), 'identity.db'));
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

function telemetry(
  edgeId: string,
  at: number,
  over: { fps: number; p50: number; p95: number; queue: number; frames: number; failed?: number; cpu?: number; monitor?: MonitorFigures; alarms?: string[] },
) {
  return envelope(
    'telemetry',
    edgeId,
    {
      intervalMs: 10_000, frames: over.frames, defects: 0, failed: over.failed ?? 0, failures: {}, fps: over.fps,
      latencyMs: { count: over.frames, p50: over.p50, p95: over.p95, p99: over.p95, max: over.p95 }, queueDepth: over.queue, lastSeq: 0, ackedSeq: 0,
      pendingResults: 0, cpuPercent: over.cpu ?? 10, rssBytes: 1e8,
      storage: { resultRows: 1, resultBytes: 4096, notStored: 0, notStoredDefects: 0, images: 1, imageBytes: 2048, imagesPending: 0, imagesEvicted: 0 },
      perModel: {},
      ...(over.monitor && { monitor: over.monitor }),
      ...(over.alarms && { alarms: over.alarms }),
    },
    at,
  );
}

/** What an edge's monitor reports while watching (edge-agent/monitor.ts), with the figures given. */
function watching(over: Partial<MonitorFigures>): MonitorFigures {
  return {
    phase: 'watching', model: 'mtd@1', referenceFrames: 100, frames: 400,
    brightness: 120, brightnessReference: 118, contrast: 40, contrastReference: 41, sharpness: 900, sharpnessReference: 950,
    shiftX: 0.001, shiftY: -0.002, scorePsi: 0.03, labelPsi: 0.01, scoreReference: 'calibration', defectRate: 0.02, defectRateReference: 0.025, defectLimit: 9, checkMs: 0.2,
    ...over,
  };
}

testBackends('GET /api/edges/:id/telemetry: one row per minute (mean fps, worst p95, summed frames), oldest first, in [from, to)', async (t, backend) => {
  const { store, call } = await build(t, backend);
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

testBackends('GET /api/edges/:id/telemetry: bounded retention and range; bad input is a one-line 400 naming the field; unknown edge 404', async (t, backend) => {
  const { store, call, setNow } = await build(t, backend);
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

testBackends('POST /api/edges/:id/threshold-preview: the count is the stored verdicts replayed under the new threshold, latest `limit` only', async (t, backend) => {
  const { store, call, creds } = await build(t, backend);
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

testBackends('POST /api/edges/:id/threshold-preview: validated (one line naming the field), operator and admin only, unknown edge 404', async (t, backend) => {
  const { store, call } = await build(t, backend);
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

testBackends('GET /api/edges/:id/telemetry and GET /api/edges: the image health and score drift figures, latest of each minute, with their references', async (t, backend) => {
  const { store, call } = await build(t, backend);
  const put = (at: number, monitor?: MonitorFigures, alarms?: string[]) =>
    store.recordTelemetry('e1', telemetry('e1', at, { fps: 10, p50: 4, p95: 9, queue: 0, frames: 100, ...(monitor && { monitor }), ...(alarms && { alarms }) }), { receivedAt: at });
  // Minute 1: no monitor figures (an older agent). Minute 2: collecting the reference (no score figures yet).
  // Minute 3: two reports, the latest wins. Minute 4: the camera was knocked.
  await put(T0 + 1 * MIN + 1_000);
  await put(T0 + 2 * MIN + 1_000, { phase: 'reference', referenceFrames: 40, frames: 40, brightness: 117, contrast: 41, sharpness: 960 });
  await put(T0 + 3 * MIN + 1_000, watching({ brightness: 119, scorePsi: 0.05 }));
  await put(T0 + 3 * MIN + 20_000, watching({ brightness: 121, scorePsi: 0.08, defectRate: 0.03 }));
  await put(T0 + 4 * MIN + 1_000, watching({ shiftX: 0.09, shiftY: 0.04, sharpness: 300, scorePsi: 0.4 }), ['camera-shift', 'image-blur', 'score-drift']);

  const res = await call('viewer', 'GET', `/api/edges/e1/telemetry?from=${T0}&to=${T0 + 10 * MIN}`);
  assert.equal(res.status, 200);
  const monitors = res.body.minutes.map((m: { monitor: unknown }) => m.monitor);
  assert.equal(monitors.length, 4);
  assert.equal(monitors[0], null, 'a minute without monitor figures');
  assert.deepEqual(monitors[1], {
    brightness: 117, brightnessReference: null, contrast: 41, contrastReference: null, sharpness: 960, sharpnessReference: null,
    shiftX: null, shiftY: null, scorePsi: null, defectRate: null, defectRateReference: null,
  });
  assert.deepEqual(monitors[2], {
    brightness: 121, brightnessReference: 118, contrast: 40, contrastReference: 41, sharpness: 900, sharpnessReference: 950,
    shiftX: 0.001, shiftY: -0.002, scorePsi: 0.08, defectRate: 0.03, defectRateReference: 0.025,
  });
  assert.deepEqual([monitors[3].shiftX, monitors[3].shiftY, monitors[3].sharpness, monitors[3].scorePsi], [0.09, 0.04, 300, 0.4]);

  // The edge view carries the latest figures as the edge reported them, and the alarms in force.
  const edges = await call('viewer', 'GET', '/api/edges');
  const view = edges.body.edges.find((e: { id: string }) => e.id === 'e1');
  assert.deepEqual(view.telemetry.monitor, watching({ shiftX: 0.09, shiftY: 0.04, sharpness: 300, scorePsi: 0.4 }));
  assert.deepEqual(view.telemetry.alarms, ['camera-shift', 'image-blur', 'score-drift']);
});

test('sqlite: telemetry_minutes made by an older build gains the monitor columns; its rows read with monitor null', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  const old = new Database(file);
  old.exec(`CREATE TABLE telemetry_minutes (
    edge_id TEXT NOT NULL, minute INTEGER NOT NULL, samples INTEGER NOT NULL, at INTEGER NOT NULL, fps REAL NOT NULL, p50 REAL NOT NULL,
    p95 REAL NOT NULL, queue INTEGER NOT NULL, cpu REAL NOT NULL, rss INTEGER NOT NULL, frames INTEGER NOT NULL, failed INTEGER NOT NULL,
    result_bytes INTEGER, image_bytes INTEGER, PRIMARY KEY (edge_id, minute)) WITHOUT ROWID`);
  old.prepare('INSERT INTO telemetry_minutes VALUES (?, ?, 1, ?, 7, 1, 2, 0, 5, 1000, 70, 0, NULL, NULL)').run('e1', T0, T0 + 1000);
  old.close();
  const store = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  t.after(() => store.close());
  await store.recordTelemetry('e1', telemetry('e1', T0 + MIN, { fps: 8, p50: 1, p95: 2, queue: 0, frames: 80, monitor: watching({}) }), { receivedAt: T0 + MIN });
  const minutes = await store.telemetryHistory('e1', T0, T0 + 2 * MIN);
  assert.deepEqual(minutes.map((m) => [m.fps, m.monitor?.brightness ?? null]), [[7, null], [8, 120]]);
  assert.equal(minutes[0]!.monitor, null);
});
