/**
 * No alert notification is lost to a crash (issue 17), on SQLite and PostgreSQL: alert changes
 * committed by a fleet that died before it queued them for its webhooks (no listener ran) are
 * queued and delivered once a sender runs again, each to the webhooks its filters match, with the
 * alert as it was at that change; a sender started after them delivered sends nothing twice; and
 * a webhook created later gets only the changes after it.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { openSqliteAlertStore, type AlertInput, type AlertStore } from '../../fleet-manager/alert-store.js';
import type { AlertNotification } from '../../fleet-manager/alert-schemas.js';
import { ALERT_PG_MIGRATIONS, pgAlertStore } from '../../fleet-manager/pg/alert-store-pg.js';
import { WEBHOOK_PG_MIGRATIONS, pgWebhookStore } from '../../fleet-manager/pg/webhook-store-pg.js';
import { createWebhookSender } from '../../fleet-manager/webhook-sender.js';
import { openSqliteWebhookStore, type WebhookStore } from '../../fleet-manager/webhook-store.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from './helpers.js';

/** The alert and webhook stores on one database, as one fleet holds them. */
async function openStores(t: TestContext, backend: StoreBackend): Promise<{ alerts: AlertStore; hooks: WebhookStore }> {
  if (backend === 'postgres') {
    const pool = await pgTestPool(t, [...ALERT_PG_MIGRATIONS, ...WEBHOOK_PG_MIGRATIONS]);
    return { alerts: pgAlertStore(pool, { maxAlerts: 1000 }), hooks: pgWebhookStore(pool, { maxOutbox: 1000 }) };
  }
  const file = join(await tempDir(t), 'fleet.db');
  const alerts = openSqliteAlertStore({ file, maxAlerts: 1000 });
  const hooks = openSqliteWebhookStore({ file, maxOutbox: 1000 });
  t.after(async () => {
    await hooks.close();
    await alerts.close();
  });
  return { alerts, hooks };
}

interface Received {
  path: string;
  delivery: string;
  body: string;
}

/** A receiver that answers 200 and records every request; `until(n)` settles once n have arrived. */
async function startReceiver(t: TestContext) {
  const received: Received[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url ?? '', delivery: String(req.headers['x-osprey-delivery']), body: Buffer.concat(chunks).toString('utf8') });
      res.end('ok');
      for (const w of waiters.filter((x) => received.length >= x.n)) w.resolve();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    until: (n: number) => new Promise<void>((resolve) => (received.length >= n ? resolve() : waiters.push({ n, resolve }))),
  };
}

const alarm = (type: string, edgeId: string): AlertInput => ({ type, source: 'edge', subject: edgeId, edgeId, line: 'L1', severity: 'warning', message: type, data: null });

testBackends('alert changes committed by a fleet that died before queueing them are delivered when a sender runs again; none twice; a later webhook gets only later changes', async (t, backend) => {
  const { alerts, hooks } = await openStores(t, backend);
  const rx = await startReceiver(t);
  const all = await hooks.create({ name: 'all', url: `${rx.url}/all`, format: 'json', types: [], lines: [], enabled: true }, 'user:admin', 0);
  const blurOnly = await hooks.create({ name: 'blur', url: `${rx.url}/blur`, format: 'chat', types: ['image-blur'], lines: [], enabled: true }, 'user:admin', 0);
  const { privateKey } = generateKeyPairSync('ed25519');
  const newSender = () =>
    createWebhookSender({ store: hooks, alerts, privateKey, settings: { timeoutMs: 5000, retryBaseMs: 20, retryMaxMs: 200, maxAgeMs: 60_000 }, logger: pino({ level: 'silent' }) });

  // The fleet that dies: its changes are committed, and no listener ever heard of them.
  const blur = (await alerts.raise(alarm('image-blur', 'e1'), 1000)).alert;
  await alerts.raise(alarm('image-brightness', 'e2'), 1100);
  await alerts.raise(alarm('image-blur', 'e1'), 1150); // a repeat: told to no one
  await alerts.acknowledge(blur.id, 'user:ann', 1200);
  await alerts.resolve('image-blur', 'e1', 1300);

  // The fleet starts again: its sender finds them in the change log.
  const first = newSender();
  t.after(() => first.stop());
  first.start();
  await rx.until(7);
  // The last answers are recorded after the receiver saw the requests; stop() would abort them (sent again, same id).
  await waitFor(async () => (await hooks.pendingCounts()).size === 0, 'the outbox drained');
  await first.stop();
  const byPath = (path: string) => rx.received.filter((r) => r.path === path);
  assert.deepEqual(
    byPath('/all').map((r) => {
      const n = JSON.parse(r.body) as AlertNotification;
      return [n.event, n.alert.type, n.alert.state, n.alert.acknowledgedBy];
    }),
    [
      ['raised', 'image-blur', 'open', null],
      ['raised', 'image-brightness', 'open', null],
      ['acknowledged', 'image-blur', 'acknowledged', 'user:ann'],
      ['resolved', 'image-blur', 'resolved', 'user:ann'],
    ],
    'every change told, in order, each with the alert as it was then',
  );
  assert.deepEqual(
    byPath('/blur').map((r) => (JSON.parse(r.body) as { text: string }).text.split(' ').slice(0, 4).join(' ')),
    ['[Osprey] WARNING image-blur raised', '[Osprey] WARNING image-blur acknowledged', '[Osprey] WARNING image-blur resolved'],
    'the filtered webhook got only its type, in its format',
  );

  // Another start (another instance taking over): a new webhook, a new change, nothing resent.
  const later = await hooks.create({ name: 'later', url: `${rx.url}/later`, format: 'json', types: [], lines: [], enabled: true }, 'user:admin', 0);
  const second = newSender();
  t.after(() => second.stop());
  second.start();
  await alerts.raise(alarm('image-brightness', 'e3'), 2000);
  second.changed();
  await rx.until(9);
  await waitFor(async () => (await hooks.pendingCounts()).size === 0, 'the outbox drained');
  await second.stop();
  assert.deepEqual(byPath('/later').map((r) => (JSON.parse(r.body) as AlertNotification).alert.edgeId), ['e3'], 'a webhook made later gets only the changes after it');
  assert.equal(byPath('/all').length, 5);
  assert.equal(new Set(rx.received.map((r) => r.delivery)).size, rx.received.length, 'no delivery sent twice');
  // The outbox agrees: every delivery delivered once, none waiting.
  const outbox = await Promise.all([all, blurOnly, later].map((h) => hooks.deliveries(h.id, 100)));
  assert.deepEqual(outbox.map((ds) => ds.map((d) => [d.status, d.attempts])), [5, 3, 1].map((n) => Array.from({ length: n }, () => ['delivered', 1])));
  assert.equal(await second.queueChanges(), 0, 'nothing left in the log after the cursor');
});
