/**
 * The console in a real browser (Debian's Chromium) on a fleet with real edges: a real edge agent
 * inspecting frames, and edges that are real MQTT clients with their own credentials. A viewer
 * signs in, sees every edge with its state, sees changes arrive over the event stream without a
 * reload (fresh telemetry, an edge going offline, telemetry going stale), drills down to an edge,
 * loses the session and lands on the sign-in form, and signs out; all under the console's CSP
 * with no console error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { DEMO_MODEL_NAME, ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

const model = { name: 'inspect', version: '1' };

test('a viewer signs in and watches the plant live: states, fresh and stale telemetry, an edge going offline, drill-down, session end', { skip: chromiumSkip(), timeout: 120_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  await fleet.creds.token('viewer'); // makes the user test-viewer
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;

  // A real edge agent on line-A, inspecting real (generated) frames.
  const dataDir = join(fleet.dataDir, 'press-1');
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: 'press-1',
      line: 'line-A',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, 'press-1', join(dataDir, 'fleet.credential')) },
      model: { dir: await ensureDemoModel(join(fleet.dataDir, 'models')) },
      sync: { batchSize: 10, intervalMs: 100 },
      telemetry: { intervalMs: 500 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  for (let seed = 1; seed <= 3; seed++) await agent.inspect(await generatePartImage({ seed, defect: seed === 2 ? 'scratch' : null, format: 'jpeg' }), { camera: 'cam1', source: 'http' });

  // Two more edges, real MQTT clients with enrolled credentials: cam-2 on line-A, and pack-1
  // on line-B, which drops off the network before anyone looks.
  const cam2 = await connectSimEdge(fleet.mqttUrl, { id: 'cam-2', credential: await fleet.creds.enrollEdge('cam-2'), line: 'line-A', localModel: model });
  t.after(() => cam2.close());
  const pack1 = await connectSimEdge(fleet.mqttUrl, { id: 'pack-1', credential: await fleet.creds.enrollEdge('pack-1'), line: 'line-B', localModel: model });
  await waitFor(async () => (await fleet.api('GET', '/api/edges')).body.edges.some((e: { id: string }) => e.id === 'pack-1'), 'pack-1 known');
  await pack1.close();
  await waitFor(async () => (await fleet.api('GET', '/api/edges')).body.edges.some((e: { id: string; online: boolean }) => e.id === 'pack-1' && !e.online), 'pack-1 offline');
  await waitFor(async () => (await fleet.api('GET', '/api/edges')).body.edges.some((e: { id: string; telemetry: unknown }) => e.id === 'press-1' && e.telemetry), 'press-1 telemetry');

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  const res = await page.goto(`${fleet.httpUrl}/`);
  assert.equal(res?.status(), 200);
  assert.match(res!.headers()['content-security-policy']!, /^default-src 'self'; script-src 'self'; style-src 'self'/);

  // Signed out: the sign-in form, nothing else.
  await page.getByLabel('Username').waitFor();
  assert.equal(await page.locator('.notice').count(), 0, 'a first visit is not a "session ended"');
  await page.screenshot({ path: join(shots, 'console-sign-in.png') });
  await page.getByLabel('Username').fill('test-viewer');
  await page.getByLabel('Password').fill('password of test-viewer');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const who = page.getByTestId('who');
  await who.waitFor();
  assert.match(await who.innerText(), /test-viewer\s+viewer/);

  // Every edge with its state, under its line.
  const row = (id: string) => page.locator(`tr[data-edge="${id}"]`);
  await page.locator('tr[data-edge="press-1"][data-health="online"]').waitFor();
  await page.locator('tr[data-edge="pack-1"][data-health="offline"]').waitFor();
  assert.equal(await page.locator('article[data-line="line-A"] tr[data-edge]').count(), 2);
  assert.equal(await page.locator('article[data-line="line-B"] tr[data-edge]').count(), 1);
  assert.match(await row('press-1').innerText(), new RegExp(`${DEMO_MODEL_NAME}@`));
  assert.match(await row('pack-1').innerText(), /Offline/);
  assert.equal(await page.getByTestId('link-state').innerText(), 'Live');

  // Live, without a reload: the page keeps this marker only if it is never loaded again.
  await page.evaluate(() => ((globalThis as unknown as { __sameLoad: boolean }).__sameLoad = true));
  await cam2.sendTelemetry({ 'inspect@1': { frames: 42, defects: 0 } });
  await page.locator('tr[data-edge="cam-2"][data-health="online"] td.figure').first().getByText('42').waitFor();
  // Its telemetry period is 1 s: after three without a report its figures are stale and greyed.
  await page.locator('tr[data-edge="cam-2"][data-health="stale"]').waitFor({ timeout: 10_000 });
  const grey = await row('cam-2').locator('td.figure').first().evaluate((td) => (globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }).getComputedStyle(td).color);
  assert.equal(grey, 'rgb(156, 163, 175)', 'stale figures are grey');
  await page.screenshot({ path: join(shots, 'console-overview.png') });

  // Drill-down to the real edge: its facts, the live chart, its events.
  await row('press-1').getByRole('link', { name: 'press-1' }).click();
  await page.locator('section.edge-page[data-edge="press-1"]').waitFor();
  await page.locator('.chart canvas').first().waitFor();
  // Frames while the page is open: the live figures and the chart move.
  const busy = page.locator('dl.telemetry').getByText(/ of [1-9]\d* frames/);
  for (let seed = 10; seed < 200 && !(await busy.isVisible()); seed++) await agent.inspect(await generatePartImage({ seed, defect: null, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
  await busy.waitFor();
  await page.locator('.events table, .events p.muted').first().waitFor();
  await page.screenshot({ path: join(shots, 'console-edge.png') });
  await page.getByRole('link', { name: 'Plant overview' }).first().click();

  // The real agent stops: the overview shows it offline as it happens.
  await agent.close();
  await page.locator('tr[data-edge="press-1"][data-health="offline"]').waitFor();
  assert.equal(await page.evaluate(() => (globalThis as unknown as { __sameLoad?: boolean }).__sameLoad), true, 'no reload');

  // A viewer has no controls: the only button is Sign out.
  assert.deepEqual(await page.getByRole('button').allInnerTexts(), ['Sign out']);

  // The session ends elsewhere (an admin resets the password): the next API call is a 401,
  // and the console returns to the sign-in form.
  const errorsBeforeSessionEnd = errors.length;
  assert.equal((await fleet.api('PUT', '/api/users/test-viewer/password', { password: 'a new password for the viewer' })).status, 200);
  await page.evaluate(() => ((globalThis as unknown as { location: { hash: string } }).location.hash = '#/edges/cam-2'));
  await page.getByText('Your session ended. Sign in again.').waitFor();
  await page.getByLabel('Username').waitFor();

  // Signing in again, then out.
  await page.getByLabel('Username').fill('test-viewer');
  await page.getByLabel('Password').fill('a new password for the viewer');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('Username').waitFor();
  assert.equal((await page.request.get(`${fleet.httpUrl}/api/auth/me`)).status(), 401, 'the session is gone at the fleet too');
  assert.deepEqual((await (await page.request.get(`${fleet.httpUrl}/api/auth/session`)).json()), { session: null });

  assert.deepEqual(await violations(), [], 'no CSP violation');
  // The only errors: the API's 401s after the session was ended (Chromium logs each refused load).
  assert.deepEqual(errors.slice(0, errorsBeforeSessionEnd), [], 'no console error while the session lasted');
  assert.deepEqual(errors.slice(errorsBeforeSessionEnd).filter((e) => !/status of 401 \(Unauthorized\)/.test(e)), []);
});
