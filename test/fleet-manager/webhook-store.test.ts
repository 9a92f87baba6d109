/**
 * The webhook store itself (issue 17, 18), the same cases on SQLite (a temp dir) and PostgreSQL:
 * webhooks, the outbox (one delivery per webhook, alert and event; heads in order; claims with a
 * lease; attempts and giving up; the bound); and on PostgreSQL, two fleet instances (two pools)
 * claiming due deliveries at once never claim one delivery twice, and two senders on one outbox
 * send each delivery to a real receiver exactly once.
 */
import assert from 'node:assert/strict';
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
import { tempDir } from './helpers.js';

async function open(t: TestContext, backend: StoreBackend, maxOutbox = 1000): Promise<WebhookStore> {
  if (backend === 'postgres') return pgWebhookStore(await pgTestPool(t, WEBHOOK_PG_MIGRATIONS), { maxOutbox });
  const store = openSqliteWebhookStore({ file: join(await tempDir(t), 'fleet.db'), maxOutbox });
  t.after(() => store.close());
  return store;
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
  await s.markFailed(a1.id, 1500, { status: 503, error: 'HTTP 503' }, 7000);
  await s.markDelivered(b1.id, 1500, 200);
  assert.deepEqual(await s.claimDue(6999, 5000), []);
  const retry = await s.claimDue(7000, 5000);
  assert.deepEqual(retry.map((d) => [d.id, d.attempts, d.lastStatus, d.lastError]), [[a1.id, 1, 503, 'HTTP 503']]);
  // Released untried (the sender stopping): due again at once, attempts unchanged.
  await s.release(a1.id, 7000);
  const again = await s.claimDue(7000, 5000);
  assert.deepEqual(again.map((d) => [d.id, d.attempts]), [[a1.id, 1]]);
  await s.markFailed(a1.id, 8000, { status: null, error: 'E'.repeat(400) }, null);
  const [head] = await s.claimDue(8000, 5000);
  assert.equal(head?.id, a2.id, 'the next of the webhook once the first is given up');
  await s.markDelivered(a2.id, 8100, 204);
  // A mark on a finished delivery changes nothing.
  await s.markDelivered(a1.id, 9000, 200);
  await s.markFailed(b1.id, 9000, { status: 500, error: 'late' }, 9999);

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
    await Promise.all(claimed.map((d, i) => stores[i % 2]!.markDelivered(d.id, at, 200)));
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
  const senders = stores.map((store) => createWebhookSender({ store, privateKey, settings, logger: pino({ level: 'silent' }) }));
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
