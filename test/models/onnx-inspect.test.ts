import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeOnnx, parsePythonNames } from '../../models/onnx-inspect.js';
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { proposeManifest, type PackDeclarations } from '../../models/propose-manifest.js';
import { isOspreyError } from '../../protocol/errors.js';
import { anomalibModel } from './fixtures-anomaly.js';
import { end2endDetector, yoloDetector } from './fixtures-detection.js';
import { colourClassifier } from './fixtures.js';

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
