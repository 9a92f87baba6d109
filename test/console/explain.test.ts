/**
 * Issue 17, explainability where a person looks, in a real browser (Debian's Chromium) on a real
 * fleet with two real edge agents on one line: one runs a real classifier package (registered at
 * the fleet), one a real detector. An inspector opens the classifier edge's page, clicks Explain
 * on the kept defect image and sees the fleet's occlusion map drawn over it (red over the spot the
 * model looked at); the detector's result has its boxes over its image and no Explain (it is not
 * a classifier). On the review screen the same: Explain over the classifier frame, boxes over the
 * detector frame.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Page } from 'playwright-core';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { startFleet, uploadTar, type TestFleet } from '../fleet-manager/control-helpers.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { OCC_MODEL, markedPartImage, spotClassifierPackage } from '../helpers/occlusion-classifier.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { yoloDetector } from '../models/fixtures-detection.js';
import { solidPng, writePackage } from '../models/helpers.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

const LINE = 'line-E';

async function startAgent(t: Parameters<typeof startFleet>[0], fleet: TestFleet, edgeId: string, modelDir: string): Promise<EdgeAgent> {
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;
  const dataDir = join(fleet.dataDir, edgeId);
  await mkdir(dataDir, { recursive: true });
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId,
      line: LINE,
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, edgeId, join(dataDir, 'fleet.credential')) },
      model: { dir: modelDir },
      sync: { batchSize: 10, intervalMs: 100 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  return agent;
}

/** RGBA of a canvas pixel, in the canvas's own pixels. */
function canvasPixel(page: Page, selector: string, x: number, y: number): Promise<number[]> {
  return page.evaluate(
    ([sel, px, py]) => {
      const c = (globalThis as unknown as { document: { querySelector(s: string): { getContext(k: string): { getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> } } } } }).document.querySelector(sel as string);
      return Array.from(c.getContext('2d').getImageData(px as number, py as number, 1, 1).data);
    },
    [selector, x, y] as const,
  );
}

test('an inspector clicks Explain on a classifier result and sees the occlusion map over the image; detector boxes are drawn; edge page and review', { skip: chromiumSkip(), timeout: 180_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  await fleet.creds.token('inspector'); // makes the user test-inspector
  const clsDir = await tempDir(t);
  assert.equal((await uploadTar(fleet.httpUrl, OCC_MODEL, await spotClassifierPackage(clsDir), fleet.admin)).status, 201);
  const detDir = await tempDir(t);
  const det = yoloDetector();
  await writePackage(detDir, det.manifest, det.model);

  const detector = await startAgent(t, fleet, 'det-1', detDir);
  const boxes = (await detector.inspect(await solidPng(128, 64, [255, 0, 0]), { camera: 'cam2', source: 'http' })).inspection.detections!;
  const classifier = await startAgent(t, fleet, 'cls-1', clsDir);
  const call = await classifier.inspect(await markedPartImage(), { camera: 'cam1', source: 'http' });
  assert.deepEqual([call.record.verdict, call.record.label], ['defect', 'dent']);
  await waitFor(async () => (await fleet.api('GET', `/api/review/queue?line=${LINE}`)).body.items.length === 2, 'both kept images at the fleet');

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/#/edges/cls-1`);
  await page.getByLabel('Username').fill('test-inspector');
  await page.getByLabel('Password').fill('password of test-inspector');
  await page.getByRole('button', { name: 'Sign in' }).click();

  // Edge page: the classifier's kept image, Explain, and the map drawn over it.
  const figure = page.locator(`figure.result[data-seq="${call.record.seq}"]`);
  await figure.locator('img').waitFor();
  await figure.getByRole('button', { name: 'Explain' }).click();
  const overlay = figure.locator('canvas[aria-label="occlusion map"][data-drawn="true"]');
  await overlay.waitFor();
  assert.match(await figure.getByTestId('occlusion-note').innerText(), /red: hiding this area lowers p\(dent\) = 0\.\d+ most/);
  // The map's own pixels (64 × 64, 8 px per cell): strong red over the spot's cell (5, 2), faint blue over a plain one.
  const sel = `figure.result[data-seq="${call.record.seq}"] canvas[aria-label="occlusion map"]`;
  const [r, g, b, a] = await canvasPixel(page, sel, 5 * 8 + 4, 2 * 8 + 4);
  assert.ok(r! > 90 && r! > 2 * b! && g! < 40 && a! > 150, `red and opaque over the spot: ${[r, g, b, a]}`);
  const plain = await canvasPixel(page, sel, 3, 3);
  assert.ok(plain[2]! > plain[0]! && plain[3]! < 40, `blue and see-through over a plain cell: ${plain}`);
  await figure.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'console-explain.png') });

  // The detector's edge: boxes over its image, no Explain (not a classifier).
  await page.goto(`${fleet.httpUrl}/#/edges/det-1`);
  const detFigure = page.locator('figure.result').first();
  await detFigure.locator('svg.boxes rect').nth(boxes.length - 1).waitFor();
  assert.equal(await detFigure.locator('svg.boxes rect').count(), boxes.length);
  assert.equal(await detFigure.getByRole('button', { name: 'Explain' }).count(), 0);

  // Review: newest first, the classifier's frame; Explain there too; then the detector's frame with its boxes.
  await page.goto(`${fleet.httpUrl}/#/review/${LINE}`);
  const frame = page.getByTestId('frame');
  await waitFor(async () => (await frame.getAttribute('data-key').catch(() => null))?.startsWith('cls-1/'), 'the classifier frame first');
  await frame.getByRole('button', { name: 'Explain' }).click();
  await frame.locator('canvas[aria-label="occlusion map"][data-drawn="true"]').waitFor();
  await page.screenshot({ path: join(shots, 'console-review-explain.png') });
  await page.keyboard.press('C');
  await page.locator('[data-testid="frame"][data-key^="det-1/"]').waitFor();
  await page.locator('[data-testid="boxes"] rect').nth(boxes.length - 1).waitFor();
  assert.equal(await page.locator('[data-testid="boxes"] rect').count(), boxes.length);
  assert.equal(await page.getByTestId('frame').getByRole('button', { name: 'Explain' }).count(), 0);

  assert.deepEqual(errors, []);
  assert.deepEqual(await violations(), []);
});
