/**
 * The webhook store itself (issue 17, 18), the same cases on SQLite (a temp dir) and PostgreSQL:
 * webhooks, the outbox (one delivery per webhook, alert and event; heads in order; claims with a
 * lease; attempts and giving up; the bound); and on PostgreSQL, two fleet instances (two pools)
 * claiming due deliveries at once never claim one delivery twice, two senders on one outbox
 * send each delivery to a real receiver exactly once, and a sender that stalled past its lease
 * cannot undo the delivery recorded by the instance that claimed it next.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openSqliteWebhookStore, type NewDelivery, type WebhookInput, type WebhookStore } from '../../fleet-manager/webhook-store.js';
import { WEBHOOK_PG_MIGRATIONS, pgWebhookStore } from '../../fleet-manager/pg/webhook-store-pg.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { createWebhookSender, DELIVERY_HEADER } from '../../fleet-manager/webhook-sender.js';
import { pgDatabaseUrl, pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { waitFor } from '../helpers/wait-for.js';
import { captureLogger, tempDir } from './helpers.js';

/** The senders here send only what each test queues itself: their alerts' change log is empty. */
const noAlertChanges = { changesAfter: async () => [] };

async function open(t: TestContext, backend: StoreBackend, maxOutbox = 1000): Promise<WebhookStore> {
  return (await openTwo(t, backend, maxOutbox))[0];
}

/** Two stores on one database, as two fleet instances have (SQLite: two connections to one file; PostgreSQL: two pools). */
async function openTwo(t: TestContext, backend: StoreBackend, maxOutbox = 1000): Promise<[WebhookStore, WebhookStore]> {
  if (backend === 'postgres') {
    const url = await pgDatabaseUrl();
    const pools = [openPgPool(url, { max: 4 }), openPgPool(url, { max: 4 })] as const;
    t.after(() => Promise.all(pools.map((p) => p.end())));
    await migratePg(pools[0], WEBHOOK_PG_MIGRATIONS);
    return [pgWebhookStore(pools[0], { maxOutbox }), pgWebhookStore(pools[1], { maxOutbox })];
  }
  const file = join(await tempDir(t), 'fleet.db');
  const stores = [openSqliteWebhookStore({ file, maxOutbox }), openSqliteWebhookStore({ file, maxOutbox })] as const;
  t.after(() => Promise.all(stores.map((s) => s.close())));
  return [...stores];
}

const hook = (over: Partial<WebhookInput> = {}): WebhookInput => ({ name: 'ops', url: 'https://hooks.example/x', format: 'json', types: [], lines: [], enabled: true, ...over });
const delivery = (webhookId: number, alertId: number | null, event = 'raised'): NewDelivery => ({ id: randomUUID(), webhookId, alertId, event, body: `{"alert":${alertId},"event":"${event}"}` });

testBackends('webhooks: created, read, patched, listed and removed with their deliveries', async (t, backend) => {
  const s = await open(t, backend);
  const a = await s.create(hook({ types: ['image-blur'], lines: ['L1', 'L2'], format: 'chat' }), 'user:admin', 1000);
  const b = await s.create(hook({ name: 'other', enabled: false }), 'user:admin', 1100);
  assert.deepEqual(
    [a.name, a.format, a.types, a.lines, a.enabled, a.createdAt, a.createdBy, a.updatedAt, b.enabled],
    ['ops', 'chat', ['image-blur'], ['L1', 'L2'], true, 1000, 'user:admin', 1000, false],
  );
  const patched = await s.update(a.id, { enabled: false, lines: [] }, 2000);
  assert.deepEqual([patched?.enabled, patched?.lines, patched?.types, patched?.updatedAt, patched?.createdAt], [false, [], ['image-blur'], 2000, 1000]);
  assert.equal(await s.update(999, { enabled: true }, 2000), null);
  assert.deepEqual((await s.list()).map((w) => w.id), [a.id, b.id]);
  assert.equal((await s.get(b.id))?.name, 'other');
  await s.enqueue([delivery(a.id, 1)], 3000);
  assert.equal(await s.remove(a.id), true);
  assert.equal(await s.remove(a.id), false);
  assert.equal(await s.get(a.id), null);
  assert.deepEqual(await s.deliveries(a.id, 10), [], 'its deliveries went with it');
  assert.deepEqual([...(await s.pendingCounts())], []);
});

testBackends('the outbox: one delivery per (webhook, alert, event); heads in order per enabled webhook; claimed with a lease; delivered, failed, released, given up', async (t, backend) => {
  const s = await open(t, backend);
  const a = await s.create(hook(), 'user:admin', 0);
  const b = await s.create(hook({ name: 'b' }), 'user:admin', 0);
  const off = await s.create(hook({ name: 'off', enabled: false }), 'user:admin', 0);
  const a1 = delivery(a.id, 1);
  const a2 = delivery(a.id, 1, 'resolved');
  const b1 = delivery(b.id, 1);
  assert.equal(await s.enqueue([a1, a2, b1, delivery(off.id, 1)], 1000), 4);
  assert.equal(await s.enqueue([delivery(a.id, 1), delivery(b.id, 1)], 1100), 0, 'already queued for (webhook, alert, event)');
  assert.deepEqual([...(await s.pendingCounts())].sort(), [[a.id, 2], [b.id, 1], [off.id, 1]]);
  assert.deepEqual((await s.heads()).map((d) => d.id).sort(), [a1.id, b1.id].sort(), "a disabled webhook's deliveries wait");

  // Not due before its time; claimed once; a claim holds it until its lease ends.
  assert.deepEqual(await s.claimDue(999, 5000), []);
  const claimed = await s.claimDue(1000, 5000);
  assert.deepEqual(claimed.map((d) => [d.id, d.nextAttemptAt, d.attempts, d.body]).sort(), [[a1.id, 6000, 0, a1.body], [b1.id, 6000, 0, b1.body]].sort());
  assert.deepEqual(await s.claimDue(5999, 5000), [], 'claimed: not claimed again while the lease runs');
  assert.deepEqual((await s.heads()).map((d) => d.nextAttemptAt), [6000, 6000]);

  // a1 fails (retry at 7000), b1 is delivered; a2 waits behind a1.
  const claimOf = (id: string) => claimed.find((d) => d.id === id)!.claim;
  assert.equal(await s.markFailed(a1.id, claimOf(a1.id), 1500, { status: 503, error: 'HTTP 503' }, 7000), true);
  assert.equal(await s.markDelivered(b1.id, claimOf(b1.id), 1500, 200), true);
  assert.deepEqual(await s.claimDue(6999, 5000), []);
  const retry = await s.claimDue(7000, 5000);
  assert.deepEqual(retry.map((d) => [d.id, d.attempts, d.lastStatus, d.lastError]), [[a1.id, 1, 503, 'HTTP 503']]);
  // Released untried (the sender stopping): due again at once, attempts unchanged.
  assert.equal(await s.release(a1.id, retry[0]!.claim, 7000), true);
  const again = await s.claimDue(7000, 5000);
  assert.deepEqual(again.map((d) => [d.id, d.attempts]), [[a1.id, 1]]);
  assert.equal(await s.markFailed(a1.id, again[0]!.claim, 8000, { status: null, error: 'E'.repeat(400) }, null), true);
  const [head] = await s.claimDue(8000, 5000);
  assert.equal(head?.id, a2.id, 'the next of the webhook once the first is given up');
  assert.equal(await s.markDelivered(a2.id, head!.claim, 8100, 204), true);
  // A mark on a finished delivery changes nothing, whatever its claim.
  assert.equal(await s.markDelivered(a1.id, again[0]!.claim, 9000, 200), false);
  assert.equal(await s.markFailed(b1.id, claimOf(b1.id), 9000, { status: 500, error: 'late' }, 9999), false);

  const history = await s.deliveries(a.id, 10);
  assert.deepEqual(
    history.map((d) => [d.id, d.status, d.attempts, d.lastStatus, d.nextAttemptAt, d.deliveredAt, d.lastError?.length ?? null]),
    [[a2.id, 'delivered', 1, 204, null, 8100, null], [a1.id, 'failed', 2, null, null, null, 300]],
  );
  assert.deepEqual((await s.deliveries(b.id, 10)).map((d) => [d.status, d.attempts, d.lastStatus]), [['delivered', 1, 200]]);
  assert.deepEqual((await s.deliveries(a.id, 1)).map((d) => d.id), [a2.id]);
  assert.deepEqual([...(await s.pendingCounts())], [[off.id, 1]]);
  assert.deepEqual(await s.heads(), []);
});

testBackends("a stale claim's marks are refused: a sender that stalled past its lease neither breaks the next claim's lease nor undoes its delivery", async (t, backend) => {
  // Instance A claims, stalls past its lease; instance B claims the delivery again.
  const [a, b] = await openTwo(t, backend);
  const w = await a.create(hook(), 'user:admin', 0);
  const d1 = delivery(w.id, 1);
  await a.enqueue([d1], 1000);
  const [byA] = await a.claimDue(1000, 5000);
  const [byB] = await b.claimDue(6000, 5000);
  assert.deepEqual([byA?.id, byB?.id, byB?.nextAttemptAt], [d1.id, d1.id, 11_000]);
  assert.notEqual(byA!.claim, byB!.claim);

  // A's late outcome (a failure to retry at 7000) is refused: B's lease holds, no attempt counted.
  assert.equal(await a.markFailed(d1.id, byA!.claim, 6500, { status: 503, error: 'HTTP 503' }, 7000), false);
  assert.equal(await a.release(d1.id, byA!.claim, 6500), false);
  assert.deepEqual(await b.claimDue(7000, 5000), [], "B's claim still holds");
  assert.deepEqual((await b.heads()).map((d) => [d.nextAttemptAt, d.attempts, d.lastError]), [[11_000, 0, null]]);
  // A gives up (its delivery too old), then B delivers: delivered, as B recorded.
  assert.equal(await a.markFailed(d1.id, byA!.claim, 6600, { status: null, error: 'ECONNREFUSED' }, null), false);
  assert.equal(await a.markDelivered(d1.id, byA!.claim, 6700, 200), false);
  assert.equal(await b.markDelivered(d1.id, byB!.claim, 7000, 204), true);
  assert.deepEqual((await a.deliveries(w.id, 10)).map((d) => [d.status, d.attempts, d.lastStatus, d.deliveredAt, d.lastError]), [['delivered', 1, 204, 7000, null]]);
  assert.equal(await b.markDelivered(d1.id, byB!.claim, 7100, 200), false, 'recorded once');
});

testBackends('a sender whose claim was taken over records nothing of its late attempt, and says so at debug', async (t, backend) => {
  const [mine, other] = await openTwo(t, backend);
  const leaseMs = 2 * 5000;
  let otherClaim: { until: number; claim: string } | undefined;
  // The receiver: while this sender's request is in flight, another instance (its clock past this
  // claim's lease) claims the delivery again; then this attempt is answered 503.
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      const later = Date.now() + 10 * leaseMs;
      void other.claimDue(later, leaseMs).then((claimed) => {
        otherClaim = { until: later + leaseMs, claim: claimed[0]!.claim };
        res.writeHead(503).end('busy');
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const w = await mine.create(hook({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook` }), 'user:admin', 0);
  const d1 = delivery(w.id, 7);
  await mine.enqueue([d1], Date.now());

  const log = captureLogger('debug');
  const { privateKey } = generateKeyPairSync('ed25519');
  const sender = createWebhookSender({ store: mine, alerts: noAlertChanges, privateKey, settings: { timeoutMs: 5000, retryBaseMs: 20, retryMaxMs: 200, maxAgeMs: 60_000 }, logger: log.logger });
  t.after(() => sender.stop());
  sender.start();
  const line = await log.waitFor((l) => /claimed again by another sender/.test(l.msg));
  await sender.stop();
  assert.deepEqual([line.level, line.delivery, line.msg], [20, d1.id, 'webhook delivery claimed again by another sender: its failed attempt not recorded']);
  assert.ok(!log.lines.some((l) => /will retry/.test(l.msg)), 'no retry logged for an attempt not recorded');
  // The other instance's claim is intact: due at the end of its lease, no attempt counted, and its mark is taken.
  assert.deepEqual((await other.heads()).map((d) => [d.id, d.nextAttemptAt, d.attempts, d.lastError]), [[d1.id, otherClaim!.until, 0, null]]);
  assert.equal(await other.markDelivered(d1.id, otherClaim!.claim, Date.now(), 200), true);
}, { timeout: 30_000 });

test('PostgreSQL: stale marks of one instance racing the next claimer\'s marks never undo its deliveries', { skip: postgresSkip() }, async (t) => {
  const [a, b] = await openTwo(t, 'postgres', 10_000);
  const ids: string[] = [];
  for (let h = 0; h < 30; h++) {
    const w = await a.create(hook({ name: `h${h}` }), 'user:admin', 0);
    const d = delivery(w.id, 1);
    ids.push(d.id);
    await a.enqueue([d], 1000);
  }
  const byA = await a.claimDue(1000, 5000);
  const byB = await b.claimDue(6000, 5000);
  assert.deepEqual([byA.length, byB.length], [30, 30]);
  // All at once: A gives up every delivery (stale), B records every one delivered.
  const [stale, fresh] = await Promise.all([
    Promise.all(byA.map((d) => a.markFailed(d.id, d.claim, 6500, { status: null, error: 'too old' }, null))),
    Promise.all(byB.map((d) => b.markDelivered(d.id, d.claim, 6500, 200))),
  ]);
  assert.deepEqual([stale.filter(Boolean).length, fresh.filter(Boolean).length], [0, 30]);
  const rows = (await Promise.all((await a.list()).map((w) => a.deliveries(w.id, 10)))).flat();
  assert.deepEqual(rows.map((d) => [d.status, d.attempts]), ids.map(() => ['delivered', 1]));
});

testBackends('a test delivery is recorded as attempted; the outbox is bounded: finished rows go first, then the oldest waiting are given up', async (t, backend) => {
  const s = await open(t, backend, 4);
  const a = await s.create(hook(), 'user:admin', 0);
  const tested = await s.recordAttempted(delivery(a.id, null, 'test'), 500, { ok: true, status: 200, error: null });
  assert.deepEqual([tested.status, tested.attempts, tested.deliveredAt, tested.lastStatus, tested.alertId, tested.event], ['delivered', 1, 500, 200, null, 'test']);
  const failedTest = await s.recordAttempted(delivery(a.id, null, 'test'), 600, { ok: false, status: null, error: 'ECONNREFUSED' });
  assert.deepEqual([failedTest.status, failedTest.lastError], ['failed', 'ECONNREFUSED']);
  const queued = [1, 2, 3, 4].map((i) => delivery(a.id, i));
  assert.equal(await s.enqueue(queued, 1000), 4);
  // 6 rows > 4: the two finished test rows are deleted, every waiting one kept.
  assert.deepEqual((await s.deliveries(a.id, 10)).map((d) => d.status), ['pending', 'pending', 'pending', 'pending']);
  assert.equal(await s.enqueue([delivery(a.id, 5)], 1100), 1);
  // Only waiting rows: the oldest is given up (kept as failed until pruned).
  const rows = await s.deliveries(a.id, 10);
  assert.deepEqual(rows.map((d) => [d.alertId, d.status, d.lastError]), [
    [5, 'pending', null], [4, 'pending', null], [3, 'pending', null], [2, 'pending', null], [1, 'failed', 'given up: outbox full'],
  ]);
  assert.equal((await s.pendingCounts()).get(a.id), 4);
});

test('PostgreSQL: two fleet instances claiming due deliveries at once claim each one exactly once', { skip: postgresSkip() }, async (t) => {
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 6 }), openPgPool(url, { max: 6 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, WEBHOOK_PG_MIGRATIONS);
  const stores = pools.map((p) => pgWebhookStore(p, { maxOutbox: 10_000 }));
  const hooks = 40;
  const perHook = 3;
  const all = new Set<string>();
  for (let h = 0; h < hooks; h++) {
    const w = await stores[0]!.create(hook({ name: `h${h}` }), 'user:admin', 0);
    const rows = Array.from({ length: perHook }, (_, i) => delivery(w.id, i + 1));
    for (const r of rows) all.add(r.id);
    await stores[0]!.enqueue(rows, 1000);
  }
  const claims = new Map<string, number>();
  let at = 1000;
  for (let round = 0; round < perHook + 2; round++) {
    // Each instance claims three times concurrently, both at once: twelve claims racing for the heads.
    const batches = await Promise.all(Array.from({ length: 6 }, (_, i) => stores[i % 2]!.claimDue(at, 60_000)));
    const claimed = batches.flat();
    for (const d of claimed) claims.set(d.id, (claims.get(d.id) ?? 0) + 1);
    const twice = [...claims].filter(([, n]) => n > 1);
    assert.deepEqual(twice, [], `round ${round}: a delivery claimed more than once`);
    if (round < perHook) assert.equal(claimed.length, hooks, `round ${round}: every webhook's head claimed`);
    await Promise.all(claimed.map((d, i) => stores[i % 2]!.markDelivered(d.id, d.claim, at, 200)));
    at += 1;
  }
  assert.deepEqual([...claims.keys()].sort(), [...all].sort(), 'every delivery claimed');
  assert.deepEqual([...(await stores[1]!.pendingCounts())], []);
});

test('PostgreSQL: two fleet instances sending from one outbox send each delivery exactly once', { skip: postgresSkip(), timeout: 60_000 }, async (t) => {
  const received = new Map<string, number>();
  let total = 0;
  let onRequest = () => {};
  const server = createServer((req, res) => {
    const id = String(req.headers[DELIVERY_HEADER]);
    req.resume();
    req.on('end', () => {
      received.set(id, (received.get(id) ?? 0) + 1);
      total++;
      res.writeHead(200).end('ok');
      onRequest();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const dbUrl = await pgDatabaseUrl();
  const pools = [openPgPool(dbUrl, { max: 4 }), openPgPool(dbUrl, { max: 4 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, WEBHOOK_PG_MIGRATIONS);
  const stores = pools.map((p) => pgWebhookStore(p, { maxOutbox: 10_000 }));
  const queued = new Set<string>();
  for (let h = 0; h < 20; h++) {
    const w = await stores[0]!.create(hook({ name: `h${h}`, url: `${url}/h${h}` }), 'user:admin', 0);
    const rows = [1, 2, 3].map((i) => delivery(w.id, i));
    for (const r of rows) queued.add(r.id);
    await stores[0]!.enqueue(rows, Date.now());
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const settings = { timeoutMs: 5000, retryBaseMs: 20, retryMaxMs: 200, maxAgeMs: 60_000 };
  const senders = stores.map((store) => createWebhookSender({ store, alerts: noAlertChanges, privateKey, settings, logger: pino({ level: 'silent' }) }));
  const allSent = new Promise<void>((resolve) => {
    onRequest = () => {
      if (received.size === queued.size) resolve();
    };
  });
  for (const s of senders) s.start();
  await allSent;
  // The last answers are recorded by the senders after the receiver saw the requests.
  await waitFor(async () => (await stores[0]!.pendingCounts()).size === 0, 'the outbox drained');
  // Stopping waits for every attempt in flight: a duplicate, had there been one, has arrived by now.
  await Promise.all(senders.map((s) => s.stop()));
  assert.deepEqual([...received.keys()].sort(), [...queued].sort());
  assert.deepEqual([...received].filter(([, n]) => n > 1), [], 'no delivery sent twice');
  assert.equal(total, queued.size);
  assert.deepEqual([...(await stores[0]!.pendingCounts())], []);
});

testBackends('an outbox made before claim tokens gains the column; its waiting deliveries are claimed and marked', async (t, backend) => {
  const d = delivery(1, 1);
  const hookRow = ['ops', 'https://hooks.example/x', 'json', '[]', '[]', 0, 'user:admin', 0] as const;
  let store: WebhookStore;
  if (backend === 'postgres') {
    const pool = openPgPool(await pgDatabaseUrl());
    t.after(() => pool.end());
    await migratePg(pool, WEBHOOK_PG_MIGRATIONS.slice(0, 1));
    await pool.query('INSERT INTO webhooks (name, url, format, types, lines, enabled, created_at, created_by, updated_at) VALUES ($1, $2, $3, $4, $5, true, $6, $7, $8)', [...hookRow]);
    await pool.query("INSERT INTO webhook_deliveries (id, webhook_id, alert_id, event, body, status, created_at, next_at) VALUES ($1, 1, 1, 'raised', $2, 'pending', 1000, 1000)", [d.id, d.body]);
    assert.deepEqual(await migratePg(pool, WEBHOOK_PG_MIGRATIONS), ['webhooks-2', 'webhooks-3']);
    store = pgWebhookStore(pool, { maxOutbox: 100 });
  } else {
    const file = join(await tempDir(t), 'fleet.db');
    const db = new Database(file);
    db.exec(`CREATE TABLE webhooks (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, url TEXT NOT NULL, format TEXT NOT NULL, types TEXT NOT NULL,
               lines TEXT NOT NULL, enabled INTEGER NOT NULL, created_at INTEGER NOT NULL, created_by TEXT NOT NULL, updated_at INTEGER NOT NULL);
             CREATE TABLE webhook_deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, webhook_id INTEGER NOT NULL, alert_id INTEGER,
               event TEXT NOT NULL, body TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, next_at INTEGER,
               delivered_at INTEGER, last_status INTEGER, last_error TEXT, UNIQUE (webhook_id, alert_id, event));`);
    db.prepare('INSERT INTO webhooks (name, url, format, types, lines, enabled, created_at, created_by, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?)').run(...hookRow);
    db.prepare("INSERT INTO webhook_deliveries (id, webhook_id, alert_id, event, body, status, created_at, next_at) VALUES (?, 1, 1, 'raised', ?, 'pending', 1000, 1000)").run(d.id, d.body);
    db.close();
    store = openSqliteWebhookStore({ file, maxOutbox: 100 });
    t.after(() => store.close());
  }
  const [claimed] = await store.claimDue(1000, 5000);
  assert.equal(claimed?.id, d.id);
  assert.equal(await store.markDelivered(d.id, claimed!.claim, 1100, 200), true);
  assert.deepEqual((await store.deliveries(1, 10)).map((x) => [x.status, x.attempts]), [['delivered', 1]]);
});
