import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { fitBuiltinAnomalyModel } from '../../models/builtin-anomaly.js';
import { ensureDemoModel, DEMO_TRAIN_SEEDS } from '../../models/demo-model.js';
import { loadModelPackage } from '../../models/package.js';
import { generatePartImage, SYNTHETIC_DEFECTS } from '../../models/synthetic.js';
import { pngFromPixels, tempDir } from './helpers.js';

const close = (a: number, b: number, eps = 1e-5) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);
const flat = (v: number) => pngFromPixels(new Array(16).fill(v), 4, 4, 1);

test('the emitted graph computes the documented formula (hand-checked on flat 4×4 images)', async (t) => {
  const dir = await tempDir(t);
  // Training levels 100, 110, 120: mean 110, population std √(200/3) = 8.165.
  // Leave-one-out z: 100 → |100 − 115|/5 = 3, 110 → 0, 120 → 3; T = 3 · 1.15 = 3.45.
  const fit = await fitBuiltinAnomalyModel([await flat(100), await flat(110), await flat(120)], dir, {
    width: 4,
    height: 4,
    kernel: 1,
    tolerance: 0,
  });
  close(fit.trainScores[0], 3);
  close(fit.trainScores[1], 0);
  close(fit.rawThreshold, 3.45);
  assert.equal(fit.manifest.thresholds.default, 0.5);

  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  const std = Math.sqrt(200 / 3);
  // 130: z = 20/8.165 = 2.449 → 0.5 · 2.449 / 3.45 = 0.355
  const a = await runner.inspect(await flat(130));
  close(a.score, (0.5 * (20 / std)) / 3.45);
  assert.deepEqual([a.verdict, a.label], ['ok', 'good']);
  // 160: z = 6.124 → 0.887: anomaly, with a heatmap.
  const b = await runner.inspect(await flat(160), { heatmap: true });
  close(b.score, (0.5 * (50 / std)) / 3.45);
  assert.deepEqual([b.verdict, b.label], ['defect', 'anomaly']);
  assert.ok(b.anomalyMap && b.anomalyMap.values.length === b.anomalyMap.width * b.anomalyMap.height && b.anomalyMap.width > 0);
  // Far outside: clipped to 1, as anomalib's normalised scores are.
  assert.equal((await runner.inspect(await flat(255))).score, 1);
});

test('built-in model separates synthetic good and defect parts (≥ 95 %) in a few ms', async (t) => {
  const dir = await tempDir(t);
  const train = await Promise.all(Array.from({ length: 30 }, (_, i) => generatePartImage({ seed: 100 + i })));
  const fit = await fitBuiltinAnomalyModel(train, dir);
  assert.equal(fit.trainScores.length, 30);

  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  const cases: { defect: (typeof SYNTHETIC_DEFECTS)[number] | null; seed: number }[] = [];
  for (let i = 0; i < 20; i++) cases.push({ defect: null, seed: 9000 + i });
  for (let i = 0; i < 20; i++) cases.push({ defect: SYNTHETIC_DEFECTS[i % 4], seed: 9100 + i });

  let correct = 0;
  let inferMs = 0;
  const wrong: string[] = [];
  for (const c of cases) {
    const r = await runner.inspect(await generatePartImage(c), { heatmap: true });
    inferMs += r.timings.inferMs;
    if ((r.verdict === 'defect') === (c.defect !== null)) correct++;
    else wrong.push(`${c.defect ?? 'good'}#${c.seed}=${r.score.toFixed(3)}`);
    if (r.verdict === 'defect') assert.ok(r.anomalyMap, 'defects carry an anomaly map');
    assert.equal(r.threshold, 0.5);
  }
  assert.ok(correct / cases.length >= 0.95, `accuracy ${correct}/${cases.length}; wrong: ${wrong.join(', ')}`);
  assert.ok(inferMs / cases.length < 20, `inference ${(inferMs / cases.length).toFixed(2)} ms per frame`);
});

test('ensureDemoModel builds once, reuses, survives concurrent callers and rebuilds a broken package', async (t) => {
  const dir = await tempDir(t);
  const [p1, p2] = await Promise.all([ensureDemoModel(dir), ensureDemoModel(dir)]);
  assert.equal(p1, p2);
  const manifest = JSON.parse(await readFile(join(p1, 'manifest.json'), 'utf8'));
  assert.equal(manifest.metadata.trainImages, String(DEMO_TRAIN_SEEDS.count));
  const before = (await stat(join(p1, 'model.onnx'))).mtimeMs;
  const started = performance.now();
  assert.equal(await ensureDemoModel(dir), p1);
  assert.ok(performance.now() - started < 500, 'reuse is quick');
  assert.equal((await stat(join(p1, 'model.onnx'))).mtimeMs, before, 'not rewritten');

  await writeFile(join(p1, 'model.onnx'), 'corrupted');
  const p3 = await ensureDemoModel(dir);
  const runner = await loadModelPackage(p3);
  t.after(() => runner.close());
  const good = await runner.inspect(await generatePartImage({ seed: 424242 }));
  const bad = await runner.inspect(await generatePartImage({ seed: 424242, defect: 'missing' }));
  assert.deepEqual([good.verdict, bad.verdict], ['ok', 'defect']);
});
