/**
 * Issue 16, journey 3, in a real browser (Debian's Chromium) on a fleet with real edges: a real
 * edge agent inspects generated parts and uploads the images it keeps; an MQTT edge with its own
 * credential sends frames with boxes and uploads their images. An inspector signs in, reviews 20
 * frames by keyboard (timed), undoes one, sees the line's accuracy figures follow the verdicts
 * given, exports the reviewed images; on a tablet-sized screen the touch buttons work; an
 * operator sees the queue without the review controls; a viewer has no Review screen.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import sharp from 'sharp';
import type { Page } from 'playwright-core';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { DEMO_MODEL_NAME, SYNTHETIC_DEFECTS, ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { startFleet, uploadTar } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { signedDirectoryArchive, testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

const LINE = 'line-A';

async function signIn(page: Page, url: string, username: string): Promise<void> {
  await page.goto(`${url}/`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(`password of ${username}`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();
}

test('an inspector reviews 20 frames by keyboard and sees the line accuracy change; export; tablet; roles', { skip: chromiumSkip(), timeout: 240_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  for (const role of ['inspector', 'operator', 'viewer'] as const) await fleet.creds.token(role); // makes the user test-<role>
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;

  // The demo model, registered so the fleet knows its labels and threshold, and run by a real agent.
  const modelDir = await ensureDemoModel(join(fleet.dataDir, 'models'));
  const registered = await uploadTar(fleet.httpUrl, DEMO_MODEL_NAME, await signedDirectoryArchive(modelDir), fleet.admin, { signed: false });
  assert.ok(registered.status === 201, JSON.stringify(registered.body));
  const dataDir = join(fleet.dataDir, 'press-1');
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: 'press-1',
      line: LINE,
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, 'press-1', join(dataDir, 'fleet.credential')) },
      model: { dir: modelDir },
      sync: { batchSize: 10, intervalMs: 100 },
      telemetry: { intervalMs: 1000 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  // Parts with defects (the agent keeps their images) and a few good ones (not kept, not queued).
  let kept = 0;
  for (let seed = 1; kept < 24 && seed < 120; seed++) {
    const defect = seed % 6 === 0 ? null : SYNTHETIC_DEFECTS[seed % SYNTHETIC_DEFECTS.length]!;
    const { record } = await agent.inspect(await generatePartImage({ seed: 1000 + seed, defect, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
    if (record.verdict === 'defect') kept++;
  }
  assert.equal(kept, 24, 'the demo model calls 24 generated defects');

  // An edge whose model draws boxes: two frames with their images, uploaded with its own credential.
  const credential = await fleet.creds.enrollEdge('cam-9');
  const cam9 = await connectSimEdge(fleet.mqttUrl, { id: 'cam-9', credential, line: LINE, localModel: { name: 'boxes', version: '1' } });
  t.after(() => cam9.close());
  const now = Date.now();
  await cam9.sendResults([
    { ts: now, camera: 'cam2', source: 'http', model: 'boxes@1', verdict: 'defect', label: 'scratch', score: 0.91, latencyMs: 3, detections: [{ label: 'scratch', score: 0.91, box: [60, 40, 200, 120] }] },
    { ts: now + 1, camera: 'cam2', source: 'http', model: 'boxes@1', verdict: 'defect', label: 'dent', score: 0.83, latencyMs: 3, detections: [{ label: 'dent', score: 0.83, box: [150, 90, 260, 170] }, { label: 'scratch', score: 0.6, box: [20, 20, 80, 60] }] },
  ]);
  for (const seq of [1, 2]) {
    const png = await generatePartImage({ seed: 50 + seq, defect: 'scratch', width: 320, height: 200, format: 'png' });
    const res = await fetch(`${fleet.httpUrl}/api/results/cam-9/${seq}/image`, { method: 'PUT', body: png, headers: { authorization: `Bearer ${credential}`, 'content-type': 'image/png' } });
    assert.equal(res.status, 201, await res.text());
  }
  // Every kept image has reached the fleet (the agent uploads in the background).
  await waitFor(async () => (await fleet.api('GET', `/api/review/queue?line=${LINE}&limit=200`)).body.items.length >= 26, 'kept images at the fleet', 60_000);
  const before = (await fleet.api('GET', `/api/lines/${LINE}/accuracy`)).body;
  assert.equal(before.total.reviewed, 0);

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await signIn(page, fleet.httpUrl, 'test-inspector');
  await page.getByRole('link', { name: 'Review' }).click();
  const frame = page.getByTestId('frame');
  await frame.waitFor();
  await page.getByText('No frame of this line has been reviewed yet.').waitFor();
  // The newest frames first: cam-9's, with their boxes drawn over the image.
  assert.equal(await frame.getAttribute('data-key'), 'cam-9//2');  // cam-9 sends no store id
  await page.locator('[data-testid="boxes"] rect').nth(1).waitFor();
  assert.equal(await page.locator('[data-testid="boxes"] rect').count(), 2);
  assert.match(await page.getByTestId('call').innerText(), /boxes@1[\s\S]*Defect dent[\s\S]*0\.83[\s\S]*threshold 0\.5/);
  await page.screenshot({ path: join(shots, 'console-review.png') });

  // 20 frames by keyboard: frame 2 relabelled (L, then the label's number), every fourth a false call, the rest confirmed.
  const given: { key: string; verdict: string; press: string }[] = [];
  let pickedLabel = '';
  const frameLoaded = () => page.waitForFunction(() => {
    const img = (globalThis as unknown as { document: { querySelector(s: string): { complete: boolean; naturalWidth: number } | null } }).document.querySelector('[data-testid="frame"] img');
    return !!img && img.complete && img.naturalWidth > 0;
  });
  const started = Date.now();
  for (let i = 0; i < 20; i++) {
    await frameLoaded();
    const key = (await frame.getAttribute('data-key'))!;
    const verdict = /Defect/.test(await page.getByTestId('call').innerText()) ? 'defect' : 'ok';
    const press = i === 1 ? 'L' : verdict === 'defect' && i % 4 === 3 ? 'F' : 'C';
    await page.keyboard.press(press);
    if (press === 'L') {
      const first = page.locator('.label-picker button').first();
      await first.waitFor();
      pickedLabel = (await first.innerText()).replace(/^1\s*/, '').trim();
      await page.keyboard.press('1');
    }
    given.push({ key, verdict, press });
    await page.locator(`[data-testid="frame"]:not([data-key="${key}"])`).waitFor();
  }
  const seconds = (Date.now() - started) / 1000;
  t.diagnostic(`20 frames reviewed by keyboard in ${seconds.toFixed(1)} s (${(20 / (seconds / 60)).toFixed(0)} frames a minute, headless Chromium)`);
  assert.ok(seconds < 60, `20 frames took ${seconds} s: slower than 20 a minute`);

  // The figures follow: false-call rate = false calls / reviewed defect calls.
  const falseCalls = given.filter((g) => g.press === 'F').length;
  const defectCalls = given.filter((g) => g.verdict === 'defect').length;
  const confirmedDefects = given.filter((g) => g.verdict === 'defect' && g.press === 'C').length;
  assert.ok(falseCalls >= 3 && defectCalls >= 16, JSON.stringify(given));
  const pct = (n: number, d: number) => `${(Math.round((n / d) * 1000) / 10).toLocaleString('en-US')} %`;
  await page.getByTestId('reviewed').getByText('20', { exact: true }).waitFor();
  assert.equal(await page.getByTestId('false-call-rate').innerText(), pct(falseCalls, defectCalls));
  assert.equal(await page.getByTestId('confirmed-defect-rate').innerText(), pct(confirmedDefects, defectCalls));
  const after = (await fleet.api('GET', `/api/lines/${LINE}/accuracy`)).body;
  assert.deepEqual([after.total.reviewed, after.total.falseCalls, after.total.relabelled, after.total.defectCalls], [20, falseCalls, 1, defectCalls]);
  const models = after.versions.map((v: { model: string }) => v.model);
  assert.ok(models.length === 2 && models.includes('boxes@1') && models.some((m: string) => m.startsWith(`${DEMO_MODEL_NAME}@`)), JSON.stringify(models));
  assert.equal(await page.locator('.accuracy-versions tbody tr').count(), 2);
  const relabelled = (await fleet.api('GET', `/api/results/cam-9/1/review`)).body;
  assert.deepEqual([relabelled.review, relabelled.label, relabelled.reviewer], ['relabelled', pickedLabel, 'user:test-inspector']);
  await page.screenshot({ path: join(shots, 'console-review-after.png') });

  // Undo (U) brings the last frame back and takes its review away; F then marks it a false call.
  const last = given[19]!;
  await page.keyboard.press('U');
  await page.locator(`[data-testid="frame"][data-key="${last.key}"]`).waitFor();
  await page.getByTestId('reviewed').getByText('19', { exact: true }).waitFor();
  const redo = last.verdict === 'defect' ? 'F' : 'M';
  await page.keyboard.press(redo);
  await page.getByTestId('reviewed').getByText('20', { exact: true }).waitFor();
  const fc = falseCalls - (last.press === 'F' ? 1 : 0) + (redo === 'F' ? 1 : 0);
  await page.getByTestId('false-call-rate').getByText(pct(fc, defectCalls), { exact: true }).waitFor();

  // A key pressed the moment the next frame appears (before the browser paints) acts on that
  // frame, not on the one before it: the second C is sent from the frame's own DOM change.
  const twoBefore = (await frame.getAttribute('data-key'))!;
  await page.evaluate(
    () =>
      new Promise<void>((resolve) => {
        // Runs in the page (this file is compiled without the DOM's types).
        type El = object;
        const w = globalThis as unknown as {
          document: { querySelector(s: string): El };
          dispatchEvent(e: unknown): boolean;
          KeyboardEvent: new (type: string, init: { key: string }) => unknown;
          MutationObserver: new (fn: () => void) => { observe(el: El, o: { attributes: boolean; attributeFilter: string[] }): void; disconnect(): void };
        };
        const press = () => w.dispatchEvent(new w.KeyboardEvent('keydown', { key: 'c' }));
        const seen = new w.MutationObserver(() => {
          seen.disconnect();
          press();
          resolve();
        });
        seen.observe(w.document.querySelector('[data-testid="frame"]'), { attributes: true, attributeFilter: ['data-key'] });
        press();
      }),
  );
  await page.getByTestId('reviewed').getByText('22', { exact: true }).waitFor({ timeout: 10_000 });
  assert.notEqual(await frame.getAttribute('data-key'), twoBefore);

  // Export: the button names the line and format; the archive holds the 22 reviewed images.
  await page.getByLabel('Export format').selectOption('coco');
  const href = await page.getByTestId('export').getAttribute('href');
  assert.equal(href, `/api/datasets/export?line=${LINE}&format=coco`);
  const tar = await page.request.get(`${fleet.httpUrl}${href}`);
  assert.deepEqual([tar.status(), tar.headers()['content-type'], tar.headers()['x-osprey-frames']], [200, 'application/x-tar', '22']);

  // A tablet on the line (portrait): the buttons are large, and a tap reviews.
  await page.setViewportSize({ width: 800, height: 1280 });
  const confirm = page.getByRole('button', { name: /Confirm/ });
  const box = (await confirm.boundingBox())!;
  assert.ok(box.height >= 48 && box.width >= 120, `touch target ${box.width}×${box.height}`);
  const tabletKey = (await frame.getAttribute('data-key'))!;
  await page.screenshot({ path: join(shots, 'console-review-tablet.png') });
  await confirm.click();
  await page.locator(`[data-testid="frame"]:not([data-key="${tabletKey}"])`).waitFor();
  await page.getByTestId('reviewed').getByText('23', { exact: true }).waitFor();
  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');

  // An operator reads the queue but has no review controls; a viewer has no Review screen at all.
  const operator = await watchedPage(browser);
  await signIn(operator.page, fleet.httpUrl, 'test-operator');
  await operator.page.getByRole('link', { name: 'Review' }).click();
  await operator.page.getByTestId('frame').waitFor();
  await operator.page.getByText('reviewing needs the inspector role').waitFor();
  assert.equal(await operator.page.getByTestId('review-actions').count(), 0);
  // Most uncertain first: the frame the API ranks first.
  const ranked = (await fleet.api('GET', `/api/review/queue?line=${LINE}&order=uncertain&limit=1`)).body.items[0];
  await operator.page.getByTestId('review-order').selectOption('uncertain');
  await operator.page.locator(`[data-testid="frame"][data-key="${ranked.edgeId}/${ranked.storeId ?? ''}/${ranked.seq}"]`).waitFor();
  assert.deepEqual(operator.errors, []);
  const viewer = await watchedPage(browser);
  await signIn(viewer.page, fleet.httpUrl, 'test-viewer');
  assert.equal(await viewer.page.getByRole('link', { name: 'Review' }).count(), 0);
  // The API refuses what the hidden controls would do, with the viewer's own session and CSRF token.
  const { session } = (await (await viewer.page.request.get(`${fleet.httpUrl}/api/auth/session`)).json()) as { session: { csrfToken: string } };
  const refused = await viewer.page.request.put(`${fleet.httpUrl}/api/results/cam-9/2/review`, { data: { review: 'confirmed' }, headers: { 'x-osprey-csrf': session.csrfToken } });
  assert.deepEqual([refused.status(), ((await refused.json()) as { error: string }).error], [403, 'OSP_ERR_FORBIDDEN']);
});
