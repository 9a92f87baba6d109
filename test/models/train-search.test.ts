/**
 * The trainers' automatic search (models/train/search.ts): every trial reported, the best by the
 * protocol chosen, tap subsets as columns of the union features; the 1-NN head's graph against its
 * JavaScript; the Gaussian's dual form against its primal; seeded synthetic anomalies. Then a
 * small real MTD subset through `osprey train anomaly` with the search on and off.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'node:test';
import * as ort from 'onnxruntime-node';
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { createRng } from '../../models/prng.js';
import type { InputTensor } from '../../models/tensor.js';
import { OPERATING_POINTS, percentile } from '../../models/train/calibration.js';
import { Extractor, inputSpec, listImages, readAll, readBackbone } from '../../models/train/extract.js';
import { ANOMALY_RECIPE, buildGraph, cutFor, deriveSpec, featureCount, tapSpec } from '../../models/train/features-graph.js';

/** The SqueezeNet 1.1 anomaly spec the backbone's shapes give (fire3 55×55, fire5 27×27, fire7 13×13 at 224). */
const SQUEEZENET_TAPS = deriveSpec(ANOMALY_RECIPE, 224, [
  { name: 'fire3/concat_1', dims: [1, 128, 55, 55] },
  { name: 'fire5/concat_1', dims: [1, 256, 27, 27] },
  { name: 'fire7/concat_1', dims: [1, 384, 13, 13] },
]);
import { fitGaussian, gaussianScore, gaussianScorers } from '../../models/train/gaussian.js';
import { fitNearest, nearestHead, nearestScore } from '../../models/train/nearest-neighbour.js';
import { searchAnomaly, searchClassify, searchTable, describeAnomalyChoice, selectColumns, specAtSize, subsetColumns, unionTaps, type Tap } from '../../models/train/search.js';
import { ANOMALY_KINDS, synthesiseAnomaly } from '../../models/train/synthetic-anomalies.js';
import { effectiveSpace } from '../../models/train/train-anomaly.js';
import { runOsprey } from '../helpers/osprey-process.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const A: Tap = { name: 'a', channels: 2, size: 1 };
const B: Tap = { name: 'b', channels: 3, size: 1 };
const C: Tap = { name: 'c', channels: 1, size: 1 };

test('tap subsets are columns of the union features (average of every tap, then maximum of every tap)', () => {
  const union = unionTaps([[A, B], [B, C]]);
  assert.deepEqual(union.map((t) => t.name), ['a', 'b', 'c']);
  // Union row: avg a0 a1 b0 b1 b2 c0 | max a0 a1 b0 b1 b2 c0
  assert.deepEqual([...subsetColumns(union, [B, C], 'avg+max')], [2, 3, 4, 5, 8, 9, 10, 11]);
  assert.deepEqual([...subsetColumns(union, [C, A], 'avg')], [5, 0, 1]);
  const row = Float32Array.from({ length: 12 }, (_, i) => i * 10);
  assert.deepEqual([...selectColumns([row], subsetColumns(union, [A], 'avg+max'))[0]], [0, 10, 60, 70]);
  assert.throws(() => subsetColumns([A], [B], 'avg'), /tap b is not in the extracted union/);
  assert.deepEqual({ size: specAtSize(SQUEEZENET_TAPS, 192).size, grid: specAtSize(SQUEEZENET_TAPS, 192).grid }, { size: 192, grid: 23 });
});

test('anomaly search: every (size, layers, head) trial reported, the best AUROC chosen, ties to the earlier trial', () => {
  const rng = createRng(11);
  const union = [A, B];
  // Tap b's average carries the anomaly at size 2; everything else is noise.
  const row = (size: number, anomalous: boolean) => Float32Array.from({ length: 10 }, (_, i) => rng.normal() + (anomalous && size === 2 && i >= 2 && i < 5 ? 6 : 0));
  const data = [1, 2].map((size) => ({
    size,
    union,
    fit: Array.from({ length: 40 }, () => row(size, false)),
    good: Array.from({ length: 15 }, () => row(size, false)),
    anomalies: Array.from({ length: 15 }, () => row(size, true)),
  }));
  const space = { sizes: [1, 2], layerSets: [[A], [B], [A, B]], heads: [{ head: 'gaussian' as const, ridge: 0.1 }, { head: 'nearest' as const }] };
  const lines: string[] = [];
  const report = searchAnomaly(space, data, 'test protocol', (l) => lines.push(l));
  assert.equal(report.trials.length, 12);
  assert.equal(lines.length, 12);
  assert.equal(report.protocol, 'test protocol');
  for (const t of report.trials) {
    assert.ok(t.score >= 0 && t.score <= 1 && t.seconds >= 0, JSON.stringify(t));
    assert.ok(t.choice.layers.length > 0);
  }
  const top = Math.max(...report.trials.map((t) => t.score));
  const first = report.trials.find((t) => t.score === top)!;
  assert.deepEqual(report.chosen, first.choice);
  assert.equal(report.chosen.size, 2);
  assert.ok(report.chosen.layers.includes('b'));
  assert.ok(top > 0.95, `best AUROC ${top}`);
  // Size 1 carries no signal: its trials are near chance.
  assert.ok(report.trials.filter((t) => t.choice.size === 1).every((t) => t.score < 0.85));
  const table = searchTable(report, describeAnomalyChoice, 'AUROC').split('\n');
  assert.equal(table.length, 13);
  assert.equal(table.filter((l) => l.startsWith('*')).length, 1);

  // All equal: the first trial (the fixed recipe's place) wins.
  const flat = [{ size: 1, union, fit: data[0].fit, good: data[0].fit.slice(0, 5), anomalies: data[0].fit.slice(0, 5) }];
  const tie = searchAnomaly({ sizes: [1], layerSets: [[A], [B]], heads: [{ head: 'nearest' }] }, flat, 'tie');
  assert.ok(tie.trials.every((t) => t.score === tie.trials[0].score));
  assert.deepEqual(tie.chosen, tie.trials[0].choice);
});

test('classifier search: accuracy on the given check split, then log-loss; every trial reported', () => {
  const rng = createRng(5);
  const union = [A, B];
  // Classes differ in tap a's maximum only (columns 7, 8 of avg a a b b b | max a a b b b).
  const make = (n: number) => {
    const rows: Float32Array[] = [];
    const labels: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = i % 2;
      labels.push(k);
      rows.push(Float32Array.from({ length: 10 }, (_, c) => rng.normal() + (k === 1 && (c === 5 || c === 6) ? 4 : 0)));
    }
    return { rows, labels };
  };
  const space = { features: [{ taps: [B], pooling: 'avg' as const }, { taps: [A, B], pooling: 'avg+max' as const }], l2: [1e-3, 1e-2] };
  const report = searchClassify(space, union, make(60), make(30), 2, 'inner split', { epochs: 100 });
  assert.equal(report.trials.length, 4);
  assert.ok(report.trials.every((t) => typeof t.detail?.logLoss === 'number'));
  assert.equal(report.chosen.pooling, 'avg+max');
  assert.deepEqual(report.chosen.layers, ['a', 'b']);
  assert.ok(report.trials.filter((t) => t.choice.pooling === 'avg').every((t) => t.score < 0.8));
});

test('anomaly search space: quick by default, pins narrow it, off is the fixed recipe', () => {
  const quick = effectiveSpace({}, SQUEEZENET_TAPS, 'quick');
  assert.deepEqual(quick.sizes, [224, 160, 128]);
  assert.deepEqual(quick.layerSets[0], SQUEEZENET_TAPS.taps);
  assert.equal(quick.sizes.length * quick.layerSets.length * quick.heads.length, 18);
  assert.deepEqual(effectiveSpace({ head: 'nearest' }, SQUEEZENET_TAPS, 'quick').heads, [{ head: 'nearest' }]);
  assert.deepEqual(effectiveSpace({ ridge: 0.05 }, SQUEEZENET_TAPS, 'quick').heads, [{ head: 'nearest' }, { head: 'gaussian', ridge: 0.05 }]);
  assert.deepEqual(effectiveSpace({ size: 192, head: 'gaussian' }, SQUEEZENET_TAPS, 'quick').sizes, [192]);
  assert.deepEqual(quick.layerSets[1]!.map((t) => t.name), ['fire5/concat_1', 'fire7/concat_1']);
  assert.deepEqual(effectiveSpace({ pinTaps: true }, SQUEEZENET_TAPS, 'quick').layerSets, [SQUEEZENET_TAPS.taps]);
  // full: five sizes × {fire3+5+7, fire5+7, fire3+5+7 + the classifier-level fire9} × four heads.
  const candidates = { anomaly: SQUEEZENET_TAPS.taps, classify: tapSpec('fire9/concat_1', [1, 512, 13, 13], SQUEEZENET_TAPS.grid) };
  const full = effectiveSpace({}, SQUEEZENET_TAPS, 'full', candidates);
  assert.equal(full.sizes.length * full.layerSets.length * full.heads.length, 60);
  assert.deepEqual(full.layerSets[2]!.map((t) => t.name), ['fire3/concat_1', 'fire5/concat_1', 'fire7/concat_1', 'fire9/concat_1']);
  assert.deepEqual(effectiveSpace({}, SQUEEZENET_TAPS, 'off'), { sizes: [224], layerSets: [SQUEEZENET_TAPS.taps], heads: [{ head: 'gaussian', ridge: 0.01 }] });
});

test('Gaussian: the search scorer (dual form when n − 1 < D, primal otherwise) equals the fitted score', () => {
  const rng = createRng(2);
  for (const [n, D] of [[8, 20], [30, 5]]) {
    const rows = Array.from({ length: n }, () => Float32Array.from({ length: D }, (_, a) => rng.normal() * (a + 1)));
    const scorers = gaussianScorers(rows, D);
    for (const ridge of [0.01, 0.1]) {
      const fit = fitGaussian(rows, D, ridge);
      const score = scorers(ridge);
      for (let k = 0; k < 3; k++) {
        const x = Float32Array.from({ length: D }, () => rng.normal() * 3);
        const want = gaussianScore(fit, x);
        assert.ok(Math.abs(score(x) - want) < 1e-8 * want, `n ${n} D ${D} ridge ${ridge}: ${score(x)} vs ${want}`);
      }
    }
  }
});

test('1-NN head: leave-one-out is the nearest other row; the ONNX head gives the JavaScript score', async () => {
  const rng = createRng(4);
  const D = 6;
  const rows = Array.from({ length: 9 }, () => Float32Array.from({ length: D }, () => rng.normal()));
  const fit = fitNearest(rows, D);
  const d2 = (a: Float32Array, b: Float32Array) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0);
  for (const [i, r] of rows.entries()) {
    const want = Math.min(...rows.filter((_, j) => j !== i).map((o) => d2(r, o)));
    assert.ok(Math.abs(fit.looScores[i] - want) < 1e-9 * want);
    assert.equal(nearestScore(fit, r), 0);
  }
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'nn', docString: 'test' });
  b.input('features', 'float32', [1, D]);
  nearestHead(fit).build(b);
  b.output('score', 'float32', [1]);
  const session = await ort.InferenceSession.create(b.toBytes());
  try {
    for (let k = 0; k < 5; k++) {
      const x = Float32Array.from({ length: D }, () => rng.normal());
      const out = await session.run({ features: new ort.Tensor('float32', x, [1, D]) });
      const js = nearestScore(fit, x);
      assert.deepEqual(out.score.dims, [1]);
      assert.ok(Math.abs((out.score.data as Float32Array)[0] - js) < 1e-5 * js, `${(out.score.data as Float32Array)[0]} vs ${js}`);
    }
  } finally {
    await session.release();
  }
});

test('synthetic anomalies: seeded (same seed, same image), local, every kind, the source left alone', () => {
  const S = 64;
  const rng = createRng(9);
  const data = Float32Array.from({ length: S * S }, (_, i) => 0.4 + 0.1 * Math.sin(i / 7) + 0.05 * rng.next());
  const t: InputTensor = { dtype: 'float32', data, dims: [1, 1, S, S] };
  const copy = Float32Array.from(data);
  for (const [k, kind] of ANOMALY_KINDS.entries()) {
    const a = synthesiseAnomaly(t, 100 + k, kind);
    const again = synthesiseAnomaly(t, 100 + k, kind);
    assert.deepEqual(a.dims, t.dims);
    assert.deepEqual(a.data, again.data, `${kind} is deterministic`);
    const changed = (a.data as Float32Array).filter((v, i) => Math.abs(v - data[i]) > 1e-4).length / (S * S);
    assert.ok(changed > 0.002 && changed < (kind === 'shading' ? 0.9 : 0.3), `${kind}: ${(changed * 100).toFixed(1)} % changed`);
    assert.notDeepEqual(synthesiseAnomaly(t, 200 + k, kind).data, a.data, `${kind}: another seed, another defect`);
  }
  assert.deepEqual(data, copy);
  // The default kind cycles with the seed.
  assert.deepEqual(synthesiseAnomaly(t, 6).data, synthesiseAnomaly(t, 6, 'blotch').data);
});

const skip = dataSkip('magnetic-tile');

test('osprey train anomaly: the search on 24 MTD images reports every trial and writes the chosen head; --no-search is the fixed recipe', { skip, timeout: 180_000 }, async (t) => {
  const data = ospreyDataDir();
  const tmp = await makeTempDir(t, 'osprey-search-');
  const good = join(tmp, 'good');
  await mkdir(good);
  const src = join(data, 'magnetic-tile', 'train', 'good');
  const names = (await readdir(src)).filter((f) => f.endsWith('.jpg')).sort().filter((_, i) => i % 31 === 0).slice(0, 24);
  for (const f of names) await copyFile(join(src, f), join(good, f));
  const backbone = join(data, 'models', 'squeezenet-fp16');

  // Quick search: 3 sizes × 2 layer sets × 3 heads.
  const pkg = join(tmp, 'pkg');
  const run = await runOsprey('train', 'anomaly', '--good', good, '--out', pkg, '--backbone', backbone);
  assert.equal(run.code, 0, run.stderr);
  const card = JSON.parse(await readFile(join(pkg, 'model-card.json'), 'utf8'));
  assert.equal(card.search.mode, 'quick');
  assert.match(card.search.protocol, /19 good images.*5 held-out good images.*5 synthetic anomalies/);
  assert.equal(card.search.trials.length, 18);
  const top = Math.max(...card.search.trials.map((tr: { score: number }) => tr.score));
  assert.deepEqual(card.search.chosen, card.search.trials.find((tr: { score: number }) => tr.score === top).choice);
  assert.deepEqual(card.backbone.taps, card.search.chosen.layers);
  assert.equal(card.method.hyperParameters.head, card.search.chosen.head === 'nearest' ? '1-NN' : 'gaussian');
  assert.ok(card.check.graphVsJsMaxRelDiff < 1e-4, `graph vs JavaScript ${card.check.graphVsJsMaxRelDiff}`);
  // The CLI's table: the header and one line per trial, the chosen one starred.
  const table = run.stderr.split('\n').filter((l) => /^[ *] \d+px /.test(l));
  assert.equal(table.length, 18, run.stderr);
  assert.equal(table.filter((l) => l.startsWith('*')).length, 1);
  assert.equal(JSON.parse(run.stdout).search.size, card.search.chosen.size);

  // Pinned: the 1-NN head, fixed; its graph must match its JavaScript.
  const nn = join(tmp, 'nn');
  const nnRun = await runOsprey('train', 'anomaly', '--good', good, '--out', nn, '--backbone', backbone, '--no-search', '--head', 'nearest', '--taps', 'fire5/concat_1,fire7/concat_1');
  assert.equal(nnRun.code, 0, nnRun.stderr);
  const nnCard = JSON.parse(await readFile(join(nn, 'model-card.json'), 'utf8'));
  assert.deepEqual(nnCard.search, { mode: 'off', chosen: { size: 224, layers: ['fire5/concat_1', 'fire7/concat_1'], head: 'nearest' } });
  assert.equal(nnCard.method.name, 'nearest-neighbour-image-features');
  assert.equal(nnCard.method.hyperParameters.features, 2 * (256 + 384));
  assert.ok(nnCard.check.graphVsJsMaxRelDiff < 1e-4, `1-NN graph vs JavaScript ${nnCard.check.graphVsJsMaxRelDiff}`);

  // --no-search: the fixed recipe, its threshold from the Gaussian fitted on SQUEEZENET_TAPS features directly.
  const fixed = join(tmp, 'fixed');
  const fixedRun = await runOsprey('train', 'anomaly', '--good', good, '--out', fixed, '--backbone', backbone, '--no-search');
  assert.equal(fixedRun.code, 0, fixedRun.stderr);
  const fixedCard = JSON.parse(await readFile(join(fixed, 'model-card.json'), 'utf8'));
  assert.deepEqual(fixedCard.search, { mode: 'off', chosen: { size: 224, layers: SQUEEZENET_TAPS.taps.map((tp: { name: string }) => tp.name), head: 'gaussian', ridge: 0.01 } });
  const files = await listImages(good);
  const ex = await Extractor.create(buildGraph(cutFor(await readBackbone(backbone), backbone, SQUEEZENET_TAPS), SQUEEZENET_TAPS), 'features', inputSpec(SQUEEZENET_TAPS));
  t.after(() => ex.close());
  const rows = await ex.runAll(files, await readAll(files), () => {});
  const want = percentile(fitGaussian(rows, featureCount(SQUEEZENET_TAPS), 0.01).looScores, OPERATING_POINTS.balanced);
  assert.ok(Math.abs(fixedCard.operatingPoint.rawThreshold - want) < 1e-6 * want, `${fixedCard.operatingPoint.rawThreshold} vs ${want}`);
  assert.equal(fixedRun.stderr.split('\n').filter((l) => /^[ *] \d+px /.test(l)).length, 0);
});

test('osprey train anomaly: bad search options are one-line errors naming the option', async (t) => {
  const tmp = await makeTempDir(t, 'osprey-search-bad-');
  for (const [args, msg] of [
    [['--search', 'slow'], /--search must be quick, full or off, got "slow"/],
    [['--no-search', '--search', 'full'], /--no-search and --search full contradict each other/],
    [['--head', 'knn'], /--head must be gaussian or nearest, got "knn"/],
    [['--ridge', 'zero'], /--ridge must be a positive number, got "zero"/],
  ] as const) {
    const r = await runOsprey('train', 'anomaly', '--good', tmp, '--out', join(tmp, 'p'), '--backbone', join(tmp, 'none.onnx'), ...args);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, msg);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
