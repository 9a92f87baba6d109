/**
 * The fleet's alert rules start again after a stop (an instance that leads again,
 * fleet-manager/leader-work.ts): edge alarms raise alerts and listeners still hear them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { createAlerts } from '../../fleet-manager/alerts.js';
import { openSqliteAlertStore } from '../../fleet-manager/alert-store.js';
import { FLEET_DEFAULTS } from '../../fleet-manager/config.js';
import type { InboundReport } from '../../fleet-manager/ingest.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
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
  alerts.onReport(alarm('image-dark'));
  await alerts.idle();
  assert.deepEqual((await store.listActive()).map((a) => a.type), ['image-dark'], 'the alarm raised an alert after the restart');
  assert.deepEqual(heard, ['raised image-dark'], 'the listener (the webhook outbox) still hears it');
});
