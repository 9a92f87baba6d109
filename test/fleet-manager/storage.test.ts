/** The storage factory (fleet-manager/storage.ts): one connection, every schema made in one place, the storage thread. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openStorage, type Storage } from '../../fleet-manager/storage.js';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { resolveFleetConfig } from '../../fleet-manager/config.js';
import { isOspreyError } from '../../protocol/errors.js';
import { openSqliteDatabase } from '../../fleet-manager/sqlite-db.js';
import { createSqliteFleetStore } from '../../fleet-manager/store.js';
import { createSqliteControlStore } from '../../fleet-manager/control-store.js';
import { createSqliteImageStore } from '../../fleet-manager/image-store.js';
import { createSqliteReviewStore } from '../../fleet-manager/review-store.js';
import { createSqliteGoldenSetStore } from '../../fleet-manager/golden-set-store.js';
import { createSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { createSqliteTrainingStore } from '../../fleet-manager/training-store.js';
import { createSqliteBackboneStore } from '../../fleet-manager/backbone-store.js';
import { createSqliteAlertStore } from '../../fleet-manager/alert-store.js';
import { createSqliteWebhookStore } from '../../fleet-manager/webhook-store.js';
import { T0, captureLogger, results, tempDir } from './helpers.js';
import { PG_MIGRATIONS } from '../../fleet-manager/pg/pg-storage.js';
import { openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { pgDatabaseUrl } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';

const silent = pino({ level: 'silent' });
const settings = (dataDir: string) => ({ dataDir, imagesMaxBytes: 1024, maxAlerts: 100, maxOutbox: 100, logger: silent });

/** Descriptors this process holds on the file itself (not its -wal or -shm). */
function openDescriptors(file: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).length;
}

/** Every table of a fleet.db, sorted. */
function tables(file: string): string[] {
  const db = new Database(file, { readonly: true });
  try {
    return db.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").pluck().all();
  } finally {
    db.close();
  }
}

/** The tables of every store, made by the factory before any store is built. */
const EVERY_TABLE = [
  'alert_changes', 'alerts', 'api_tokens', 'audit_log', 'backbones', 'config_layers', 'edge_credentials', 'edge_desired', 'edge_model_counts',
  'edge_pins', 'edge_stores', 'edges', 'enrollment_tokens', 'events', 'golden_set_reports', 'line_minutes', 'model_versions',
  'result_heatmaps', 'result_images', 'result_occlusions', 'result_reviews', 'results', 'rollouts', 'sessions',
  'sqlite_sequence', 'telemetry_minutes', 'training_jobs', 'training_logs', 'users', 'webhook_cursor', 'webhook_deliveries', 'webhooks',
];

for (const thread of [false, true]) {
  const mode = thread ? 'storage thread' : 'in process';

  test(`storage (${mode}): every store over one connection, every schema made by the factory`, async (t) => {
    const dir = await tempDir(t);
    const storage = await openStorage({ ...settings(dir), thread });
    t.after(() => storage.close());
    assert.equal(storage.kind, 'sqlite');
    assert.equal(openDescriptors(join(dir, 'fleet.db')), 1);
    assert.deepEqual(tables(join(dir, 'fleet.db')), EVERY_TABLE);
    // Each store answers on the shared connection.
    assert.deepEqual(await storage.fleet.ingestResults('e1', results(1, 3), { receivedAt: T0 }), { ackedSeq: 3, inserted: 3, conflicts: 0 });
    assert.equal(await storage.identity.countUsers(), 0);
    assert.deepEqual(await storage.control.listModels(), []);
    assert.deepEqual(await storage.backbones.list(), []);
    assert.deepEqual(await storage.alerts.counts(), { open: 0, acknowledged: 0 });
    assert.deepEqual(await storage.webhooks.pendingCounts(), new Map());
    assert.deepEqual(await storage.reviews.reviewed([]), new Set());
    assert.deepEqual(await storage.training.listJobs(10), []);
    assert.deepEqual(await storage.goldenSets.latestFor([], 'm'), new Map());
  });

  test(`storage (${mode}): errors keep their code and message; Buffers reach the image store`, async (t) => {
    const dir = await tempDir(t);
    const storage = await openStorage({ ...settings(dir), thread });
    t.after(() => storage.close());
    await storage.identity.addUser({ username: 'ada', password: 'correct horse battery', role: 'admin' });
    await assert.rejects(storage.identity.addUser({ username: 'ada', password: 'correct horse battery', role: 'admin' }), (err: Error) => isOspreyError(err, 'OSP_ERR_CONFLICT') && err.message === 'user ada exists');
    const key = { edgeId: 'e1', storeId: 's', seq: 1 };
    const put = await storage.images.put(key, Buffer.from('jpeg bytes'), 'image/jpeg');
    assert.equal(put.created, true);
    assert.equal(put.image.bytes, 10);
    // images.maxBytes is 1024 here: a larger image is refused with the quota's code.
    await assert.rejects(storage.images.put({ ...key, seq: 2 }, Buffer.alloc(2000, 1), 'image/jpeg'), (err: Error) => isOspreyError(err, 'OSP_ERR_QUOTA') && /images\.maxBytes/.test(err.message));
  });
}

test('storage: results stored through the thread read back equal to the same batch stored in process', async (t) => {
  const batch = [
    ...results(1, 3),
    ...results(4, 4, { frame: 'f.png', detections: [{ label: 'scratch', score: 0.9, box: [1, 2, 3, 4] }] }),
    ...results(5, 5, { shadow: { model: 'cand@2', verdict: 'defect', label: 'dent', score: 0.7, latencyMs: 3 } }),
  ];
  const read = async (thread: boolean) => {
    const storage = await openStorage({ ...settings(await tempDir(t)), thread });
    t.after(() => storage.close());
    const outcome = await storage.fleet.ingestResults('e1', batch, { receivedAt: T0 }, 'store-0001');
    const rows = await Promise.all(batch.map((r) => storage.fleet.getResult('e1', 'store-0001', r.seq)));
    return { outcome, rows };
  };
  const inProcess = await read(false);
  assert.deepStrictEqual(inProcess.outcome, { ackedSeq: 5, inserted: 5, conflicts: 0 });
  assert.deepStrictEqual(await read(true), inProcess);
});

test('storage: the stores\' constructors make no table (the factory makes them all, once)', async (t) => {
  const dir = await tempDir(t);
  const db = openSqliteDatabase(join(dir, 'empty.db'));
  t.after(() => db.close());
  const file = join(dir, 'empty.db');
  const constructors: [string, () => unknown][] = [
    ['fleet', () => createSqliteFleetStore(db, silent)],
    ['control', () => createSqliteControlStore(db, { file, logger: silent })],
    ['images', () => createSqliteImageStore(db, { file, dir: join(dir, 'images'), logger: silent })],
    ['reviews', () => createSqliteReviewStore(db, { file })],
    ['golden sets', () => createSqliteGoldenSetStore(db, { file })],
    ['identity', () => createSqliteIdentityStore(db, { file, logger: silent })],
    ['training', () => createSqliteTrainingStore(db, { file, logger: silent })],
    ['backbones', () => createSqliteBackboneStore(db)],
    ['alerts', () => createSqliteAlertStore(db, { file, maxAlerts: 100 })],
    ['webhooks', () => createSqliteWebhookStore(db, { file, maxOutbox: 100 })],
  ];
  for (const [name, make] of constructors) assert.throws(make, /no such table/, name);
  assert.deepEqual(db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all(), []);
});

test('storage: a second open of the same file converges, also two at once', async (t) => {
  const dir = await tempDir(t);
  const first = await openStorage({ ...settings(dir), thread: false });
  await first.fleet.ingestResults('e1', results(1, 5), { receivedAt: T0 });
  await first.close();
  const before = tables(join(dir, 'fleet.db'));
  // Two at once (as two processes on one file would): both migrate under the write lock, neither fails.
  const [a, b] = await Promise.all([openStorage({ ...settings(dir), thread: true }), openStorage({ ...settings(dir), thread: true })]);
  t.after(() => Promise.all([a.close(), b.close()]));
  assert.deepEqual(tables(join(dir, 'fleet.db')), before);
  for (const s of [a, b]) assert.equal((await s.fleet.getEdge('e1'))!.ackedSeq, 5);
});

test('storage: close stores and answers every call in flight before the thread ends', async (t) => {
  const dir = await tempDir(t);
  const storage: Storage = await openStorage({ ...settings(dir), thread: true });
  const edges = Array.from({ length: 20 }, (_, i) => `e${i}`);
  const calls = edges.map((e) => storage.fleet.ingestResults(e, results(1, 50), { receivedAt: T0 }));
  const closing = storage.close();
  const outcomes = await Promise.all(calls);
  await closing;
  assert.deepEqual(outcomes, edges.map(() => ({ ackedSeq: 50, inserted: 50, conflicts: 0 })));
  await assert.rejects(storage.fleet.listEdges(), (err: Error) => isOspreyError(err, 'OSP_ERR_SHUTTING_DOWN'));
  const again = await openStorage({ ...settings(dir), thread: false });
  t.after(() => again.close());
  assert.deepEqual((await again.fleet.listEdges()).map((e) => e.ackedSeq), edges.map(() => 50));
});

test('storage: a PostgreSQL url opens every store on PostgreSQL; two instances opening together migrate once and share the data', { skip: postgresSkip() }, async (t) => {
  const dir = await tempDir(t);
  const url = await pgDatabaseUrl();
  const [a, b] = await Promise.all([openStorage({ ...settings(join(dir, 'a')), url }), openStorage({ ...settings(join(dir, 'b')), url })]);
  t.after(() => Promise.all([a.close(), b.close()]));
  assert.equal(a.kind, 'postgres');
  assert.equal(b.kind, 'postgres');
  // Every store answers, and what one instance writes the other reads.
  assert.deepEqual(await a.fleet.ingestResults('e1', results(1, 3), { receivedAt: T0 }), { ackedSeq: 3, inserted: 3, conflicts: 0 });
  assert.deepEqual((await b.fleet.listEdges()).map((e) => [e.id, e.ackedSeq]), [['e1', 3]]);
  assert.equal(await b.identity.countUsers(), 0);
  assert.deepEqual(await b.control.listModels(), []);
  assert.deepEqual(await b.backbones.list(), []);
  assert.deepEqual(await b.alerts.counts(), { open: 0, acknowledged: 0 });
  assert.deepEqual(await b.training.listJobs(10), []);
  assert.deepEqual(await b.reviews.reviewed([]), new Set());
  // Each migration applied once, all of them.
  const pool = openPgPool(url);
  t.after(() => pool.end());
  const applied = (await pool.query<{ id: string }>('SELECT id FROM osprey_migrations ORDER BY id')).rows.map((r) => r.id);
  assert.deepEqual(applied, PG_MIGRATIONS.map((m) => m.id).sort());
});

test('storage: an unreachable PostgreSQL url rejects with the cause and never shows the password', { skip: postgresSkip() }, async (t) => {
  const dir = await tempDir(t);
  // A socket directory with no server in it: refused at once, no network involved.
  await assert.rejects(openStorage({ ...settings(dir), url: `postgres://osprey:s3cret-pw@/osprey?host=${encodeURIComponent(dir)}` }), (err: Error) => !err.message.includes('s3cret-pw') && /ENOENT|connect|refused/i.test(err.message));
});

test('config: storage.url is a postgres:// or postgresql:// URL; absent means SQLite', () => {
  assert.deepEqual(resolveFleetConfig({}).storage, {});
  assert.deepEqual(resolveFleetConfig({ storage: { url: 'postgresql://h/db' } }).storage, { url: 'postgresql://h/db' });
  assert.deepEqual(resolveFleetConfig({ storage: { url: 'postgres://h/db' } }).storage, { url: 'postgres://h/db' });
  for (const url of ['mysql://h/db', 'postgres:/h', '', 'postgres://h/ db']) {
    assert.throws(() => resolveFleetConfig({ storage: { url } }), (err: Error) => isOspreyError(err, 'OSP_ERR_CONFIG') && /storage\/url|storage\.url/.test(err.message), url);
  }
  assert.throws(() => resolveFleetConfig({ storage: { file: 'x.db' } }), (err: Error) => isOspreyError(err, 'OSP_ERR_CONFIG') && /storage/.test(err.message));
});

test('fleet manager: one connection to fleet.db for all its stores, on the storage thread', async (t) => {
  const dataDir = await tempDir(t);
  const log = captureLogger('info');
  const fm = createFleetManager({ dataDir, http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 }, logger: log.logger });
  t.after(() => fm.close());
  await fm.start();
  assert.equal(openDescriptors(join(dataDir, 'fleet.db')), 1);
  assert.ok(log.lines.some((l) => l.msg === 'fleet storage opened' && l.storage === 'sqlite'));
  await fm.close();
  assert.equal(openDescriptors(join(dataDir, 'fleet.db')), 0);
});
