/**
 * The fleet's alert rules and webhook sender start again after a stop (an instance that leads
 * again, fleet-manager/leader-work.ts): edge alarms raise alerts, listeners still hear them, and
 * the outbox is delivered.
 */
import { test } from 'node:test';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { createAlerts } from '../../fleet-manager/alerts.js';
import { openSqliteAlertStore } from '../../fleet-manager/alert-store.js';
import { FLEET_DEFAULTS } from '../../fleet-manager/config.js';
import type { InboundReport } from '../../fleet-manager/ingest.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { openSqliteWebhookStore } from '../../fleet-manager/webhook-store.js';
import { createWebhookSender } from '../../fleet-manager/webhook-sender.js';
import { envelope } from '../../protocol/validator.js';
import { tempDir } from './helpers.js';

test('alert rules stopped and started again raise edge alarms and tell their listeners', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteAlertStore({ file, maxAlerts: 1000 });
  const fleet = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  t.after(async () => {
    await store.close();
    await fleet.close();
  });
  const alerts = createAlerts({ store, fleet, settings: FLEET_DEFAULTS.alerts, logger: pino({ level: 'silent' }) });
  const heard: string[] = [];
  alerts.onChange((c) => void heard.push(`${c.event} ${c.alert.type}`));
  const alarm = (name: string): InboundReport => ({
    kind: 'events',
    edgeId: 'e1',
    message: envelope('events', 'e1', { kind: 'alert', level: 'warn', message: name, data: { alarm: name } }),
    meta: { receivedAt: Date.now(), replay: false },
  });

  await alerts.start();
  await alerts.stop();
  await alerts.start();
  t.after(() => alerts.stop());
  alerts.onReport(alarm('image-brightness'));
  await alerts.idle();
  assert.deepEqual((await store.listActive()).map((a) => a.type), ['image-brightness'], 'the alarm raised an alert after the restart');
  assert.deepEqual(heard, ['raised image-brightness'], 'the listener (the webhook outbox) still hears it');
});

test('a webhook sender stopped and started again delivers what is queued', { timeout: 10_000 }, async (t) => {
  const server = createServer((req: IncomingMessage, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  const file = join(await tempDir(t), 'fleet.db');
  const alertStore = openSqliteAlertStore({ file, maxAlerts: 1000 });
  const fleet = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  const hooks = openSqliteWebhookStore({ file, maxOutbox: 1000 });
  t.after(async () => {
    await hooks.close();
    await alertStore.close();
    await fleet.close();
  });
  await hooks.create({ name: 'ops', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, format: 'json', types: [], lines: [], enabled: true }, 'user:test', Date.now());
  const sender = createWebhookSender({ store: hooks, alerts: alertStore, privateKey: generateKeyPairSync('ed25519').privateKey, settings: FLEET_DEFAULTS.webhooks, logger: pino({ level: 'silent' }) });
  const alerts = createAlerts({ store: alertStore, fleet, settings: FLEET_DEFAULTS.alerts, logger: pino({ level: 'silent' }) });
  alerts.onChange(() => sender.changed());
  sender.start();
  await sender.stop();
  sender.start();
  t.after(() => sender.stop());
  await alerts.start();
  t.after(() => alerts.stop());
  const posted = once(server, 'request');
  alerts.onReport({
    kind: 'events',
    edgeId: 'e1',
    message: envelope('events', 'e1', { kind: 'alert', level: 'error', message: 'dark', data: { alarm: 'image-brightness' } }),
    meta: { receivedAt: Date.now(), replay: false },
  });
  const [req] = (await posted) as [IncomingMessage];
  assert.equal(req.method, 'POST');
  assert.equal(req.url, '/hook');
});
