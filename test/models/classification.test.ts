import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadModelPackage } from '../../models/package.js';
import { isOspreyError } from '../../protocol/errors.js';
import { classify, softmax, toProbabilities } from '../../models/postprocess/classification.js';
import { resolveThreshold } from '../../models/postprocess/thresholds.js';
import { colourClassifier } from './fixtures.js';
import { solidPng, tempDir, writePackage } from './helpers.js';

const E = Math.E;
// Logits (1, 0, 0): softmax = (e, 1, 1) / (e + 2).
const HIGH = E / (E + 2); // 0.576117…
const LOW = 1 / (E + 2); // 0.211942…

const close = (a: number, b: number, eps = 1e-6) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);

test('softmax is stable and matches the hand computation', () => {
  const p = softmax([1, 0, 0]);
  close(p[0], HIGH);
  close(p[1], LOW);
  const big = softmax([1000, 999, 999]); // naive exp overflows
  close(big[0], HIGH);
  assert.deepEqual([...toProbabilities([0.2, 0.8], 'none')].map((v) => Math.round(v * 10)), [2, 8]);
  close(toProbabilities([0], 'sigmoid')[0], 0.5);
});

test('threshold precedence: edge per-label, edge default, package per-label, package default', () => {
  const pkg = { default: 0.5, perLabel: { dent: 0.3 } };
  assert.equal(resolveThreshold('dent', pkg, { perLabel: { dent: 0.9 }, default: 0.7 }), 0.9);
  assert.equal(resolveThreshold('dent', pkg, { default: 0.7 }), 0.7);
  assert.equal(resolveThreshold('dent', pkg, {}), 0.3);
  assert.equal(resolveThreshold('scratch', pkg), 0.5);
});

test('classify: grouped defect probability, per-label overrides, labels and top-k', () => {
  const m = { labels: ['good', 'scratch', 'dent'], defectLabels: ['scratch', 'dent'], thresholds: { default: 0.5 } };
  const probs = new Float32Array([0.3, 0.35, 0.35]);
  // scratch + dent = 0.7 ≥ 0.5 even though neither alone reaches it.
  const grouped = classify(probs, m, { activation: 'softmax' });
  assert.equal(grouped.verdict, 'defect');
  assert.equal(grouped.label, 'scratch');
  close(grouped.score, 0.7);
  // An edge's per-label value judges that label alone; the rest stay grouped.
  const own = classify(probs, m, { activation: 'softmax', thresholds: { perLabel: { scratch: 0.9 } } });
  assert.equal(own.verdict, 'ok');
  assert.equal(own.label, 'good');
  const low = classify(probs, m, { activation: 'softmax', thresholds: { perLabel: { dent: 0.3 } } });
  assert.deepEqual([low.verdict, low.label, low.threshold], ['defect', 'dent', 0.3]);
  // Package per-label value, no edge override.
  const pkg = classify(new Float32Array([0.8, 0.05, 0.15]), { ...m, thresholds: { default: 0.5, perLabel: { dent: 0.1 } } }, { activation: 'none' });
  assert.deepEqual([pkg.verdict, pkg.label, pkg.threshold], ['defect', 'dent', 0.1]);
  assert.deepEqual(pkg.top?.map((x) => x.label), ['good', 'dent', 'scratch']);
  assert.equal(classify(probs, m, { activation: 'none', topK: 1 }).top?.length, 1);
  // Sigmoid outputs are independent: the group uses the maximum, not the sum.
  assert.equal(classify(probs, m, { activation: 'sigmoid' }).verdict, 'ok');
  // No defect labels: a plain classifier, label = top label.
  const plain = classify(new Float32Array([0.1, 0.7, 0.2]), { ...m, defectLabels: [] }, { activation: 'none' });
  assert.deepEqual([plain.verdict, plain.label], ['ok', 'scratch']);
  // ... and its score is that label's probability (it was 0 beside a top-1 of 0.7), thresholds unchanged.
  close(plain.score, 0.7);
  assert.equal(plain.threshold, 0.5);
  // With defect labels the score stays the defect probability (the value the threshold judges).
  const judged = classify(new Float32Array([0.9, 0.04, 0.06]), m, { activation: 'none' });
  assert.deepEqual([judged.verdict, judged.label, judged.threshold], ['ok', 'good', 0.5]);
  close(judged.score, 0.1);
});

test('a real logits model through loadModelPackage: softmax, verdicts, per-edge overrides', async (t) => {
  const dir = await tempDir(t);
  const { model, manifest } = colourClassifier();
  await writePackage(dir, manifest, model);
  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  assert.equal(runner.id, 'colour-classifier@1.0.0');

  const red = await solidPng(8, 8, [255, 0, 0]); // logits (1, 0, 0)
  const green = await solidPng(8, 8, [0, 255, 0]); // logits (0, 1, 0)

  const a = await runner.inspect(red);
  assert.deepEqual([a.verdict, a.label, a.threshold], ['ok', 'good', 0.5]);
  close(a.score, 2 * LOW);
  close(a.top![0].score, HIGH);
  assert.ok(a.timings.totalMs >= a.timings.inferMs);

  const b = await runner.inspect(green);
  assert.deepEqual([b.verdict, b.label], ['defect', 'scratch']);
  close(b.score, HIGH + LOW);

  const c = await runner.inspect(red, { thresholds: { default: 0.4 } });
  assert.deepEqual([c.verdict, c.label, c.threshold], ['defect', 'scratch', 0.4]);
  const d = await runner.inspect(green, { thresholds: { perLabel: { scratch: 0.9 } } });
  assert.deepEqual([d.verdict, d.label], ['ok', 'good']);
});

test('probabilities (Softmax in the graph, activation none) give the same answer as logits', async (t) => {
  const dir = await tempDir(t);
  const { model, manifest } = colourClassifier({ softmax: true });
  await writePackage(dir, manifest, model);
  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  const r = await runner.inspect(await solidPng(4, 4, [255, 0, 0]));
  close(r.top![0].score, HIGH);
  close(r.score, 2 * LOW);
});

test('float16, uint8 and nhwc inputs run through onnxruntime', async (t) => {
  for (const opts of [{ dtype: 'float16' as const }, { dtype: 'uint8' as const }, { layout: 'nhwc' as const }]) {
    const dir = await tempDir(t);
    const { model, manifest } = colourClassifier(opts);
    await writePackage(dir, manifest, model);
    const runner = await loadModelPackage(dir);
    const r = await runner.inspect(await solidPng(2, 2, [0, 0, 255]));
    await runner.close();
    assert.equal(r.label, 'dent', JSON.stringify(opts));
    // fp16 keeps ~3 significant digits.
    close(r.top![0].score, HIGH, opts.dtype === 'float16' ? 2e-3 : 1e-6);
  }
});

test('a manifest that misreads the classifier output is refused at load', async (t) => {
  // Softmax in the graph, softmax again in the manifest: the warm-up output already sums to 1.
  const soft = colourClassifier({ softmax: true });
  const dir1 = await tempDir(t);
  await writePackage(dir1, { ...soft.manifest, outputs: { classification: { output: 'probs', activation: 'softmax' } } }, soft.model);
  await assert.rejects(loadModelPackage(dir1), (err: unknown) => isOspreyError(err, 'OSP_ERR_MODEL_OUTPUT') && /already probabilities \(sums to 1\).*use activation none/.test((err as Error).message));
  // "Probabilities" of 114 (pixels fed unscaled to a logits model declared as probabilities).
  const logits = colourClassifier();
  const dir2 = await tempDir(t);
  await writePackage(dir2, { ...logits.manifest, input: { ...logits.manifest.input, scale: 1 }, outputs: { classification: { output: 'logits', activation: 'none' } } }, logits.model);
  await assert.rejects(loadModelPackage(dir2), (err: unknown) => isOspreyError(err, 'OSP_ERR_MODEL_OUTPUT') && /has value 114, not a probability/.test((err as Error).message));
});
