/**
 * The trainer's backbones (issue 15): taps found automatically or by name, any input convention.
 * On the real SqueezeNet in ../shared/data the automatic taps are the hand-picked ones; on graphs
 * of the shapes plants download (zoo SqueezeNet 1.1, MobileNetV2 at opset 12 and 7, built in code
 * with random weights: test/helpers/backbone-graphs.ts) `osprey train anomaly|classify` runs on
 * a few real images, the package validates and the edge runs it. Plus the refusals.
 */
import assert from 'node:assert/strict';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'node:test';
import { buildResnet18 } from '../../bench/models/resnet18.js';
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { loadModelPackage } from '../../models/runtime.js';
import { ANOMALY_RECIPE, CLASSIFY_RECIPE, deriveSpec, prepareBackbone } from '../../models/train/features-graph.js';
import { zooMobilenetV2, zooSqueezenet11, type BuiltBackbone } from '../helpers/backbone-graphs.js';
import { runOsprey } from '../helpers/osprey-process.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { backboneChoice } from '../../cli/train-backbone-options.js';
import { resolveInputNorm } from '../../models/train/input-norm.js';

const IMAGENET = ['--mean', '0.485,0.456,0.406', '--std', '0.229,0.224,0.225'];

test('automatic taps on the real SqueezeNet 1.1 (fp16) are the hand-picked ones, shapes from one run', { skip: dataSkip('models/squeezenet-fp16') }, async () => {
  const file = join(ospreyDataDir(), 'models', 'squeezenet-fp16', 'model.onnx');
  const bytes = await readFile(file);
  const anomaly = await prepareBackbone(bytes, file, ANOMALY_RECIPE);
  assert.deepEqual(anomaly.spec.taps, [
    { name: 'fire3/concat_1', channels: 128, size: 55, avgPool: { kernel: 3, stride: 2 } },
    { name: 'fire5/concat_1', channels: 256, size: 27 },
    { name: 'fire7/concat_1', channels: 384, size: 13 },
  ]);
  assert.equal(anomaly.spec.grid, 27);
  assert.equal(anomaly.spec.border, 1);
  assert.equal(anomaly.spec.size, 224);
  const classify = await prepareBackbone(bytes, file, CLASSIFY_RECIPE);
  assert.deepEqual(classify.spec.taps, [{ name: 'fire9/concat_1', channels: 512, size: 13 }]);
  assert.equal(classify.spec.grid, 13);
  // The cut stops at the taps: no classifier conv, no softmax in the package graph.
  assert.ok(!classify.backbone.nodes.some((n) => n.opType === 'Softmax' || (n.output ?? []).some((o) => o.includes('conv10'))));
});

test('tap pooling and grid come from the shapes: the middle tap sets the grid, larger maps pool onto it exactly', () => {
  const spec = (sizes: number[]) => deriveSpec(ANOMALY_RECIPE, 224, sizes.map((s, i) => ({ name: `t${i}`, dims: [1, 8 * (i + 1), s, s] })));
  const sq = spec([55, 27, 13]);
  assert.equal(sq.grid, 27);
  assert.deepEqual(sq.taps.map((t) => t.avgPool), [{ kernel: 3, stride: 2 }, undefined, undefined]);
  const mb = spec([56, 28, 14]);
  assert.equal(mb.grid, 28);
  assert.deepEqual(mb.taps[0]!.avgPool, { kernel: 2, stride: 2 });
  assert.deepEqual(mb.taps.map((t) => t.channels), [8, 16, 24]);
  // Pooled size = (h − k)/s + 1 lands on the grid.
  for (const h of [111, 112, 57]) {
    const t = spec([h, 28, 14]).taps[0]!;
    assert.equal((h - t.avgPool!.kernel) / t.avgPool!.stride + 1, 28, `h ${h}`);
  }
  assert.equal(spec([14, 7]).grid, 7);
});

for (const [label, build] of [
  ['zoo SqueezeNet 1.1 (opset 7, input data)', () => zooSqueezenet11({ width: 0.25 })],
  ['MobileNetV2 (opset 12, input input [batch_size,3,224,224], Clip inputs)', () => zooMobilenetV2({ width: 0.25 })],
  ['MobileNetV2 (opset 7, Clip attributes)', () => zooMobilenetV2({ width: 0.25, opset: 7 })],
] as [string, () => BuiltBackbone][]) {
  test(`automatic taps on a ${label}: the stage ends and the map before the head`, async () => {
    const m = build();
    const a = await prepareBackbone(m.bytes, 'built.onnx', ANOMALY_RECIPE);
    assert.deepEqual(a.spec.taps.map((t) => t.name), m.expected.anomaly);
    assert.deepEqual(a.spec.taps.map((t) => t.size), label.startsWith('zoo Squeeze') ? [55, 27, 13] : [56, 28, 14]);
    const c = await prepareBackbone(m.bytes, 'built.onnx', CLASSIFY_RECIPE);
    assert.deepEqual(c.spec.taps.map((t) => t.name), [m.expected.classify]);
  });
}

test('automatic taps on the bench ResNet-18: layer1, layer2, layer3 block outputs (PaDiM) and layer4', async () => {
  const m = buildResnet18({ width: 0.25 });
  const a = await prepareBackbone(m.bytes, 'resnet18.onnx', ANOMALY_RECIPE);
  assert.deepEqual(a.spec.taps.map((t) => [t.channels, t.size]), [[16, 56], [32, 28], [64, 14]]);
  // Each a block's output: the ReLU after the residual Add.
  for (const t of a.spec.taps) assert.ok(a.backbone.nodes.some((n) => n.opType === 'Relu' && n.output?.[0] === `backbone/${t.name}` && n.input?.[0]?.startsWith('backbone/add')), t.name);
  const c = await prepareBackbone(m.bytes, 'resnet18.onnx', CLASSIFY_RECIPE);
  assert.deepEqual(c.spec.taps.map((t) => [t.channels, t.size]), [[128, 7]]);
});

async function pickImages(from: string, to: string, every: number, count: number): Promise<string[]> {
  await mkdir(to, { recursive: true });
  const names = (await readdir(from)).filter((f) => f.endsWith('.jpg')).sort().filter((_, i) => i % every === 0).slice(0, count);
  for (const f of names) await copyFile(join(from, f), join(to, f));
  return names.map((f) => join(to, f));
}

async function edgeScores(pkg: string, files: string[]): Promise<number[]> {
  const runner = await loadModelPackage(pkg);
  try {
    const out: number[] = [];
    for (const f of files) out.push((await runner.inspect(await readFile(f))).score);
    return out;
  } finally {
    await runner.close();
  }
}

const mtdSkip = dataSkip('magnetic-tile');
const neuSkip = dataSkip('neu-det');

for (const [label, build, norm] of [
  ['zoo SqueezeNet 1.1', () => zooSqueezenet11({ width: 0.25 }), IMAGENET],
  ['MobileNetV2 with mean/std in its metadata', () => zooMobilenetV2({ width: 0.25, metadata: { mean: '[0.485, 0.456, 0.406]', std: '[0.229, 0.224, 0.225]' } }), []],
] as [string, () => BuiltBackbone, string[]][]) {
  test(`osprey train anomaly and classify on a ${label}: valid packages the edge runs, numbers in the card`, { skip: mtdSkip || neuSkip, timeout: 120_000 }, async (t) => {
    const data = ospreyDataDir();
    const tmp = await makeTempDir(t, 'osprey-backbone-');
    const m = build();
    const backbone = join(tmp, 'backbone.onnx');
    await writeFile(backbone, m.bytes);
    const good = await pickImages(join(data, 'magnetic-tile', 'train', 'good'), join(tmp, 'good'), 50, 12);
    const defects: string[] = [];
    for (const cls of ['blowhole', 'crack']) defects.push(...(await pickImages(join(data, 'magnetic-tile', 'dev', cls), join(tmp, 'defects', cls), 10, 2)));

    // One-class, the backbone's own normalisation (flags, or the model's metadata).
    const pkg = join(tmp, 'anomaly');
    const run = await runOsprey('train', 'anomaly', '--good', join(tmp, 'good'), '--out', pkg, '--backbone', backbone, '--defects', join(tmp, 'defects'), '--input-norm', 'backbone', ...norm);
    assert.equal(run.code, 0, run.stderr);
    const card = JSON.parse(await readFile(join(pkg, 'model-card.json'), 'utf8'));
    // The search (on by default) tries the found taps and the same without the shallowest; the card names the set it chose.
    const sets = [m.expected.anomaly, m.expected.anomaly.slice(1)].map((x) => JSON.stringify(x));
    assert.ok(sets.includes(JSON.stringify(card.backbone.taps)), `taps ${card.backbone.taps}`);
    assert.ok(card.search.trials.some((t: { choice: { layers: string[] } }) => JSON.stringify(t.choice.layers) === sets[0]), 'the found taps were a trial');
    assert.equal(card.backbone.input.mode, 'backbone');
    assert.equal(card.backbone.input.color, 'rgb');
    assert.deepEqual(card.backbone.input.mean, [0.485, 0.456, 0.406]);
    assert.match(card.backbone.input.source, norm.length > 0 ? /mean from --mean/ : /mean from the ONNX metadata/);
    assert.ok(card.check.graphVsJsMaxRelDiff < 1e-4, `graph vs JavaScript ${card.check.graphVsJsMaxRelDiff}`);
    assert.ok(card.validation.auroc >= 0 && card.validation.auroc <= 1, `AUROC ${card.validation.auroc}`);
    assert.equal(card.validation.defectImages, 4);
    const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8'));
    assert.deepEqual({ color: manifest.input.color, scale: manifest.input.scale, std: manifest.input.std }, { color: 'rgb', scale: 1 / 255, std: [0.229, 0.224, 0.225] });
    assert.equal((await runOsprey('model', 'validate', pkg)).code, 0);
    const scores = await edgeScores(pkg, [...good.slice(0, 2), ...defects.slice(0, 2)]);
    assert.ok(scores.every(Number.isFinite), `edge scores ${scores}`);

    // Classifier, default (standardised gray) input, on three NEU labels.
    const classes = ['crazing', 'patches', 'scratches'];
    const neu: string[] = [];
    for (const c of classes) neu.push(...(await pickImages(join(data, 'neu-det', c), join(tmp, 'neu', c), 20, 6)));
    const cpkg = join(tmp, 'classify');
    const crun = await runOsprey('train', 'classify', '--data', join(tmp, 'neu'), '--out', cpkg, '--backbone', backbone, '--val-fraction', '0.34');
    assert.equal(crun.code, 0, crun.stderr);
    const ccard = JSON.parse(await readFile(join(cpkg, 'model-card.json'), 'utf8'));
    assert.deepEqual(ccard.backbone.taps, [m.expected.classify]);
    assert.equal(ccard.backbone.input.mode, 'standardise');
    assert.ok(ccard.check.graphVsJsMaxAbsDiff < 1e-4);
    assert.equal(ccard.validation.images, 6);
    assert.ok(ccard.validation.accuracy >= 0 && ccard.validation.accuracy <= 1);
    assert.equal((await runOsprey('model', 'validate', cpkg)).code, 0);
    const runner = await loadModelPackage(cpkg);
    t.after(() => runner.close());
    const r = await runner.inspect(await readFile(neu[8]!));
    assert.ok(Number.isFinite(r.score) && classes.includes(r.label ?? ''), JSON.stringify(r));
    t.diagnostic(`${label}: anomaly AUROC ${card.validation.auroc.toFixed(3)} (12 good, 4 defects, random weights), classify ${ccard.validation.accuracy.toFixed(2)} on 6`);

    // A tap name that does not exist: one line naming it.
    const bad = await runOsprey('train', 'anomaly', '--good', join(tmp, 'good'), '--out', join(tmp, 'bad'), '--backbone', backbone, '--taps', `${m.expected.anomaly[0]},no/such/tensor`);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--taps: no tensor named no\/such\/tensor in the backbone/);
    assert.equal(bad.stderr.trim().split('\n').length, 1);
  });
}

test('--taps by name: used as given, channels from the run; a tensor that is not a 4-D map is refused', async () => {
  const m = zooMobilenetV2({ width: 0.25 });
  const { spec } = await prepareBackbone(m.bytes, 'mb.onnx', ANOMALY_RECIPE, { taps: [m.expected.anomaly[1]!, m.expected.classify] });
  assert.deepEqual(spec.taps.map((t) => [t.name, t.channels, t.size]), [[m.expected.anomaly[1], 48, 28], [m.expected.classify, 320, 7]]);
  assert.equal(spec.grid, 7);
  await assert.rejects(prepareBackbone(m.bytes, 'mb.onnx', ANOMALY_RECIPE, { taps: ['output'] }), /mb\.onnx: --taps: output is not a 4-D float feature map \(shape \[1, 1000\]\)/);
});

function graph(build: (b: OnnxModelBuilder) => void, opset = 13): Uint8Array {
  const b = new OnnxModelBuilder({ opset });
  build(b);
  return b.toBytes();
}

const gapHead = (b: OnnxModelBuilder, x: string) =>
  b.node('GlobalAveragePool', [x], ['gap']).node('Flatten', ['gap'], ['flat'], { axis: 1 }).initializer('w', 'float32', [2, 3], [1, 0, 0, 0, 1, 0]).node('Gemm', ['flat', 'w'], ['out'], { transB: 1 }).output('out', 'float32', [1, 2]);

test('backbones that cannot work are refused with one line naming the file and the reason', async () => {
  const refuse = (bytes: Uint8Array, re: RegExp, choice = {}) => assert.rejects(prepareBackbone(bytes, 'b.onnx', ANOMALY_RECIPE, choice), (err: Error) => re.test(err.message) && !err.message.includes('\n'));
  await refuse(graph((b) => { b.input('a', 'float32', [1, 3, 8, 8]).input('b', 'float32', [1, 3, 8, 8]).node('Add', ['a', 'b'], ['s']); gapHead(b, 's'); }), /^b\.onnx: a backbone needs exactly one image input, found 2 \(a, b\)$/);
  await refuse(graph((b) => { b.input('x', 'uint8', [1, 3, 8, 8]).node('Cast', ['x'], ['f'], { to: 1 }); gapHead(b, 'f'); }), /input x is not a float image/);
  await refuse(graph((b) => { b.input('x', 'float32', [1, 784]).initializer('w', 'float32', [2, 784], new Float32Array(1568)).node('Gemm', ['x', 'w'], ['out'], { transB: 1 }).output('out', 'float32', [1, 2]); }), /input x \[1, 784\] is not a 4-D NCHW image/);
  await refuse(graph((b) => { b.input('x', 'float32', [1, 1, 28, 28]).node('Relu', ['x'], ['r']); gapHead(b, 'r'); }), /input x \[1, 1, 28, 28\] does not have 3 channels/);
  // Pooled straight away: no tensor larger than 1×1.
  await refuse(graph((b) => gapHead(b.input('x', 'float32', ['N', 3, 224, 224]), 'x')), /b\.onnx: the graph has no spatial feature maps/);
  await refuse(graph((b) => { b.input('x', 'float32', [1, 3, 8, 8]).node('Relu', ['x'], ['r']); gapHead(b, 'r'); }, 18), /opset 18 is newer than the trainer takes \(≤ 17\); export the backbone again with opset_version=17/);
  await refuse(graph((b) => { b.input('x', 'float32', [1, 3, 8, 8]).node('Relu', ['x'], ['r']); gapHead(b, 'r'); }, 6), /opset 6 is older than the trainer takes \(≥ 7\)/);
  await refuse(zooMobilenetV2({ width: 0.25 }).bytes, /^b\.onnx: --taps: no tensor named nope in the backbone$/, { taps: ['nope'] });
  await refuse(zooMobilenetV2({ width: 0.25 }).bytes, /--input-norm backbone needs --mean a,b,c and --std a,b,c: b\.onnx carries no mean\/std or Image\.NominalPixelRange in its metadata/, { inputNorm: { kind: 'backbone' } });
});

test('backbone options: parsed strictly, mean/std only with --input-norm backbone', () => {
  assert.deepEqual(backboneChoice({ taps: 'a, b', 'input-norm': 'backbone', color: 'bgr', scale: '1', mean: '104,117,123', std: '1,1,1' }), {
    taps: ['a', 'b'],
    inputNorm: { kind: 'backbone', color: 'bgr', scale: 1, mean: [104, 117, 123], std: [1, 1, 1] },
  });
  assert.deepEqual(backboneChoice({}), {});
  assert.throws(() => backboneChoice({ mean: '1,2,3' }), /--mean needs --input-norm backbone/);
  assert.throws(() => backboneChoice({ 'input-norm': 'imagenet' }), /--input-norm must be one of standardise\|backbone, got "imagenet"/);
  assert.throws(() => backboneChoice({ 'input-norm': 'backbone', mean: '1,2' }), /--mean needs 3 numbers, got "1,2"/);
  assert.throws(() => backboneChoice({ 'input-norm': 'backbone', std: '1,0,1' }), /--std values must be positive/);
  assert.throws(() => backboneChoice({ taps: ' , ' }), /--taps needs tensor names/);
});

test('--input-norm backbone: flags over the ONNX metadata over the torchvision defaults, the source in the card', () => {
  const meta = { 'Image.BitmapPixelFormat': 'Bgr8', 'image.nominalpixelrange': 'NominalRange_0_255' };
  assert.deepEqual(resolveInputNorm({ kind: 'backbone' }, meta, 'f'), {
    kind: 'backbone', color: 'bgr', scale: 1, mean: [0, 0, 0], std: [1, 1, 1],
    source: 'color from the ONNX metadata, scale from the ONNX metadata, mean from the ONNX metadata, std from the ONNX metadata',
  });
  const caffe = resolveInputNorm({ kind: 'backbone', mean: [104, 117, 123], std: [1, 1, 1] }, meta, 'f');
  assert.deepEqual([caffe.kind === 'backbone' && caffe.mean, caffe.kind === 'backbone' && caffe.color], [[104, 117, 123], 'bgr']);
  const tv = resolveInputNorm({ kind: 'backbone' }, { mean: '0.485,0.456,0.406', std: '[0.229, 0.224, 0.225]' }, 'f');
  assert.deepEqual(tv, { kind: 'backbone', color: 'rgb', scale: 1 / 255, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], source: 'color default, scale default, mean from the ONNX metadata, std from the ONNX metadata' });
  const half = resolveInputNorm({ kind: 'backbone' }, { 'Image.NominalPixelRange': 'Normalized_1_1' }, 'f');
  assert.deepEqual(half.kind === 'backbone' && [half.scale, half.mean, half.std], [1 / 255, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]);
  assert.deepEqual(resolveInputNorm(undefined, meta, 'f'), { kind: 'standardise' });
});
