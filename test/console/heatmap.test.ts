/**
 * Anomaly heatmaps on the Edge page in a real browser (Debian's Chromium): a real edge agent with
 * the built-in anomaly model inspects a synthetic part with a scratch, keeps the image and its
 * heatmap and uploads both to a real fleet; an operator opens the edge and sees the heatmap drawn
 * over the image — opaque where the scratch is, see-through elsewhere — with a legend, and a
 * toggle that hides it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { pino } from 'pino';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

const SEED = 300;

/** The scratch's bounding box in image pixels: where the part with the defect differs from the same part without. */
async function defectBox(): Promise<{ x0: number; y0: number; x1: number; y1: number; width: number; height: number }> {
  const raw = async (defect: 'scratch' | null) => sharp(await generatePartImage({ seed: SEED, defect, format: 'png' })).greyscale().raw().toBuffer({ resolveWithObject: true });
  const [good, bad] = await Promise.all([raw(null), raw('scratch')]);
  const { width, height } = good.info;
  const box = { x0: width, y0: height, x1: -1, y1: -1, width, height };
  for (let i = 0; i < good.data.length; i++) {
    if (Math.abs(good.data[i]! - bad.data[i]!) <= 20) continue;
    const x = i % width;
    const y = Math.floor(i / width);
    box.x0 = Math.min(box.x0, x);
    box.x1 = Math.max(box.x1, x);
    box.y0 = Math.min(box.y0, y);
    box.y1 = Math.max(box.y1, y);
  }
  assert.ok(box.x1 >= 0, 'the scratch changes some pixels');
  return box;
}

test('the Edge page draws an anomaly heatmap over a defect image: opaque on the defect, see-through elsewhere, with a legend and a toggle', { skip: chromiumSkip(), timeout: 180_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  await fleet.creds.token('operator'); // makes the user test-operator
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;
  const dataDir = join(fleet.dataDir, 'press-7');
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: 'press-7',
      line: 'line-A',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, 'press-7', join(dataDir, 'fleet.credential')) },
      model: { dir: await ensureDemoModel(join(fleet.dataDir, 'models')) },
      sync: { batchSize: 10, intervalMs: 100 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  // Seeds outside the demo model's training seeds (1–40): two good parts, then the scratched one.
  for (const seed of [SEED + 1, SEED + 2]) await agent.inspect(await generatePartImage({ seed, defect: null, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
  const { record } = await agent.inspect(await generatePartImage({ seed: SEED, defect: 'scratch', format: 'jpeg' }), { camera: 'cam1', source: 'http' });
  assert.equal(record.verdict, 'defect');
  await waitFor(async () => {
    const items = (await fleet.api('GET', '/api/results?edge=press-7')).body.items as { seq: number; hasHeatmap?: boolean }[];
    return items.some((r) => r.seq === record.seq && r.hasHeatmap === true);
  }, 'the heatmap reaches the fleet');

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/#/edges/press-7`);
  await page.getByLabel('Username').fill('test-operator');
  await page.getByLabel('Password').fill('password of test-operator');
  await page.getByRole('button', { name: 'Sign in' }).click();

  const figure = page.locator(`.edge-results figure.result[data-seq="${record.seq}"]`);
  const canvas = figure.locator('canvas.heatmap[data-drawn="true"]');
  await canvas.waitFor();
  // The overlay covers the image exactly.
  const [imgBox, canvasBox] = await Promise.all([figure.locator('img').boundingBox(), canvas.boundingBox()]);
  assert.ok(imgBox && canvasBox);
  for (const k of ['x', 'y', 'width', 'height'] as const) assert.ok(Math.abs(imgBox[k] - canvasBox[k]) < 1, `overlay ${k}: ${canvasBox[k]} vs image ${imgBox[k]}`);

  // Opacity where the scratch is against the rest, read from the canvas's own pixels.
  const box = await defectBox();
  const alpha = await canvas.evaluate((el, b) => {
    const c = el as unknown as { width: number; height: number; getContext(k: '2d'): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } };
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const sx = c.width / b.width;
    const sy = c.height / b.height;
    let inside = 0;
    let insideN = 0;
    let insideMax = 0;
    let outside = 0;
    let outsideN = 0;
    let max = 0;
    for (let y = 0; y < c.height; y++) {
      for (let x = 0; x < c.width; x++) {
        const a = d[(y * c.width + x) * 4 + 3]!;
        max = Math.max(max, a);
        // Pixel centres inside the scratch's box; "outside" keeps a margin of a quarter of the image.
        const ix = (x + 0.5) / sx;
        const iy = (y + 0.5) / sy;
        if (ix >= b.x0 && ix <= b.x1 && iy >= b.y0 && iy <= b.y1) {
          inside += a;
          insideN++;
          insideMax = Math.max(insideMax, a);
        } else if (ix < b.x0 - b.width / 4 || ix > b.x1 + b.width / 4 || iy < b.y0 - b.height / 4 || iy > b.y1 + b.height / 4) {
          outside += a;
          outsideN++;
        }
      }
    }
    return { inside: inside / insideN, insideMax, outside: outside / outsideN, max, size: [c.width, c.height] };
  }, box);
  const seen = JSON.stringify(alpha);
  assert.ok(alpha.insideMax >= 150, `the heatmap is drawn strongly (alpha ≥ 150 of 255) on the scratch: ${seen}`);
  assert.equal(alpha.insideMax, alpha.max, `its most opaque pixel lies on the scratch: ${seen}`);
  assert.ok(alpha.outside < alpha.inside / 2, `and it is see-through away from it: ${seen}`);
  assert.ok(alpha.outside > 0, `yet not invisible there (the scale's cold end shows faintly): ${seen}`);

  // A legend for the colour scale, and a toggle that hides and shows the overlay.
  const legend = page.locator('.edge-results .heatmap-legend');
  assert.match(await legend.innerText(), /normal[\s\S]*anomalous[\s\S]*0\.5 threshold/);
  await figure.scrollIntoViewIfNeeded();
  await page.screenshot({ path: join(shots, 'console-edge-heatmap.png') });
  await page.locator('.edge-results').screenshot({ path: join(shots, 'console-edge-heatmap-results.png') });
  const toggle = page.getByLabel('Show anomaly heatmaps');
  await toggle.uncheck();
  await figure.locator('.shot[data-heatmap="hidden"]').waitFor();
  assert.equal(await figure.locator('canvas.heatmap').count(), 0, 'hidden');
  assert.equal(await legend.count(), 0, 'no legend without heatmaps');
  await toggle.check();
  await canvas.waitFor();

  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');
});
