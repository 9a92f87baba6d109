/**
 * The Alerts screen and Admin › Webhooks in a real browser (Debian's Chromium) on a real fleet
 * with an edge played by a real MQTT client: the header counts open alerts; an operator
 * acknowledges one and is shown as who did; the edge clears it and the screen shows it resolved
 * live over the event stream, and again after a reload; filters narrow the list; a viewer sees no
 * Acknowledge button; an admin adds a webhook, sends a test to a real local receiver, sees the
 * delivery, and deletes the webhook.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { captureLogger, tempDir } from '../fleet-manager/helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';
import type { Page } from 'playwright-core';

async function signIn(page: Page, url: string, who: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByLabel('Username').fill(who);
  await page.getByLabel('Password').fill(`password of ${who}`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();
}

test('alerts: counted in the header, acknowledged by an operator (shown who), resolved when the edge clears it; webhooks managed and tested by an admin', { skip: chromiumSkip(), timeout: 120_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const log = captureLogger('info');
  const fleet = await startFleet(t, { logger: log.logger });
  await fleet.creds.token('operator');
  await fleet.creds.token('viewer');
  await fleet.creds.token('admin');

  const edge = await connectSimEdge(fleet.mqttUrl, { id: 'press-1', credential: await fleet.creds.enrollEdge('press-1'), line: 'line-A', localModel: { name: 'inspect', version: '1' } });
  t.after(() => edge.close());
  const alarm = async (data: Record<string, unknown>, message: string, level: 'warn' | 'error' | 'info' = 'warn') =>
    edge.client.publishAsync(edgeTopic('press-1', 'events'), encodeMessage(envelope('events', 'press-1', { kind: 'alert', level, message, data })), { qos: 1 });
  await alarm({ alarm: 'image-blur', sharpness: 2.1 }, 'image blur: sharpness 2.1 below 8 for 50 frames');
  await log.waitFor((l) => l.msg === 'alert raised' && l.type === 'image-blur');
  await alarm({ alarm: 'score-drift', psi: 0.31 }, 'score drift: PSI 0.31 over the last 500 frames', 'error');
  await log.waitFor((l) => l.msg === 'alert raised' && l.type === 'score-drift');

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await signIn(page, fleet.httpUrl, 'test-operator');
  await page.getByTestId('open-alerts').getByText('2').waitFor();
  await page.getByTestId('alerts-link').click();
  const blur = page.locator('tr[data-type="image-blur"]');
  await blur.waitFor();
  assert.match(await blur.innerText(), /warning\s+image-blur\s+image blur: sharpness 2\.1 below 8 for 50 frames\s+press-1\s+line line-A/i);
  assert.equal(await page.locator('tr[data-type="score-drift"] .severity').textContent(), 'critical');

  // The operator acknowledges it: who and when are shown, the button goes.
  await blur.getByRole('button', { name: 'Acknowledge' }).click();
  await page.locator('tr[data-type="image-blur"][data-state="acknowledged"]').waitFor();
  assert.match(await blur.getByTestId('acked').innerText(), /by user:test-operator/);
  assert.equal(await blur.getByRole('button', { name: 'Acknowledge' }).count(), 0);
  const stored = (await fleet.api('GET', '/api/alerts?type=image-blur')).body.items[0];
  assert.deepEqual([stored.state, stored.acknowledgedBy], ['acknowledged', 'user:test-operator']);

  // The edge clears it: live over the event stream (no reload), the row turns resolved and the header counts one.
  await page.getByLabel('State').selectOption('');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('tr[data-type="image-blur"][data-state="acknowledged"]').waitFor();
  await alarm({ alarm: 'image-blur', cleared: true, sharpness: 11 }, 'image sharp again', 'info');
  await page.locator('tr[data-type="image-blur"][data-state="resolved"]').waitFor();
  assert.notEqual((await page.locator('tr[data-type="image-blur"]').getByTestId('resolved').innerText()).trim(), '–');
  await page.getByTestId('open-alerts').getByText('1').waitFor();
  // A reload (as after a dropped stream) reads the same from GET /api/alerts.
  await page.reload();
  await page.getByLabel('State').selectOption('');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('tr[data-type="image-blur"][data-state="resolved"]').waitFor();
  await page.screenshot({ path: join(shots, 'console-alerts.png') });

  // Filters: resolved only; by edge; a line with none.
  await page.getByLabel('State').selectOption('resolved');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.locator('tr[data-type="score-drift"]').waitFor({ state: 'detached' });
  assert.equal(await page.locator('tbody tr').count(), 1);
  await page.getByLabel('State').selectOption('active');
  await page.getByLabel('Line').fill('line-B');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.getByText('No alerts in force.').waitFor();

  // A tablet on the line (portrait): the table fits the width and Acknowledge is a finger-sized target.
  await page.setViewportSize({ width: 800, height: 1280 });
  await page.getByLabel('Line').fill('');
  await page.getByRole('button', { name: 'Filter' }).click();
  const drift = page.locator('tr[data-type="score-drift"]');
  await drift.waitFor();
  const overflow = await page.evaluate(() => {
    const d = (globalThis as unknown as { document: { documentElement: { scrollWidth: number; clientWidth: number } } }).document.documentElement;
    return d.scrollWidth - d.clientWidth;
  });
  assert.equal(overflow, 0, 'no sideways scrolling on a portrait tablet');
  const ack = drift.getByRole('button', { name: 'Acknowledge' });
  const box = (await ack.boundingBox())!;
  await page.screenshot({ path: join(shots, 'alerts-tablet.png') });
  assert.ok(box.height >= 32 && box.width >= 44 && box.x + box.width <= 800, `Acknowledge is in view and big enough to tap: ${JSON.stringify(box)}`);
  await page.screenshot({ path: join(shots, 'alerts-tablet.png') });
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');

  // A viewer sees the alerts but no Acknowledge button.
  const viewer = await watchedPage(browser);
  await signIn(viewer.page, fleet.httpUrl, 'test-viewer');
  await viewer.page.getByTestId('alerts-link').click();
  await viewer.page.locator('tr[data-type="score-drift"]').waitFor();
  assert.equal(await viewer.page.getByRole('button', { name: 'Acknowledge' }).count(), 0);
  assert.equal((await viewer.page.request.post(`${fleet.httpUrl}/api/alerts/1/ack`)).status(), 403);

  // Admin › Webhooks: add one pointing at a real local receiver, test it, see the delivery, delete it.
  const got: { path: string; body: string; delivery: string }[] = [];
  const receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      got.push({ path: req.url ?? '', body: Buffer.concat(chunks).toString('utf8'), delivery: String(req.headers['x-osprey-delivery']) });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
  const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/T0KEN`;
  const admin = await watchedPage(browser);
  await signIn(admin.page, fleet.httpUrl, 'test-admin');
  await admin.page.getByRole('link', { name: 'Admin' }).click();
  const hooks = admin.page.locator('[data-part="webhooks"]');
  await hooks.getByText('No webhooks').waitFor();
  await hooks.getByLabel('Name').fill('line-A chat');
  await hooks.getByLabel('URL').fill(hookUrl);
  await hooks.getByLabel('Format').selectOption('chat');
  await hooks.getByLabel('Alert types').fill('image-blur, score-drift');
  await hooks.getByLabel('Lines').fill('line-A');
  await hooks.getByRole('button', { name: 'Add webhook' }).click();
  const row = hooks.locator('tr[data-webhook="line-A chat"]');
  await row.waitFor();
  assert.doesNotMatch(await row.innerText(), /T0KEN/, 'the URL path (a token) is not shown');
  assert.match(await row.innerText(), /line-A chat\s+http:\/\/127\.0\.0\.1:\d+\/…\s+chat\s+image-blur, score-drift\s+line-A\s+0/);
  await row.getByRole('button', { name: 'Test' }).click();
  await hooks.locator('tr[data-delivery="delivered"]').getByText('test').waitFor();
  assert.equal(got.length, 1);
  assert.equal(got[0]!.path, '/hooks/T0KEN');
  assert.match(JSON.parse(got[0]!.body).text as string, /^\[Osprey\] INFO test test/);
  await hooks.screenshot({ path: join(shots, 'console-webhooks.png') });
  await row.getByRole('button', { name: 'Delete' }).click();
  await admin.page.getByRole('button', { name: 'Delete webhook' }).click();
  await hooks.getByText('No webhooks').waitFor();
  assert.deepEqual((await fleet.api('GET', '/api/webhooks')).body.webhooks, []);
  assert.deepEqual(await admin.violations(), [], 'no CSP violation (admin)');
  assert.deepEqual(admin.errors, [], 'no console error (admin)');
});
