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
import type { ManifestDraft } from './package-writer.js';

type DetectionSpec = NonNullable<Manifest['outputs']['detection']>;

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
  padValue?: number;
  confidence?: number;
  iou?: number;
  maxDetections?: number;
  classAgnosticNms?: boolean;
  /** Detection: per label, how many must be found (e.g. exactly 4 screws). */
  expectedCounts?: DetectionSpec['expectedCounts'];
}

const IMAGENET_MEAN = [0.485, 0.456, 0.406];
const IMAGENET_STD = [0.229, 0.224, 0.225];
/** Conventions read from the export itself (metadata, output names), strong enough to refuse a contradicting --task. */
const EXPLICIT = new Set(['ultralytics', 'anomalib-v2']);

function fail(message: string): never {
  throw new OspreyError('OSP_ERR_MODEL_MANIFEST', message);
}

/**
 * A package name from the model's file name (`mnist-8.onnx` → `mnist-8`), fitted to the
 * manifest's name pattern; `model` only when nothing of the name is left.
 */
export function packageNameFromFile(file: string): string {
  const base = file.replace(/^.*[\\/]/, '').replace(/\.onnx$/i, '');
  const name = base.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 128);
  return name || 'model';
}

/** A metadata_props value by key, ignoring case as the ONNX spec says keys do. */
export function metadataValue(metadata: Record<string, string>, key: string): string | undefined {
  return Object.entries(metadata).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
}

/** What the ONNX image metadata (Image Category Definition, metadata_props) says about the input. */
interface ImageMetadata {
  color?: 'rgb' | 'bgr' | 'gray';
  /** value = (pixel·scale − mean) / std for the model's nominal pixel range. */
  range?: { key: string; scale: number; mean: number; std: number };
}

export const PIXEL_FORMATS: Record<string, 'rgb' | 'bgr' | 'gray'> = { Gray8: 'gray', Rgb8: 'rgb', Bgr8: 'bgr' };
export const PIXEL_RANGES: Record<string, { scale: number; mean: number; std: number }> = {
  NominalRange_0_255: { scale: 1, mean: 0, std: 1 },
  Normalized_0_1: { scale: 1 / 255, mean: 0, std: 1 },
  Normalized_1_1: { scale: 1 / 255, mean: 0.5, std: 0.5 },
  // Studio range: 16 + pixel·219/255.
  NominalRange_16_235: { scale: 219 / 255, mean: -16, std: 1 },
};

/**
 * Reads Image.BitmapPixelFormat / Image.ColorSpaceGamma / Image.NominalPixelRange. A value Osprey
 * does not know is refused unless the person declared what it would have set (--color, or
 * --scale/--mean/--std).
 */
function imageMetadata(raw: Record<string, string>, d: PackDeclarations): ImageMetadata {
  // "Keys and values are case insensitive" (ONNX MetadataProps, Image Category Definition).
  const known = <T>(table: Record<string, T>, value: string): [string, T] | undefined =>
    Object.entries(table).find(([k]) => k.toLowerCase() === value.toLowerCase());
  const out: ImageMetadata = {};
  const format = metadataValue(raw, 'Image.BitmapPixelFormat');
  if (format !== undefined) {
    out.color = known(PIXEL_FORMATS, format)?.[1];
    if (!out.color && !d.color) fail(`metadata Image.BitmapPixelFormat=${format} is not one Osprey feeds (${Object.keys(PIXEL_FORMATS).join(', ')}); declare --color`);
  }
  const gamma = metadataValue(raw, 'Image.ColorSpaceGamma');
  if (gamma !== undefined && gamma.toUpperCase() !== 'SRGB') {
    fail(`metadata Image.ColorSpaceGamma=${gamma}: Osprey feeds sRGB pixels, not ${gamma}`);
  }
  const range = metadataValue(raw, 'Image.NominalPixelRange');
  if (range !== undefined) {
    const r = known(PIXEL_RANGES, range);
    const declared = d.scale !== undefined || d.mean !== undefined || d.std !== undefined;
    if (!r && !declared) fail(`metadata Image.NominalPixelRange=${range} is not one Osprey knows (${Object.keys(PIXEL_RANGES).join(', ')}); declare --scale/--mean/--std`);
    if (r) out.range = { key: r[0], ...r[1] };
  }
  return out;
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

/** Number of classes an output carries (the one non-unit dimension past the batch), when it can be told. */
function classCount(output: TensorInfo): number | undefined {
  const dims = output.shape.slice(1).filter((d) => d !== 1);
  return dims.length === 1 && typeof dims[0] === 'number' ? dims[0] : undefined;
}

/**
 * The detection layout a graph without an export convention has, only when it fits one exactly:
 * a single output, either [1, N, 6] (end-to-end rows) or [1, 4+classes, anchors] with fewer rows
 * than anchors (a YOLOv8-style head). Anything else (several outputs such as `scores` + `boxes`,
 * a transposed head) is not guessed.
 */
function guessDetectionFormat(outputs: TensorInfo[]): 'yolov8' | 'end2end' | undefined {
  if (outputs.length !== 1) return undefined;
  const [batch, rows, cols] = outputs[0]!.shape;
  if (outputs[0]!.shape.length !== 3 || (batch !== 1 && typeof batch === 'number')) return undefined;
  if (cols === 6) return 'end2end';
  if (typeof rows !== 'number' || rows < 5) return undefined;
  return typeof cols !== 'number' || cols > rows ? 'yolov8' : undefined;
}

/**
 * Proposes a manifest from a model description and declarations; model.sha256 (and the plug-in's)
 * are filled in by writeModelPackage. Throws OSP_ERR_MODEL_MANIFEST with one line when the
 * declarations contradict the model or something needed cannot be told.
 */
export function proposeManifest(desc: OnnxDescription, d: PackDeclarations, modelFile = 'model.onnx'): ManifestDraft {
  const input = desc.inputs[0];
  if (!input) fail('the model has no input tensor');
  if (desc.inputs.length > 1) fail(`the model has ${desc.inputs.length} inputs; Osprey feeds exactly one image tensor`);
  if (input.shape.length !== 4) fail(`input ${input.name} has shape [${input.shape.join(', ')}]; an image input must be 4-D`);
  if (!['float32', 'float16', 'uint8'].includes(input.dtype)) fail(`input ${input.name} is ${input.dtype}; Osprey feeds float32, float16 or uint8`);

  if (desc.hints.unsupported && !d.postprocess) fail(`${desc.hints.unsupported}; supply a --postprocess plug-in to decode it`);
  const hinted = desc.hints.task;
  const task = d.task ?? hinted;
  if (!task) fail(`cannot tell the task of this model (convention: ${desc.convention}); declare --task classification|anomaly|detection`);
  if (d.task && hinted && d.task !== hinted && EXPLICIT.has(desc.convention)) {
    fail(`--task ${d.task} contradicts the model, which is ${hinted} (${desc.convention} export)`);
  }

  const layout = inputLayout(input, d.layout);
  const channels = channelsOf(input, layout);
  const modelSize = fixedSize(input, layout);
  if (d.size && modelSize && (d.size.width !== modelSize.width || d.size.height !== modelSize.height)) {
    fail(`--size ${d.size.width}x${d.size.height} contradicts the model input ${input.name}, fixed at ${modelSize.width}x${modelSize.height}`);
  }
  const size = d.size ?? modelSize ?? desc.hints.size;
  if (!size) fail(`input ${input.name} has a dynamic size; declare --size WxH`);
  if (channels !== undefined && channels !== 1 && channels !== 3) fail(`input ${input.name} has ${channels} channels; Osprey feeds 1 (gray) or 3`);
  if (d.color === 'gray' && channels === 3) fail(`--color gray contradicts the model input ${input.name}, which has 3 channels`);
  if (d.color && d.color !== 'gray' && channels === 1) fail(`--color ${d.color} contradicts the model input ${input.name}, which has 1 channel`);
  const image = imageMetadata(desc.metadata, d);
  if (image.color && channels !== undefined && (image.color === 'gray') !== (channels === 1)) {
    fail(`metadata Image.BitmapPixelFormat=${metadataValue(desc.metadata, 'Image.BitmapPixelFormat')} contradicts the model input ${input.name}, which has ${channels} channels`);
  }
  if (d.color && image.color && d.color !== image.color) {
    fail(`--color ${d.color} contradicts the model's metadata Image.BitmapPixelFormat=${metadataValue(desc.metadata, 'Image.BitmapPixelFormat')}`);
  }
  const color = d.color ?? image.color ?? (channels === 1 ? 'gray' : 'rgb');

  const ultralytics = desc.convention === 'ultralytics';
  const uint8 = input.dtype === 'uint8';
  // Each framework's own pre-processing (docs/models.md "Resize modes"): Ultralytics letterboxes
  // detectors and centre-crops classifiers; torchvision/timm classifiers centre-crop; anomalib
  // (and anything else) resizes.
  // A model carrying ONNX image metadata (Windows ML image binding) says how it is fed: resized,
  // with the values of its nominal pixel range, not a framework's defaults.
  const described = image.range !== undefined || image.color !== undefined;
  const resize = d.resize ?? (task === 'detection' ? (ultralytics ? 'letterbox' : 'stretch') : task === 'classification' && !described ? 'center-crop' : 'stretch');
  // ImageNet statistics are the torchvision/timm default; Ultralytics and anomalib v2 (which
  // normalises inside the graph) take plain 0..1 values.
  const imagenet = task === 'classification' && !ultralytics && !uint8 && !described;
  if (uint8 && ((d.scale ?? 1) !== 1 || (d.mean ?? [0]).some((v) => v !== 0) || (d.std ?? [1]).some((v) => v !== 1))) {
    fail(`input ${input.name} is uint8: the model receives raw pixels, so --scale/--mean/--std cannot apply`);
  }
  const range = uint8 ? undefined : image.range;
  if (range) {
    for (const [flag, v, want] of [['scale', d.scale === undefined ? undefined : [d.scale], range.scale], ['mean', d.mean, range.mean], ['std', d.std, range.std]] as const) {
      if (v && v.some((x) => Math.abs(x - want) > 1e-6)) fail(`--${flag} ${v.join(',')} contradicts the model's metadata Image.NominalPixelRange=${range.key}`);
    }
  }
  const scale = d.scale ?? range?.scale ?? (uint8 ? 1 : 1 / 255);
  const mean = d.mean ?? (range ? [range.mean] : imagenet ? (color === 'gray' ? [0.449] : IMAGENET_MEAN) : [0]);
  const std = d.std ?? (range ? [range.std] : imagenet ? (color === 'gray' ? [0.226] : IMAGENET_STD) : [1]);
  const channelCount = color === 'gray' ? 1 : 3;
  for (const [flag, v] of [['mean', mean], ['std', std]] as const) {
    if (v.length !== 1 && v.length !== channelCount) fail(`--${flag} has ${v.length} values; give 1 or ${channelCount} for ${color} input`);
  }
  if (d.postprocess && task === 'classification') fail('--postprocess is for detection or anomaly models, not classification');
  if (d.cropFraction !== undefined && resize !== 'center-crop') fail(`--crop-fraction applies to --resize center-crop, not ${resize}`);
  if (d.padValue !== undefined && resize !== 'letterbox') fail(`--pad-value applies to --resize letterbox, not ${resize}`);
  if (task !== 'detection' && (d.expectedCounts || d.confidence !== undefined || d.iou !== undefined || d.classAgnosticNms || d.maxDetections)) {
    fail(`--expect/--confidence/--iou/--agnostic-nms/--max-detections are for detection models, not ${task}`);
  }
  if (task !== 'anomaly' && d.normalization) fail(`--normalization is for anomaly models, not ${task}`);
  if (task !== 'classification' && d.activation) fail(`--activation is for classification models, not ${task}`);

  let labels = d.labels ?? desc.hints.labels;
  const manifest: ManifestDraft = {
    schemaVersion: MANIFEST_SCHEMA_VERSION,
    name: d.name ?? 'model',
    version: d.version ?? '1',
    task,
    model: { file: modelFile },
    input: {
      name: input.name,
      layout,
      width: size.width,
      height: size.height,
      dtype: input.dtype as 'float32' | 'float16' | 'uint8',
      color,
      resize,
      ...(resize === 'letterbox' && { padValue: d.padValue ?? 114 }),
      // timm/torchvision evaluate at crop_pct 0.875 (resize 256 → crop 224); Ultralytics at 1.
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
    if (desc.outputs.length !== 1) fail(`a classifier must have one output; this model has ${desc.outputs.length}`);
    const n = classCount(out);
    if (n === undefined) fail(`output ${out.name} [${out.shape.join(', ')}] is not one score per class`);
    labels ??= Array.from({ length: n }, (_, i) => `class_${i}`);
    if (labels.length !== n) fail(`${labels.length} labels given but output ${out.name} has ${n} classes`);
    const detected = desc.hints.activation;
    // sigmoid over logits is a legitimate reading (multi-label); anything else that disagrees is not.
    if (d.activation && detected && d.activation !== detected && !(d.activation === 'sigmoid' && detected === 'softmax')) {
      fail(`--activation ${d.activation} contradicts the model, whose output is ${detected === 'none' ? 'already a softmax' : 'logits'}`);
    }
    manifest.outputs.classification = { output: out.name, activation: d.activation ?? detected ?? 'softmax', topK: Math.min(5, n) };
  } else if (task === 'anomaly') {
    labels ??= ['good', 'anomaly'];
    if (d.postprocess) {
      manifest.outputs.anomaly = { format: 'plugin', ...(d.normalization && { normalization: d.normalization }) };
    } else {
      const names = new Set(desc.outputs.map((o) => o.name));
      const score = ['pred_score', 'anomaly_score', 'score'].find((n) => names.has(n));
      const map = ['anomaly_map', 'map'].find((n) => names.has(n));
      if (!score && !map) fail('an anomaly model needs a pred_score/anomaly_score or anomaly_map output (or a --postprocess plug-in)');
      const v2 = desc.convention === 'anomalib-v2';
      if (v2 && d.normalization) fail('--normalization contradicts the model: anomalib v2 exports already normalised scores (threshold 0.5)');
      if (!v2 && !d.normalization) {
        fail('raw anomaly scores need --normalization min,max,threshold (from validation data, e.g. anomalib metadata) to be thresholded');
      }
      manifest.outputs.anomaly = {
        format: v2 ? 'anomalib-v2' : 'raw',
        ...(score && { score }),
        ...(map && { map }),
        ...(!v2 && { normalization: d.normalization! }),
      };
    }
  } else {
    const common = {
      iou: d.iou ?? (d.postprocess ? 0.45 : 0.7),
      confidence: d.confidence ?? 0.25,
      ...(d.maxDetections !== undefined && { maxDetections: d.maxDetections }),
      ...(d.classAgnosticNms && { classAgnosticNms: true }),
      ...(d.expectedCounts && { expectedCounts: d.expectedCounts }),
    };
    if (!d.postprocess) {
      const out = desc.outputs[0]!;
      const format = desc.hints.detectionFormat ?? guessDetectionFormat(desc.outputs);
      if (!format) {
        const seen = desc.outputs.map((o) => `${o.name} [${o.shape.join(', ')}]`).join(', ');
        fail(`detector outputs ${seen} fit no layout Osprey decodes (one output [1, 4+classes, anchors] or [1, N, 6]); supply a --postprocess plug-in`);
      }
      if (format === 'yolov8' && typeof out.shape[1] === 'number') {
        const n = out.shape[1] - 4;
        labels ??= Array.from({ length: n }, (_, i) => `class_${i}`);
        if (labels.length !== n) fail(`${labels.length} labels given but output ${out.name} has ${n} classes (4+${n} rows)`);
      }
      manifest.outputs.detection = { format, output: out.name, ...common };
    } else {
      manifest.outputs.detection = { format: 'plugin', ...common };
    }
    if (!labels) fail('declare --labels for this detector (none in its metadata)');
    for (const label of Object.keys(d.expectedCounts ?? {})) {
      if (!labels.includes(label)) fail(`--expect names "${label}", not among the model's labels`);
    }
  }
  if (d.postprocess) manifest.postprocess = { module: d.postprocess };

  manifest.labels = labels!;
  // Which classes are defects is a decision about the line, not the model: none unless declared
  // (the verdict is then always ok and the label says what was seen). Anomaly models have one.
  const defects = d.defectLabels ?? (task === 'anomaly' ? ['anomaly'] : []);
  const known = (l: string) => labels!.includes(l) || (task === 'anomaly' && l === 'anomaly');
  const unknown = defects.filter((l) => !known(l));
  if (unknown.length) fail(`--defect-labels names ${unknown.map((l) => `"${l}"`).join(', ')}, not among the model's labels`);
  manifest.defectLabels = defects;
  return manifest;
}
