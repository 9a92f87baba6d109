/**
 * The edge page's Image health section in a real browser (Debian's Chromium) on a real fleet: an
 * enrolled MQTT edge reports telemetry with image health and score drift figures over time (after
 * 40 minutes of history recorded through the fleet store, the fleet clock being real). A
 * viewer sees the figures against their references, the phase and model, six charts with time
 * axes whose points grow with every live report, and a raised camera-shift and score-drift alarm.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { MonitorFigures } from '../../protocol/monitoring.js';
import { envelope } from '../../protocol/validator.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

/** What an edge's monitor reports while watching (edge-agent/monitor.ts), frame count `frames`. */
function watching(frames: number, over: Partial<MonitorFigures> = {}): MonitorFigures {
  return {
    phase: 'watching', model: 'mtd@3', referenceFrames: 100, frames,
    brightness: 118 + (frames % 7) / 2, brightnessReference: 118, contrast: 0.34 + (frames % 3) / 100, contrastReference: 0.35, sharpness: 930 - (frames % 5) * 10, sharpnessReference: 950,
    shiftX: 0.002, shiftY: -0.001, scorePsi: 0.19 + (frames % 3) / 100, labelPsi: 0.01, scoreReference: 'calibration', defectRate: 0.02, defectRateReference: 0.025, defectLimit: 9, checkMs: 0.21,
    // The edge's own limits (monitoring.psiLimit, shiftLimit), not the defaults: the page draws these.
    psiLimit: 0.3, shiftLimit: 0.05,
    ...over,
  };
}

const CHARTS = ['brightness', 'contrast', 'sharpness', 'shift', 'psi', 'defect-rate'];
const MIN = 60_000;

/** A telemetry report as the edge sends it. */
function telemetry(at: number, monitor: MonitorFigures) {
  return envelope(
    'telemetry',
    'cam-7',
    {
      intervalMs: 10_000, frames: 600, defects: 12, failed: 0, failures: {}, fps: 10,
      latencyMs: { count: 600, p50: 12, p95: 18, p99: 20, max: 25 }, queueDepth: 0, lastSeq: 0, ackedSeq: 0,
      pendingResults: 0, cpuPercent: 30, rssBytes: 2e8, perModel: {}, monitor, alarms: [],
    },
    at,
  );
}

test('a viewer reads an edge’s image health: figures against references, charts over time, a raised alarm', { skip: chromiumSkip(), timeout: 120_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  // The last 40 minutes, one report a minute: steady images, the scores slowly drifting.
  const dataDir = await tempDir(t);
  const past = openSqliteStore({ file: join(dataDir, 'fleet.db'), logger: pino({ level: 'silent' }) });
  const start = Date.now() - 40 * MIN;
  for (let i = 0; i < 40; i++) {
    const monitor = watching(100 + i * 600, { scorePsi: 0.03 + (i / 40) * 0.15, defectRate: 0.018 + (i % 4) / 1000 });
    await past.recordTelemetry('cam-7', telemetry(start + i * MIN, monitor), { receivedAt: start + i * MIN });
  }
  await past.close();
  const fleet = await startFleet(t, { dataDir });
  await fleet.creds.token('viewer'); // makes the user test-viewer
  const edge = await connectSimEdge(fleet.mqttUrl, { id: 'cam-7', credential: await fleet.creds.enrollEdge('cam-7'), line: 'line-A', localModel: { name: 'mtd', version: '3' } });
  t.after(() => edge.close());
  const perModel = { 'mtd@3': { frames: 100, defects: 2 } };
  const report = async (monitor: MonitorFigures, alarms: string[] = []) => {
    await edge.sendTelemetry(perModel, { intervalMs: 10_000, monitor, alarms });
    await waitFor(async () => {
      const view = ((await fleet.api('GET', '/api/edges')).body.edges as { id: string; telemetry: { monitor?: MonitorFigures } | null }[]).find((e) => e.id === 'cam-7');
      return view?.telemetry?.monitor?.frames === monitor.frames;
    }, `the fleet stored the report of frame ${monitor.frames}`);
  };
  // The latest reports before the page opens, over MQTT.
  for (let frames = 24_100; frames <= 24_400; frames += 100) await report(watching(frames));

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/#/edges/cam-7`);
  await page.getByLabel('Username').fill('test-viewer');
  await page.getByLabel('Password').fill('password of test-viewer');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const section = page.locator('section.edge-page[data-edge="cam-7"] section.edge-monitor');
  await section.waitFor();
  assert.equal(await section.getAttribute('data-phase'), 'watching');
  assert.match(await section.locator('.monitor-state').innerText(), /watching every frame · model mtd@3 · 24,400 frames measured, 100 in the image reference; scores against the calibration data/);

  // The figures now against their references (frame 24 400: brightness 118 + 5/2, contrast 0.34 + 1/100, sharpness 930).
  const cells = (figure: string) => section.locator(`tr[data-figure="${figure}"] > *`).allInnerTexts();
  assert.deepEqual(await cells('Brightness'), ['Brightness', '120.5', '118', 'image-brightness']);
  assert.deepEqual(await cells('Contrast'), ['Contrast', '0.35', '0.35', 'image-contrast']);
  assert.deepEqual(await cells('Sharpness'), ['Sharpness', '930', '950', 'image-blur']);
  assert.deepEqual(await cells('Defect rate'), ['Defect rate', '2 %', '2.5 %', 'defect-rate-spike']);
  assert.deepEqual(await cells('Score PSI'), ['Score PSI', '0.2', 'limit 0.3', 'score-drift']);
  assert.equal(await section.locator('.monitor-alarms li.raised').count(), 0);
  assert.equal(await section.locator('.monitor-alarms li.clear').count(), 6);

  // Six charts with a time axis, a value axis and a legend, drawing the history's points.
  const charts = section.locator('.chart-grid figure.chart');
  await charts.nth(5).locator('canvas').waitFor();
  assert.deepEqual(await charts.evaluateAll((fs) => fs.map((f) => (f as unknown as { dataset: { chart: string } }).dataset.chart)), CHARTS);
  for (let i = 0; i < CHARTS.length; i++) {
    const chart = charts.nth(i);
    assert.equal(await chart.locator('.u-axis').count(), 2, `${CHARTS[i]}: two axes`);
    await waitFor(async () => /^\d{1,2}:\d{2}(:\d{2})?(\s|$)/.test((await chart.getAttribute('data-x-ticks')) ?? ''), `${CHARTS[i]}: time ticks`);
    assert.ok((await chart.locator('.u-legend .u-series').count()) >= 3, `${CHARTS[i]}: a legend of time and two series`);
  }
  const points = async (key: string) => Number(await section.locator(`figure.chart[data-chart="${key}"]`).getAttribute('data-points'));
  const history = (await fleet.api('GET', '/api/edges/cam-7/telemetry')).body.minutes as unknown[];
  assert.ok(history.length >= 41, 'the recorded minutes and the current one');
  for (const key of CHARTS) assert.equal(await points(key), history.length, `${key}: one point per minute of history`);

  // Live reports: each adds a point; the last one with the camera knocked and the scores drifted.
  await report(watching(24_500));
  await waitFor(async () => (await points('brightness')) === history.length + 1, 'a live point');
  await report(watching(24_600, { shiftX: 0.09, shiftY: 0.04, scorePsi: 0.41 }), ['camera-shift', 'score-drift']);
  for (const key of CHARTS) await waitFor(async () => (await points(key)) === history.length + 2, `${key}: the second live point`);
  await section.locator('.monitor-alarms li.raised[data-alarm="camera-shift"]').waitFor();
  assert.deepEqual(await section.locator('.monitor-alarms li.raised').evaluateAll((ls) => ls.map((l) => (l as unknown as { dataset: { alarm: string } }).dataset.alarm)), ['camera-shift', 'score-drift']);
  assert.match(await section.locator('.monitor-alarms li[data-alarm="camera-shift"]').innerText(), /raised: the camera moved/);
  assert.match(await section.locator('.monitor-alarms li.summary').innerText(), /^2 in force\.$/);
  assert.deepEqual(await cells('Camera shift'), ['Camera shift', 'x 9 · y 4 %', '0 · limit ±5 %', 'camera-shift']);
  assert.equal(await section.locator('tr[data-figure="Camera shift"]').getAttribute('class'), 'raised');
  assert.equal(await section.locator('tr[data-figure="Brightness"]').getAttribute('class'), '');
  // The PSI axis reaches above the drifted 0.41 and shows the edge's 0.3 alarm line in its legend.
  await waitFor(async () => /0\.4/.test((await section.locator('figure.chart[data-chart="psi"]').getAttribute('data-y-ticks')) ?? ''), 'the PSI axis reaches 0.4');
  assert.match(await section.locator('figure.chart[data-chart="psi"] .u-legend').innerText(), /alarm 0\.3/);
  // The edge page's telemetry panel lists the alarms in force too.
  assert.match(await page.locator('dl.telemetry').innerText(), /camera-shift, score-drift/);

  await section.evaluate((el) => (el as unknown as { scrollIntoView(): void }).scrollIntoView());
  await page.evaluate(() => (globalThis as unknown as { scrollBy(x: number, y: number): void }).scrollBy(0, -12));
  await page.screenshot({ path: join(shots, 'edge-monitor.png') });
  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');
});
