import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeOnnx, parsePythonNames } from '../../models/onnx-inspect.js';
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { proposeManifest, type PackDeclarations } from '../../models/propose-manifest.js';
import { isOspreyError } from '../../protocol/errors.js';
import { anomalibModel } from './fixtures-anomaly.js';
import { end2endDetector, yoloDetector } from './fixtures-detection.js';
import { colourClassifier, rawGrayClassifier, scoresBoxesDetector } from './fixtures.js';
import { packModel } from '../../models/pack.js';
import { tempDir } from './helpers.js';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const describe = (b: OnnxModelBuilder) => describeOnnx(b.toBytes(), 'fixture.onnx');

function refuses(declared: PackDeclarations, model: OnnxModelBuilder, pattern: RegExp): void {
  assert.throws(() => proposeManifest(describe(model), declared), (err: unknown) => {
    assert.ok(isOspreyError(err, 'OSP_ERR_MODEL_MANIFEST'), String(err));
    assert.match((err as Error).message, pattern);
    return true;
  });
}

test('Ultralytics names are a Python dict repr', () => {
  assert.deepEqual(parsePythonNames("{0: 'person', 1: \"traffic light\", 2: 'it\\'s'}"), ['person', 'traffic light', "it's"]);
  assert.equal(parsePythonNames('[1, 2]'), undefined);
});

test('Ultralytics detectors: metadata gives task, names, imgsz; the output shape gives the format', () => {
  const d = describe(yoloDetector().model);
  assert.equal(d.convention, 'ultralytics');
  assert.deepEqual(d.hints, { task: 'detection', labels: ['screw', 'scratch'], size: { height: 64, width: 64 }, stride: 32, detectionFormat: 'yolov8' });
  assert.deepEqual(d.inputs, [{ name: 'images', dtype: 'float32', shape: [1, 3, 64, 64] }]);
  assert.deepEqual(d.outputs, [{ name: 'output0', dtype: 'float32', shape: [1, 6, 8] }]);
  assert.deepEqual(d.opsets, [{ domain: 'ai.onnx', version: 13 }]);
  assert.equal(d.metadata.author, 'Ultralytics');

  const m = proposeManifest(d, {});
  assert.deepEqual(m.input, { name: 'images', layout: 'nchw', width: 64, height: 64, dtype: 'float32', color: 'rgb', resize: 'letterbox', padValue: 114, scale: 1 / 255, mean: [0], std: [1] });
  assert.deepEqual(m.outputs.detection, { format: 'yolov8', output: 'output0', iou: 0.7, confidence: 0.25 });
  assert.deepEqual([m.labels, m.defectLabels], [['screw', 'scratch'], []]);

  const e = describe(end2endDetector().model);
  assert.equal(e.hints.detectionFormat, 'end2end');
  assert.equal(proposeManifest(e, {}).outputs.detection!.format, 'end2end');
  // uint8 inputs: raw pixels, whatever the framework's scaling.
  assert.deepEqual(proposeManifest(describe(yoloDetector({ dtype: 'uint8' }).model), {}).input.scale, 1);

  const seg = yoloDetector().model.meta('task', 'segment');
  refuses({}, seg, /Ultralytics task segment \(Osprey reads detect and classify\); supply a --postprocess plug-in/);
});

test('anomalib v2 and v1-style raw outputs', () => {
  const v2 = describe(anomalibModel().model);
  assert.equal(v2.convention, 'anomalib-v2');
  const m = proposeManifest(v2, {});
  assert.deepEqual(m.outputs.anomaly, { format: 'anomalib-v2', score: 'pred_score', map: 'anomaly_map' });
  assert.deepEqual([m.input.resize, m.input.scale, m.input.mean, m.defectLabels], ['stretch', 1 / 255, [0], ['anomaly']]);
  refuses({ normalization: { min: 0, max: 1, threshold: 0.5 } }, anomalibModel().model, /anomalib v2 exports already normalised scores/);

  const raw = anomalibModel({ raw: true }).model;
  assert.equal(describe(raw).convention, 'anomalib-raw');
  refuses({}, raw, /raw anomaly scores need --normalization min,max,threshold/);
  const n = { min: 0, max: 10, threshold: 6 };
  assert.deepEqual(proposeManifest(describe(raw), { normalization: n }).outputs.anomaly, { format: 'raw', score: 'pred_score', map: 'anomaly_map', normalization: n });
});

test('classifiers: a Softmax at the end (through Flatten or Cast) means probabilities, else logits', () => {
  const cases = [
    [colourClassifier({ softmax: true }), 'classifier-softmax', 'none'],
    [colourClassifier({ softmax: true, dtype: 'float16' }), 'classifier-softmax', 'none'],
    [colourClassifier(), 'classifier-logits', 'softmax'],
    [colourClassifier({ dtype: 'uint8' }), 'classifier-logits', 'softmax'],
  ] as const;
  for (const [{ model }, convention, activation] of cases) {
    const d = describe(model);
    assert.equal(d.convention, convention);
    const m = proposeManifest(d, { labels: ['good', 'scratch', 'dent'] });
    assert.equal(m.outputs.classification!.activation, activation);
    assert.equal(m.input.resize, 'center-crop');
  }
  const f32 = proposeManifest(describe(colourClassifier().model), {});
  // torchvision/timm defaults: ImageNet statistics, crop_pct 0.875; labels class_i when none given.
  assert.deepEqual([f32.input.mean, f32.input.std, f32.input.cropFraction], [[0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 0.875]);
  assert.deepEqual(f32.labels, ['class_0', 'class_1', 'class_2']);
  const u8 = proposeManifest(describe(colourClassifier({ dtype: 'uint8' }).model), {});
  assert.deepEqual([u8.input.scale, u8.input.mean, u8.input.std], [1, [0], [1]]);
  const nhwc = proposeManifest(describe(colourClassifier({ layout: 'nhwc' }).model), {});
  assert.deepEqual([nhwc.input.layout, nhwc.input.width], ['nhwc', 2]);
});

test('declarations that contradict the model are refused with one line naming both sides', () => {
  const yolo = yoloDetector().model;
  refuses({ task: 'anomaly' }, yolo, /--task anomaly contradicts the model, which is detection \(ultralytics export\)/);
  refuses({ size: { width: 640, height: 640 } }, yolo, /--size 640x640 contradicts the model input images, fixed at 64x64/);
  refuses({ layout: 'nhwc' }, yolo, /--layout nhwc contradicts the model input images \[1, 3, 64, 64\], which is nchw/);
  refuses({ color: 'gray' }, yolo, /--color gray contradicts the model input images, which has 3 channels/);
  refuses({ labels: ['a', 'b', 'c'] }, yolo, /3 labels given but output output0 has 2 classes \(4\+2 rows\)/);
  refuses({ defectLabels: ['crack'] }, yolo, /--defect-labels names "crack", not among the model's labels/);
  refuses({ expectedCounts: { nut: { min: 1 } } }, yolo, /--expect names "nut"/);
  refuses({ cropFraction: 0.9 }, yolo, /--crop-fraction applies to --resize center-crop, not letterbox/);
  refuses({ mean: [0.5] }, yoloDetector({ dtype: 'uint8' }).model, /input images is uint8: the model receives raw pixels/);
  refuses({ mean: [0.1, 0.2] }, yolo, /--mean has 2 values; give 1 or 3 for rgb input/);
  refuses({ activation: 'softmax' }, colourClassifier({ softmax: true }).model, /--activation softmax contradicts the model, whose output is already a softmax/);
  refuses({ labels: ['a', 'b'] }, colourClassifier().model, /2 labels given but output logits has 3 classes/);
  refuses({ confidence: 0.5 }, colourClassifier().model, /are for detection models, not classification/);
  refuses({ postprocess: 'x.mjs' }, colourClassifier().model, /--postprocess is for detection or anomaly models/);
  // A custom detector without metadata: the task and labels must be declared.
  const custom = new OnnxModelBuilder();
  custom.input('x', 'float32', [1, 3, 8, 8]).node('Identity', ['x'], ['y']).output('y', 'float32', [1, 3, 8, 8]);
  refuses({}, custom, /cannot tell the task of this model \(convention: unknown\); declare --task/);
  refuses({ task: 'detection', postprocess: 'd.mjs' }, custom, /declare --labels for this detector/);
  const ok = proposeManifest(describe(custom), { task: 'detection', postprocess: 'd.mjs', labels: ['a'], classAgnosticNms: true });
  assert.deepEqual(ok.outputs.detection, { format: 'plugin', iou: 0.45, confidence: 0.25, classAgnosticNms: true });
  assert.deepEqual(ok.postprocess, { module: 'd.mjs' });
});

test('files that are not ONNX, or are cut short, are one-line OSP_ERR_MODEL_LOAD errors', () => {
  const bytes = yoloDetector().model.toBytes();
  for (const [what, data] of [
    ['empty', new Uint8Array(0)],
    ['text', new TextEncoder().encode('this is not a model')],
    ['truncated', bytes.subarray(0, Math.floor(bytes.length / 2))],
    ['a PNG', Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13])],
  ] as const) {
    assert.throws(() => describeOnnx(data, 'x.onnx'), (err: unknown) => {
      assert.ok(isOspreyError(err, 'OSP_ERR_MODEL_LOAD'), `${what}: ${String(err)}`);
      assert.match((err as Error).message, /^x\.onnx: (empty file, )?not an ONNX model/);
      assert.ok(!(err as Error).message.includes('\n'));
      return true;
    });
  }
});

test('a detector whose outputs fit no known layout is refused, naming them, instead of guessed', () => {
  // Was: accepted as a YOLOv8 head with 4416 classes ([1, 4420, 2] read as 4+classes rows).
  const face = scoresBoxesDetector();
  const seen = /detector outputs scores \[1, 4420, 2\], boxes \[1, 4420, 4\] fit no layout Osprey decodes .*; supply a --postprocess plug-in/;
  refuses({ task: 'detection' }, face, seen);
  refuses({ task: 'detection', labels: ['face'] }, face, seen);
  // One output, but transposed ([1, anchors, 4+classes]): not guessed either.
  const transposed = new OnnxModelBuilder();
  transposed.input('x', 'float32', [1, 3, 8, 8]).initializer('c', 'float32', [1, 8, 6], new Float32Array(48).fill(0))
    .node('Identity', ['c'], ['y']).output('y', 'float32', [1, 8, 7]);
  refuses({ task: 'detection' }, transposed, /detector outputs y \[1, 8, 7\] fit no layout/);
  // With a plug-in, any layout is the plug-in's business.
  assert.equal(proposeManifest(describe(face), { task: 'detection', labels: ['face'], postprocess: 'ultraface.mjs' }).outputs.detection!.format, 'plugin');
  // The layouts that do fit are still read without metadata.
  const head = new OnnxModelBuilder();
  head.input('x', 'float32', [1, 3, 8, 8]).initializer('c', 'float32', [1, 6, 8], new Float32Array(48).fill(0))
    .node('Identity', ['c'], ['y']).output('y', 'float32', [1, 6, 8]);
  assert.deepEqual(proposeManifest(describe(head), { task: 'detection' }).labels, ['class_0', 'class_1']);
});

test('ONNX image metadata (Image.BitmapPixelFormat, Image.NominalPixelRange) sets colour and values', () => {
  // Was: ImageNet mean/std over /255 and a 0.875 centre crop, for a model that wants raw 0..255.
  const m = proposeManifest(describe(rawGrayClassifier()), {});
  assert.deepEqual([m.input.color, m.input.scale, m.input.mean, m.input.std, m.input.resize], ['gray', 1, [0], [1], 'stretch']);
  const range = (r: string) => {
    const i = proposeManifest(describe(rawGrayClassifier({ 'Image.NominalPixelRange': r })), {}).input;
    return [i.scale, i.mean, i.std];
  };
  assert.deepEqual(range('Normalized_0_1'), [1 / 255, [0], [1]]);
  assert.deepEqual(range('Normalized_1_1'), [1 / 255, [0.5], [0.5]]);
  assert.deepEqual(range('NominalRange_16_235'), [219 / 255, [-16], [1]]);
  // A 3-channel model: the pixel format picks the channel order.
  const bgr = colourClassifier().model.meta('Image.BitmapPixelFormat', 'Bgr8').meta('Image.NominalPixelRange', 'Normalized_0_1');
  assert.deepEqual([proposeManifest(describe(bgr), {}).input.color, proposeManifest(describe(bgr), {}).input.mean], ['bgr', [0]]);
  // Declarations agreeing with the metadata are fine; contradicting ones, and values Osprey cannot feed, are refused.
  assert.equal(proposeManifest(describe(rawGrayClassifier()), { scale: 1, color: 'gray' }).input.scale, 1);
  refuses({ scale: 1 / 255 }, rawGrayClassifier(), /--scale 0\.00392\d* contradicts the model's metadata Image\.NominalPixelRange=NominalRange_0_255/);
  refuses({ color: 'rgb' }, colourClassifier().model.meta('Image.BitmapPixelFormat', 'Bgr8'), /--color rgb contradicts the model's metadata Image\.BitmapPixelFormat=Bgr8/);
  refuses({}, colourClassifier().model.meta('Image.BitmapPixelFormat', 'Gray8'), /metadata Image\.BitmapPixelFormat=Gray8 contradicts the model input x, which has 3 channels/);
  refuses({}, rawGrayClassifier({ 'Image.NominalPixelRange': 'NominalRange_0_1023' }), /metadata Image\.NominalPixelRange=NominalRange_0_1023 is not one Osprey knows/);
  refuses({}, rawGrayClassifier({ 'Image.ColorSpaceGamma': 'Linear' }), /metadata Image\.ColorSpaceGamma=Linear: Osprey feeds sRGB pixels/);
  refuses({}, rawGrayClassifier({ 'Image.BitmapPixelFormat': 'Rgba8' }), /metadata Image\.BitmapPixelFormat=Rgba8 is not one Osprey feeds/);
  // ... unless the person declares what the unknown value would have set.
  assert.equal(proposeManifest(describe(rawGrayClassifier({ 'Image.NominalPixelRange': 'NominalRange_0_1023' })), { scale: 4 }).input.scale, 4);
});

test('a packed model is named after its file, not "model"', async (t) => {
  const dir = await tempDir(t, 'osprey-pack-name-');
  const file = join(dir, 'mnist-8.onnx');
  await writeFile(file, rawGrayClassifier().toBytes());
  assert.equal((await packModel(file, { out: join(dir, 'pkg') })).name, 'mnist-8');
  assert.equal((await packModel(file, { out: join(dir, 'named'), name: 'digits' })).name, 'digits');
  await writeFile(join(dir, '_draft v2.onnx'), rawGrayClassifier().toBytes());
  assert.equal((await packModel(join(dir, '_draft v2.onnx'), { out: join(dir, 'odd') })).name, 'draft-v2');
});
