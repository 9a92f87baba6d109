/**
 * The Edge page in a real browser (Debian's Chromium) on a real fleet: a real edge agent running
 * the built-in anomaly model keeps and uploads its defect images, and an enrolled MQTT edge sends
 * detections with an uploaded image. An operator signs in, sees the six telemetry charts with
 * time axes, the configuration layers, edits the anomaly threshold (validated; the preview count
 * equals the stored verdicts replayed by hand), applies it, and sees the edge report the new
 * config; then sees result images, and boxes drawn over the other edge's image.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { previewThreshold } from '../../fleet-manager/threshold-preview.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

interface Row {
  seq: number;
  verdict: 'ok' | 'defect';
  label: string;
  score: number;
  hasImage: boolean;
}

test('an operator reads an edge: telemetry charts with time axes, config layers, a previewed and applied label threshold, result images with boxes', { skip: chromiumSkip(), timeout: 180_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  await fleet.creds.token('operator'); // makes the user test-operator
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;

  // Layers above the edge, so the page has something to show side by side.
  assert.equal((await fleet.api('PUT', '/api/config', { sampling: { uncertainBand: 0.02 } })).status, 200);
  assert.equal((await fleet.api('PUT', '/api/lines/line-A/config', { thresholds: { default: 0.5 } })).status, 200);

  // A real edge agent with the built-in anomaly model; defect images are kept and uploaded.
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
  // Frames outside the demo model's training seeds (1–40): good parts and scratched ones.
  for (let seed = 100; seed < 124; seed++) {
    await agent.inspect(await generatePartImage({ seed, defect: seed % 4 === 0 ? 'scratch' : null, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
  }
  const stored = async () => (await fleet.api('GET', '/api/results?edge=press-1&limit=1000')).body.items as Row[];
  await waitFor(async () => (await stored()).length === 24, 'all 24 results stored');
  await waitFor(async () => (await stored()).some((r) => r.verdict === 'defect' && r.hasImage), 'a defect image uploaded');

  // An enrolled MQTT edge whose model draws boxes, and the image of its result.
  const visionCredential = await fleet.creds.enrollEdge('vision-2');
  const vision = await connectSimEdge(fleet.mqttUrl, { id: 'vision-2', credential: visionCredential, line: 'line-B', localModel: { name: 'boxes', version: '1' } });
  t.after(() => vision.close());
  await vision.sendResults([
    {
      ts: Date.now(), camera: 'cam1', source: 'http', model: 'boxes@1', verdict: 'defect', label: 'scratch', score: 0.91, latencyMs: 12,
      detections: [
        { label: 'scratch', score: 0.91, box: [40, 50, 160, 120] },
        { label: 'dent', score: 0.62, box: [150, 160, 210, 215] },
      ],
    },
  ]);
  const image = await generatePartImage({ seed: 200, defect: 'scratch', format: 'jpeg' });
  const put = await fetch(`${fleet.httpUrl}/api/results/vision-2/1/image`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${visionCredential}`, 'content-type': 'image/jpeg' },
    body: image,
  });
  assert.equal(put.status, 201, await put.text());

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/#/edges/press-1`);
  await page.getByLabel('Username').fill('test-operator');
  await page.getByLabel('Password').fill('password of test-operator');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('section.edge-page[data-edge="press-1"]').waitFor();

  // Six charts, each with a time axis and a value axis with its unit, and a legend.
  const charts = page.locator('.edge-telemetry .chart-grid figure.chart');
  await charts.nth(5).locator('canvas').waitFor();
  assert.deepEqual(await charts.evaluateAll((fs) => fs.map((f) => (f as unknown as { dataset: { chart: string } }).dataset.chart)), ['fps', 'latency', 'queue', 'cpu', 'memory', 'storage']);
  for (let i = 0; i < 6; i++) {
    const chart = charts.nth(i);
    assert.equal(await chart.locator('.u-axis').count(), 2, `chart ${i}: two axes`);
    // The x axis reads local clock times (uPlot's labels, drawn on the canvas and copied onto the figure).
    await waitFor(async () => /^\d{1,2}:\d{2}(:\d{2})?(\s|$)/.test((await chart.getAttribute('data-x-ticks')) ?? ''), `chart ${i}: time ticks`);
    assert.match((await chart.getAttribute('data-y-ticks')) ?? '', /\d/, `chart ${i}: value ticks`);
    assert.ok((await chart.locator('.u-legend .u-series').count()) >= 2, `chart ${i}: a legend`);
  }
  assert.match(await charts.nth(1).locator('figcaption').innerText(), /Latency \(ms\)/);
  await page.screenshot({ path: join(shots, 'console-edge.png') });

  // The layers side by side: the default threshold comes from the line, the band from the fleet.
  const layerRow = (title: string) => page.locator(`.edge-config tr[data-setting="${title}"]`);
  await layerRow('threshold (default)').waitFor();
  assert.deepEqual(await layerRow('threshold (default)').locator('td').allInnerTexts(), ['threshold (default)', '', '0.5', '', '0.5', 'line']);
  assert.deepEqual(await layerRow('uncertain band').locator('td').allInnerTexts(), ['uncertain band', '0.02', '', '', '0.02', 'fleet']);

  // Validation: a threshold outside [0, 1] is refused in the form.
  const editor = page.locator('form.threshold-editor');
  await editor.getByLabel('Label').fill('anomaly');
  await editor.getByLabel('Threshold').fill('1.5');
  await editor.getByText('The threshold must be between 0 and 1').waitFor();
  assert.equal(await editor.getByRole('button', { name: 'Preview' }).isDisabled(), true);

  // A threshold that changes some verdicts: just below the highest ok score.
  const rows = await stored();
  const okScores = rows.filter((r) => r.verdict === 'ok').map((r) => r.score);
  const threshold = Math.floor(Math.max(...okScores) * 1000 - 1) / 1000;
  await editor.getByLabel('Threshold').fill(String(threshold));
  assert.equal(await editor.getByRole('button', { name: 'Apply' }).isDisabled(), true, 'no apply before a preview');
  await editor.getByRole('button', { name: 'Preview' }).click();
  const preview = page.getByTestId('threshold-preview');
  await preview.waitFor();
  const expected = previewThreshold(rows, 'anomaly', threshold);
  assert.ok(expected.changed > 0, 'the threshold changes something');
  assert.equal(Number(await preview.getAttribute('data-changed')), expected.changed);
  assert.equal(Number(await preview.getAttribute('data-considered')), 24);
  assert.match(await preview.innerText(), new RegExp(`would have changed ${expected.changed} of the last 24 verdicts`));
  // The count by hand, from the stored rows themselves: ok rows at or above, anomaly defects below.
  assert.equal(expected.changed, rows.filter((r) => (r.verdict === 'ok' ? r.score >= threshold : r.label === 'anomaly' && r.score < threshold)).length);
  await page.screenshot({ path: join(shots, 'console-edge-full.png'), fullPage: true });

  // Apply: the edge's layer gets the label's threshold, and the edge reports the new config.
  await editor.getByRole('button', { name: 'Apply' }).click();
  await page.getByTestId('threshold-message').filter({ hasText: /^Applied: anomaly ≥/ }).waitFor();
  await page.getByTestId('config-version').filter({ hasText: '(applied)' }).waitFor({ timeout: 20_000 });
  const eff = (await fleet.api('GET', '/api/edges/press-1/effective-config')).body;
  assert.equal(eff.layers.edge.thresholds.perLabel.anomaly, threshold);
  assert.equal(eff.config.thresholds.perLabel.anomaly, threshold);
  assert.equal(eff.reportedConfigVersion, eff.configVersion);
  assert.deepEqual(await layerRow('threshold: anomaly').locator('td').allInnerTexts(), ['threshold: anomaly', '', '', String(threshold), String(threshold), 'edge']);
  // The agent's own word: a config-applied event with the new threshold.
  await waitFor(async () => {
    const events = (await fleet.api('GET', '/api/edges/press-1/events?limit=50')).body.events as { kind: string; data: { thresholds?: { perLabel?: Record<string, number> } } | null }[];
    return events.some((e) => e.kind === 'config-applied' && e.data?.thresholds?.perLabel?.anomaly === threshold);
  }, 'the edge reports the new threshold applied');
  // Its effect on the audit log: config.put by the operator.
  const audit = (await fleet.api('GET', '/api/audit?action=config.put')).body.entries as { actor: string; target: string }[];
  assert.ok(audit.some((a) => a.actor === 'user:test-operator' && a.target === 'config:edge:press-1'));

  // Result images: every defect of the edge shows its kept image, loaded.
  const defect = page.locator('.edge-results figure.result[data-verdict="defect"] img').first();
  // Results without a kept image are listed, not shown as empty frames.
  await page.locator('.edge-results table.results-without-image tr[data-verdict="ok"]').first().waitFor();
  await defect.waitFor();
  await waitFor(async () => (await defect.evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth)) > 0, 'the defect image loads');
  await page.locator('.edge-results').screenshot({ path: join(shots, 'console-edge-results.png') });

  // The other edge's result: its image with both boxes drawn over it.
  await page.evaluate(() => ((globalThis as unknown as { location: { hash: string } }).location.hash = '#/edges/vision-2'));
  const boxes = page.locator('section.edge-page[data-edge="vision-2"] .shot svg.boxes');
  await boxes.waitFor();
  assert.equal(await boxes.locator('rect').count(), 2);
  assert.deepEqual(await boxes.locator('text').allTextContents(), ['scratch 0.91', 'dent 0.62']);
  const [x, y, w, h] = await boxes.locator('rect').first().evaluate((r) => ['x', 'y', 'width', 'height'].map((a) => Number((r as unknown as { getAttribute(n: string): string }).getAttribute(a))));
  assert.deepEqual([x, y, w, h], [40, 50, 120, 70], 'the box in image pixels');
  await page.locator('section.edge-page[data-edge="vision-2"] .edge-results').screenshot({ path: join(shots, 'console-edge-boxes.png') });

  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');
});
