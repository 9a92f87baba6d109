/**
 * `osprey train classify` on a small real subset of NEU (../shared/data or $OSPREY_DATA): the
 * package validates, runs in the edge's runtime and beats chance clearly on held-out images
 * (the full-data figures are in docs/TRAINING.md). Plus the split and the regression against
 * their definitions.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'node:test';
import { loadModelPackage } from '../../models/runtime.js';
import { fitSoftmax, softmaxProbabilities } from '../../models/train/softmax-regression.js';
import { stratifiedHoldOut } from '../../models/train/train-classify.js';
import { createRng } from '../../models/prng.js';
import { runOsprey } from '../helpers/osprey-process.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { makeTempDir } from '../helpers/temp-dir.js';

test('stratified hold-out: round(n·f) items, evenly spaced, deterministic', () => {
  assert.deepEqual([...stratifiedHoldOut(10, 0.2)], [4, 9]);
  assert.equal(stratifiedHoldOut(200, 0.2).size, 40);
  assert.equal(stratifiedHoldOut(7, 0).size, 0);
  assert.deepEqual([...stratifiedHoldOut(3, 0.5)], [1, 2]);
});

test('softmax regression separates separable classes; folded weights give the same probabilities', () => {
  const rng = createRng(3);
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  for (let i = 0; i < 60; i++) {
    const k = i % 3;
    labels.push(k);
    // Offset and scale per feature: the folding of the standardisation must undo them.
    rows.push(Float32Array.from({ length: 4 }, (_, a) => 100 + 10 * a + (a === k ? 3 : 0) + rng.next()));
  }
  const fit = fitSoftmax(rows, labels, 4, 3, { epochs: 200 });
  let correct = 0;
  for (const [i, r] of rows.entries()) {
    const p = softmaxProbabilities(fit, r);
    assert.ok(Math.abs(p.reduce((s, v) => s + v, 0) - 1) < 1e-9);
    if (p.indexOf(Math.max(...p)) === labels[i]) correct++;
  }
  assert.equal(correct, 60);
  assert.ok(fit.loss < 0.2, `loss ${fit.loss}`);
});

const skip = dataSkip('neu-det');

test('osprey train classify on 8 NEU images per class: valid package, edge runtime, better than chance', { skip, timeout: 120_000 }, async (t) => {
  const data = ospreyDataDir();
  const neu = join(data, 'neu-det');
  const tmp = await makeTempDir(t, 'osprey-classify-');
  const classes = (await readdir(neu, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name).sort();
  assert.equal(classes.length, 6);
  const held: { file: string; label: string }[] = [];
  for (const c of classes) {
    const names = (await readdir(join(neu, c))).filter((f) => f.endsWith('.jpg')).sort();
    await mkdir(join(tmp, 'data', c), { recursive: true });
    const picked = names.filter((_, i) => i % 20 === 0).slice(0, 10);
    for (const f of picked) await copyFile(join(neu, c, f), join(tmp, 'data', c, f));
    // Images never given to the trainer.
    for (const f of names.filter((_, i) => i % 20 === 10).slice(0, 3)) held.push({ file: join(neu, c, f), label: c });
  }
  const pkg = join(tmp, 'pkg');
  const run = await runOsprey('train', 'classify', '--data', join(tmp, 'data'), '--out', pkg, '--backbone', join(data, 'models', 'squeezenet-fp16'));
  assert.equal(run.code, 0, run.stderr);

  const card = JSON.parse(await readFile(join(pkg, 'model-card.json'), 'utf8'));
  assert.equal(card.schema, 'osprey-model-card/1');
  assert.equal(card.data.trainImages, 48);
  assert.deepEqual(Object.values(card.data.perLabel), [8, 8, 8, 8, 8, 8]);
  assert.match(card.data.trainSha256, /^[0-9a-f]{64}$/);
  assert.equal(card.validation.images, 12);
  assert.equal(card.validation.confusion.matrix.flat().reduce((a: number, b: number) => a + b, 0), 12);
  assert.ok(card.check.graphVsJsMaxAbsDiff < 1e-4);
  // The search (quick, the default): 4 trials judged inside the 48 training images (2 of each label's 8).
  assert.equal(card.search.mode, 'quick');
  // The golden set: 4 training images of each of the 6 labels, with the package's own answers.
  const golden = JSON.parse(await readFile(join(pkg, 'golden.json'), 'utf8'));
  assert.equal(golden.images.length, 24);
  assert.deepEqual([...new Set(golden.images.map((i: { truth: { label: string } }) => i.truth.label))], card.labels.labels);
  assert.equal(card.goldenSet.expectedAccuracy, golden.images.filter((i: { truth: { label: string }; expected: { label: string } }) => i.truth.label === i.expected.label).length / 24);
  assert.match(card.search.protocol, /fit on 36 training images.* on 12 other training images/);
  assert.equal(card.search.trials.length, 4);
  const top = Math.max(...card.search.trials.map((tr: { score: number }) => tr.score));
  assert.ok(card.search.trials.some((tr: { score: number; choice: unknown }) => tr.score === top && JSON.stringify(tr.choice) === JSON.stringify(card.search.chosen)));
  assert.equal(card.method.hyperParameters.l2, card.search.chosen.l2);
  assert.deepEqual(card.backbone.taps, card.search.chosen.layers);
  assert.equal(run.stderr.split('\n').filter((l) => / accuracy +\d/.test(l) && /^[ *] fire/.test(l)).length, 4, run.stderr);
  const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8'));
  assert.equal(manifest.task, 'classification');
  assert.deepEqual(manifest.labels, classes);
  assert.deepEqual(manifest.defectLabels, classes);

  const validated = await runOsprey('model', 'validate', pkg);
  assert.equal(validated.code, 0, validated.stderr);

  const runner = await loadModelPackage(pkg);
  t.after(() => runner.close());
  let correct = 0;
  for (const h of held) {
    const r = await runner.inspect(await readFile(h.file));
    assert.equal(r.verdict, 'defect');
    if (r.label === h.label) correct++;
  }
  t.diagnostic(`held-out accuracy ${correct}/${held.length}, card accuracy ${card.validation.accuracy}`);
  // Chance is 1/6 (3 of 18).
  assert.ok(correct >= 12, `held-out accuracy ${correct}/${held.length}`);
});

test('osprey train classify --good-label: that label is not a defect, and the edge passes frames of it', { skip, timeout: 120_000 }, async (t) => {
  const data = ospreyDataDir();
  const neu = join(data, 'neu-det');
  const tmp = await makeTempDir(t, 'osprey-classify-good-');
  const held: { file: string; label: string }[] = [];
  for (const c of ['crazing', 'patches', 'scratches']) {
    const names = (await readdir(join(neu, c))).filter((f) => f.endsWith('.jpg')).sort();
    await mkdir(join(tmp, 'data', c), { recursive: true });
    for (const f of names.filter((_, i) => i % 25 === 0).slice(0, 6)) await copyFile(join(neu, c, f), join(tmp, 'data', c, f));
    for (const f of names.filter((_, i) => i % 25 === 12).slice(0, 3)) held.push({ file: join(neu, c, f), label: c });
  }
  const pkg = join(tmp, 'pkg');
  const run = await runOsprey('train', 'classify', '--data', join(tmp, 'data'), '--out', pkg, '--val-fraction', '0',
    '--good-label', 'crazing', '--no-search', '--backbone', join(data, 'models', 'squeezenet-fp16'));
  assert.equal(run.code, 0, run.stderr);
  const fixed = JSON.parse(await readFile(join(pkg, 'model-card.json'), 'utf8'));
  // --no-search: the fixed recipe (fire9 average, 512 features, L2 1e-3).
  assert.deepEqual(fixed.search, { mode: 'off', chosen: { layers: ['fire9/concat_1'], pooling: 'avg', l2: 0.001 } });
  assert.equal(fixed.method.hyperParameters.features, 512);
  const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8'));
  assert.deepEqual(manifest.defectLabels, ['patches', 'scratches']);
  const card = JSON.parse(await readFile(join(pkg, 'model-card.json'), 'utf8'));
  assert.equal(card.validation, undefined);
  assert.equal(card.data.trainImages, 18);
  const runner = await loadModelPackage(pkg);
  t.after(() => runner.close());
  let right = 0;
  let goodPassed = 0;
  for (const h of held) {
    const r = await runner.inspect(await readFile(h.file));
    // Three labels: the top one has p > 1/3; with two defect labels their sum decides (≥ 0.5).
    if (r.label === h.label) right++;
    if (h.label === 'crazing' && r.verdict === 'ok') goodPassed++;
  }
  t.diagnostic(`held-out ${right}/${held.length} right, crazing passed ${goodPassed}/3`);
  assert.ok(goodPassed >= 2, `crazing frames passed: ${goodPassed}/3`);
  assert.ok(right >= 6, `held-out ${right}/${held.length}`);
});

test('osprey train classify: bad input is a one-line error naming the option', async (t) => {
  const tmp = await makeTempDir(t, 'osprey-classify-bad-');
  const noData = await runOsprey('train', 'classify', '--out', join(tmp, 'p'));
  assert.equal(noData.code, 1);
  assert.match(noData.stderr, /needs --data DIR/);
  const frac = await runOsprey('train', 'classify', '--data', tmp, '--out', join(tmp, 'p'), '--val-fraction', '1.5', '--backbone', 'x');
  assert.equal(frac.code, 1);
  assert.match(frac.stderr, /--val-fraction must be a number in \[0, 1\), got 1.5/);
  await mkdir(join(tmp, 'only'));
  const one = await runOsprey('train', 'classify', '--data', tmp, '--out', join(tmp, 'p'), '--backbone', 'x');
  assert.equal(one.code, 1);
  assert.match(one.stderr, /--data .*needs one sub-folder per label \(at least 2\), found 1/);
  assert.equal(one.stderr.trim().split('\n').length, 1);
  await mkdir(join(tmp, 'other'));
  const good = await runOsprey('train', 'classify', '--data', tmp, '--out', join(tmp, 'p'), '--backbone', 'x', '--good-label', 'ok');
  assert.equal(good.code, 1);
  assert.match(good.stderr, /--good-label ok is not one of the labels \(only, other\)/);
});
