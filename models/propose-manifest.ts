/**
 * Turns what `describeOnnx` found plus what a person declared on the command line into a
 * manifest. What the model's own metadata says is filled in; a declaration that contradicts
 * the model is refused with a one-line reason rather than packed into a package that loads but
 * computes nonsense.
 */
import type { Manifest, Task } from '../protocol/manifest.js';
import { MANIFEST_SCHEMA_VERSION } from '../protocol/manifest.js';
import { OspreyError } from '../protocol/errors.js';
import type { OnnxDescription, TensorInfo } from './onnx-inspect.js';

/** What a person may declare (all optional; `osprey model pack` flags). */
export interface PackDeclarations {
  name?: string;
  version?: string;
  task?: Task;
  labels?: string[];
  defectLabels?: string[];
  size?: { width: number; height: number };
  resize?: 'stretch' | 'letterbox' | 'center-crop';
  color?: 'rgb' | 'bgr' | 'gray';
  scale?: number;
  mean?: number[];
  std?: number[];
  layout?: 'nchw' | 'nhwc';
  /** File name of the plug-in module inside the package. */
  postprocess?: string;
  threshold?: number;
  activation?: 'softmax' | 'sigmoid' | 'none';
  /** Raw anomaly scores: min, max and threshold seen on validation data. */
  normalization?: { min: number; max: number; threshold: number };
  cropFraction?: number;
  confidence?: number;
  iou?: number;
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];

function fail(message: string): never {
  throw new OspreyError('OSP_ERR_MODEL_MANIFEST', message);
}

function inputLayout(input: TensorInfo, declared?: 'nchw' | 'nhwc'): 'nchw' | 'nhwc' {
  const [, a, , c] = input.shape;
  const guess = a === 1 || a === 3 ? 'nchw' : c === 1 || c === 3 ? 'nhwc' : undefined;
  if (declared && guess && declared !== guess) {
    fail(`--layout ${declared} contradicts the model input ${input.name} [${input.shape.join(', ')}], which is ${guess}`);
  }
  return declared ?? guess ?? 'nchw';
}

function channelsOf(input: TensorInfo, layout: 'nchw' | 'nhwc'): number | undefined {
  const c = layout === 'nchw' ? input.shape[1] : input.shape[3];
  return typeof c === 'number' ? c : undefined;
}

function fixedSize(input: TensorInfo, layout: 'nchw' | 'nhwc'): { width: number; height: number } | undefined {
  const [h, w] = layout === 'nchw' ? [input.shape[2], input.shape[3]] : [input.shape[1], input.shape[2]];
  return typeof h === 'number' && typeof w === 'number' ? { width: w, height: h } : undefined;
}

/** Number of classes an output carries (the one non-unit dimension), when it can be told. */
function classCount(output: TensorInfo): number | undefined {
  const dims = output.shape.filter((d) => d !== 1);
  return dims.length === 1 && typeof dims[0] === 'number' ? dims[0] : undefined;
}

/** Proposes a manifest (without model.sha256, which pack fills in). */
export function proposeManifest(desc: OnnxDescription, d: PackDeclarations, modelFile = 'model.onnx'): Manifest {
  const input = desc.inputs[0];
  if (!input) fail('the model has no input tensor');
  if (desc.inputs.length > 1) fail(`the model has ${desc.inputs.length} inputs; Osprey feeds exactly one image tensor`);
  if (input.shape.length !== 4) fail(`input ${input.name} has shape [${input.shape.join(', ')}]; an image input must be 4-D`);
  if (!['float32', 'float16', 'uint8'].includes(input.dtype)) fail(`input ${input.name} is ${input.dtype}; Osprey feeds float32, float16 or uint8`);

  const hinted = desc.hints.task;
  const task = d.task ?? hinted;
  if (!task) fail(`cannot tell the task of this model (convention: ${desc.convention}); declare --task classification|anomaly|detection`);
  if (d.task && hinted && d.task !== hinted && desc.convention !== 'unknown') {
    fail(`--task ${d.task} contradicts the model, which looks like ${hinted} (${desc.convention})`);
  }

  const layout = inputLayout(input, d.layout);
  const channels = channelsOf(input, layout);
  const modelSize = fixedSize(input, layout);
  if (d.size && modelSize && (d.size.width !== modelSize.width || d.size.height !== modelSize.height)) {
    fail(`--size ${d.size.width}x${d.size.height} contradicts the model input ${input.name}, fixed at ${modelSize.width}x${modelSize.height}`);
  }
  const size = d.size ?? modelSize ?? desc.hints.size;
  if (!size) fail(`input ${input.name} has a dynamic size; declare --size WxH`);
  if (d.color === 'gray' && channels === 3) fail(`--color gray contradicts the model input ${input.name}, which has 3 channels`);
  if (d.color && d.color !== 'gray' && channels === 1) fail(`--color ${d.color} contradicts the model input ${input.name}, which has 1 channel`);
  const color = d.color ?? (channels === 1 ? 'gray' : 'rgb');

  const ultralytics = desc.convention === 'ultralytics';
  const anomalib = desc.convention === 'anomalib-v2' || desc.convention === 'anomalib-raw';
  // Each framework's own pre-processing definition; documented in docs/MODELS.md.
  const resize = d.resize ?? (ultralytics ? (task === 'classification' ? 'center-crop' : 'letterbox') : task === 'classification' && !anomalib ? 'center-crop' : 'stretch');
  const imagenet = task === 'classification' && !ultralytics && input.dtype !== 'uint8';
  const scale = d.scale ?? (input.dtype === 'uint8' ? 1 : 1 / 255);
  const mean = d.mean ?? (imagenet ? (color === 'gray' ? [0.449] : IMAGENET_MEAN) : [0]);
  const std = d.std ?? (imagenet ? (color === 'gray' ? [0.226] : IMAGENET_STD) : [1]);
  const channelCount = color === 'gray' ? 1 : 3;
  for (const [flag, v] of [['mean', mean], ['std', std]] as const) {
    if (v.length !== 1 && v.length !== channelCount) fail(`--${flag} has ${v.length} values; give 1 or ${channelCount} for ${color} input`);
  }
  if (d.postprocess && task !== 'detection' && task !== 'anomaly') fail(`--postprocess is for detection or anomaly models, not ${task}`);

  let labels = d.labels ?? desc.hints.labels;
  const manifest: Manifest = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    name: d.name ?? 'model',
    version: d.version ?? '1',
    task,
    model: { file: modelFile, sha256: '0'.repeat(64) },
    input: {
      name: input.name,
      layout,
      width: size.width,
      height: size.height,
      dtype: input.dtype as 'float32' | 'float16' | 'uint8',
      color,
      resize,
      ...(resize === 'letterbox' && { padValue: 114 }),
      ...(resize === 'center-crop' && { cropFraction: d.cropFraction ?? (imagenet ? 0.875 : 1) }),
      scale,
      mean,
      std,
    },
    outputs: {},
    labels: [],
    defectLabels: [],
    thresholds: { default: d.threshold ?? 0.5 },
  };
  if (Object.keys(desc.metadata).length) manifest.metadata = { ...desc.metadata };

  if (task === 'classification') {
    const out = desc.outputs[0]!;
    const n = classCount(out);
    if (desc.outputs.length !== 1) fail(`a classifier must have one output; this model has ${desc.outputs.length}`);
    if (n === undefined) fail(`output ${out.name} [${out.shape.join(', ')}] is not one score per class`);
    labels ??= Array.from({ length: n }, (_, i) => `class_${i}`);
    if (labels.length !== n) fail(`${labels.length} labels given but output ${out.name} has ${n} classes`);
    const detected = desc.hints.activation;
    if (d.activation && detected && desc.convention !== 'unknown' && d.activation !== detected && !(d.activation === 'sigmoid' && detected === 'softmax')) {
      fail(`--activation ${d.activation} contradicts the model, whose output is ${detected === 'none' ? 'already softmaxed' : 'logits'}`);
    }
    manifest.outputs.classification = { output: out.name, activation: d.activation ?? detected ?? 'softmax', topK: Math.min(5, n) };
  } else if (task === 'anomaly') {
    labels ??= ['good', 'anomaly'];
    const names = new Set(desc.outputs.map((o) => o.name));
    const score = ['pred_score', 'anomaly_score', 'score'].find((n) => names.has(n));
    const map = ['anomaly_map', 'map'].find((n) => names.has(n));
    if (!score && !map && !d.postprocess) fail('an anomaly model needs a score or anomaly_map output (or a --postprocess plug-in)');
    const raw = desc.convention === 'anomalib-raw' || desc.convention === 'unknown';
    if (raw && !d.normalization && !d.postprocess) {
      fail('raw anomaly scores need --normalization min,max,threshold (from validation data) to be thresholded');
    }
    manifest.outputs.anomaly = {
      format: raw ? 'raw' : desc.convention === 'anomalib-v2' ? 'anomalib-v2' : 'osprey',
      ...(score && { score }),
      ...(map && { map }),
      ...(raw && d.normalization && { normalization: d.normalization }),
    };
  } else {
    if (!d.postprocess) {
      const out = desc.outputs[0]!;
      const format = desc.hints.detectionFormat ?? (out.shape.length === 3 && out.shape[2] === 6 ? 'end2end' : out.shape.length === 3 ? 'yolov8' : undefined);
      if (!format) fail(`output ${out.name} [${out.shape.join(', ')}] is neither [1, 4+classes, N] nor [1, N, 6]; supply a --postprocess plug-in`);
      if (format === 'yolov8' && typeof out.shape[1] === 'number') {
        const n = out.shape[1] - 4;
        labels ??= Array.from({ length: n }, (_, i) => `class_${i}`);
        if (labels.length !== n) fail(`${labels.length} labels given but output ${out.name} has ${n} classes (4+${n} rows)`);
      }
      manifest.outputs.detection = { format, output: out.name, iou: d.iou ?? 0.7, confidence: d.confidence ?? 0.25 };
    } else {
      manifest.outputs.detection = { format: 'plugin', iou: d.iou ?? 0.45, confidence: d.confidence ?? 0.25 };
    }
    if (!labels) fail('declare --labels for this detector (none in its metadata)');
  }
  if (d.postprocess) manifest.postprocess = { module: d.postprocess };

  manifest.labels = labels!;
  const defects = d.defectLabels ?? (task === 'anomaly' ? ['anomaly'] : labels!);
  const unknown = defects.filter((l) => !labels!.includes(l));
  if (unknown.length) fail(`--defect-labels names ${unknown.map((l) => `"${l}"`).join(', ')}, not among the model's labels`);
  manifest.defectLabels = defects;
  return manifest;
}
