import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { loadModelPackage } from '../../models/package.js';
import { normalizeAnomalyScore, mapSize } from '../../models/postprocess/anomaly.js';
import { jet, renderHeatmap } from '../../models/postprocess/heatmap.js';
import { anomalibModel, redSpotPixels } from './fixtures-anomaly.js';
import { meanAnomalyModel } from './fixtures.js';
import { pngFromPixels, tempDir, writePackage } from './helpers.js';

const close = (a: number, b: number, eps = 1e-6) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);

test('anomalib min-max normalisation puts the threshold at 0.5 and clips', () => {
  const n = { min: 10, max: 30, threshold: 18 };
  assert.equal(normalizeAnomalyScore(18, n), 0.5);
  assert.equal(normalizeAnomalyScore(23, n), 0.75); // (23 − 18)/20 + 0.5
  assert.equal(normalizeAnomalyScore(100, n), 1);
  assert.equal(normalizeAnomalyScore(-100, n), 0);
});

test('anomaly map shapes', () => {
  assert.deepEqual(mapSize({ dims: [1, 1, 3, 5], data: new Float32Array(15) }), { width: 5, height: 3 });
  assert.deepEqual(mapSize({ dims: [3, 5], data: new Float32Array(15) }), { width: 5, height: 3 });
  assert.throws(() => mapSize({ dims: [2, 1, 3, 5], data: new Float32Array(30) }), /anomaly map has shape \[2,1,3,5\]/);
});

test('heatmap: jet ramp and a small PNG', async () => {
  assert.deepEqual(jet(0), [0, 0, 128]);
  assert.deepEqual(jet(0.5), [128, 255, 128]);
  assert.deepEqual(jet(1), [128, 0, 0]);
  const png = await renderHeatmap(new Float32Array([0, 0.5, 1, 0.25]), 2, 2, 64);
  const meta = await sharp(png).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height], ['png', 64, 64]);
  // Decoded by another PNG reader: corners keep their values' colours, the middle blends them
  // bilinearly (mean of the four values, 0.4375), and the aspect ratio follows the map's.
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  const px = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
  assert.deepEqual([px(0, 0), px(63, 0), px(0, 63), px(63, 63)], [jet(0), jet(0.5), jet(1), jet(0.25)]);
  const mid = px(31, 31).map((c, i) => Math.abs(c - jet(0.4375)[i]!));
  assert.ok(Math.max(...mid) <= 12, `middle blends the four values: ${px(31, 31)} vs ${jet(0.4375)}`);
  const wide = await sharp(await renderHeatmap(new Float32Array([NaN, 2, -1, 0.5, 0.5, 0.5]), 3, 2, 60)).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([wide.info.width, wide.info.height], [60, 40]);
  assert.deepEqual([...wide.data.subarray(0, 3)], jet(1), 'NaN reads as 1 (as jet does)');
  await assert.rejects(renderHeatmap(new Float32Array(3), 2, 2), /a 2×2 map needs 4 values, got 3/);
});

test('a raw-score model through loadModelPackage: normalised score, thresholds, heatmap on defects', async (t) => {
  const dir = await tempDir(t);
  const { model, manifest } = meanAnomalyModel();
  await writePackage(dir, manifest, model);
  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());

  // Mean pixel 51/255 = 0.2 → (0.2 − 0.4)/1 + 0.5 = 0.3: good.
  const dark = await pngFromPixels([51, 51, 51, 51], 2, 2, 1);
  const a = await runner.inspect(dark, { heatmap: true });
  assert.deepEqual([a.verdict, a.label, a.threshold], ['ok', 'good', 0.5]);
  close(a.score, 0.3);
  assert.equal(a.anomalyMap, undefined, 'no map for good frames');

  // Mean (0 + 255·3)/4/255 = 0.75 → 0.85: anomaly.
  const bright = await pngFromPixels([0, 255, 255, 255], 2, 2, 1);
  const b = await runner.inspect(bright, { heatmap: true });
  assert.deepEqual([b.verdict, b.label], ['defect', 'anomaly']);
  close(b.score, 0.85);
  const meta = await sharp(await renderHeatmap(b.anomalyMap!.values, b.anomalyMap!.width, b.anomalyMap!.height)).metadata();
  assert.deepEqual([meta.format, meta.width], ['png', 64]);
  assert.equal((await runner.inspect(bright)).anomalyMap, undefined, 'map only when asked');

  // Per-edge override: the 'anomaly' label or the default.
  assert.equal((await runner.inspect(dark, { thresholds: { default: 0.25 } })).verdict, 'defect');
  assert.equal((await runner.inspect(bright, { thresholds: { perLabel: { anomaly: 0.9 } } })).verdict, 'ok');
});

test('anomalib v2: pred_score is used as exported (0.5 = threshold), for every input dtype; heatmap for defects', async (t) => {
  for (const dtype of ['float32', 'float16', 'uint8'] as const) {
    const dir = await tempDir(t);
    const { model, manifest } = anomalibModel({ dtype });
    await writePackage(dir, manifest, model);
    const runner = await loadModelPackage(dir);
    t.after(() => runner.close());
    const eps = dtype === 'float16' ? 1e-3 : 1e-6;
    // Red 102/255 = 0.4 everywhere: below the exported threshold.
    const good = await runner.inspect(await pngFromPixels(redSpotPixels(102), 4, 4, 3), { heatmap: true });
    assert.deepEqual([good.verdict, good.label, good.threshold], ['ok', 'good', 0.5], dtype);
    close(good.score, 0.4, eps);
    assert.equal(good.anomalyMap, undefined);
    // One pixel at 204/255 = 0.8: score 0.8 exactly, not renormalised.
    const bad = await runner.inspect(await pngFromPixels(redSpotPixels(51, 204), 4, 4, 3), { heatmap: true });
    assert.deepEqual([bad.verdict, bad.label], ['defect', 'anomaly'], dtype);
    close(bad.score, 0.8, eps);
    assert.deepEqual([bad.anomalyMap!.width, bad.anomalyMap!.height], [4, 4]);
    const meta = await sharp(await renderHeatmap(bad.anomalyMap!.values, 4, 4)).metadata();
    assert.deepEqual([meta.format, meta.width, meta.height], ['png', 64, 64]);
  }
});

test('anomalib v1-style raw scores are normalised with min/max/threshold from the manifest', async (t) => {
  const dir = await tempDir(t);
  const { model, manifest } = anomalibModel({ raw: true });
  await writePackage(dir, manifest, model);
  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  // raw = 10 × 0.4 = 4 → (4 − 6)/(10 − 0) + 0.5 = 0.3
  const good = await runner.inspect(await pngFromPixels(redSpotPixels(102), 4, 4, 3));
  assert.equal(good.verdict, 'ok');
  close(good.score, 0.3, 1e-6);
  // raw 8 → 0.7
  const bad = await runner.inspect(await pngFromPixels(redSpotPixels(51, 204), 4, 4, 3));
  assert.equal(bad.verdict, 'defect');
  close(bad.score, 0.7, 1e-6);
});
