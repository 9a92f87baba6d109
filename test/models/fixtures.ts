/** Small ONNX models built in code, with outputs that can be worked out by hand. */
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import type { ManifestDraft } from '../../models/package-writer.js';

export interface ColourClassifierOptions {
  dtype?: 'float32' | 'float16' | 'uint8';
  layout?: 'nchw' | 'nhwc';
  /** Put Softmax in the graph (output 'probs'); otherwise the output is 'logits'. */
  softmax?: boolean;
}

/**
 * A classifier over 2×2 RGB inputs whose logits are the mean of each channel (in 0..1 after
 * the manifest's scale 1/255): a solid colour (r, g, b) gives logits (r, g, b)/255.
 * float16 models output float16 too, so both conversions are exercised.
 */
export function colourClassifier(opts: ColourClassifierOptions = {}): { model: OnnxModelBuilder; manifest: ManifestDraft } {
  const dtype = opts.dtype ?? 'float32';
  const layout = opts.layout ?? 'nchw';
  const b = new OnnxModelBuilder({ opset: 13 });
  b.input('x', dtype, layout === 'nchw' ? ['batch', 3, 2, 2] : ['batch', 2, 2, 3]);
  let t = 'x';
  if (dtype !== 'float32') {
    b.node('Cast', [t], ['x_f32'], { to: 1 });
    t = 'x_f32';
  }
  if (dtype === 'uint8') {
    // uint8 models do their own scaling inside the graph.
    b.initializer('inv255', 'float32', [], [1 / 255]);
    b.node('Mul', [t, 'inv255'], ['x_scaled']);
    t = 'x_scaled';
  }
  if (layout === 'nhwc') {
    b.node('Transpose', [t], ['x_nchw'], { perm: [0, 3, 1, 2] });
    t = 'x_nchw';
  }
  b.node('GlobalAveragePool', [t], ['pooled']);
  b.node('Flatten', ['pooled'], ['flat'], { axis: 1 });
  const out = opts.softmax ? 'probs' : 'logits';
  if (opts.softmax) b.node('Softmax', ['flat'], [dtype === 'float16' ? 'out_f32' : out], { axis: 1 });
  else b.node('Identity', ['flat'], [dtype === 'float16' ? 'out_f32' : out]);
  if (dtype === 'float16') b.node('Cast', ['out_f32'], [out], { to: 10 });
  b.output(out, dtype === 'float16' ? 'float16' : 'float32', ['batch', 3]);
  const manifest: ManifestDraft = {
    schemaVersion: 1,
    name: 'colour-classifier',
    version: '1.0.0',
    task: 'classification',
    input: {
      name: 'x',
      layout,
      width: 2,
      height: 2,
      dtype,
      color: 'rgb',
      resize: 'stretch',
      ...(dtype === 'uint8' ? {} : { scale: 1 / 255 }),
    },
    outputs: { classification: { output: out, activation: opts.softmax ? 'none' : 'softmax', topK: 3 } },
    labels: ['good', 'scratch', 'dent'],
    defectLabels: ['scratch', 'dent'],
    thresholds: { default: 0.5 },
  };
  return { model: b, manifest };
}

/**
 * A raw-score anomaly model over 2×2 gray inputs: score = mean pixel (0..1), map = the pixels.
 */
export function meanAnomalyModel(): { model: OnnxModelBuilder; manifest: ManifestDraft } {
  const b = new OnnxModelBuilder({ opset: 13 });
  b.input('img', 'float32', [1, 1, 2, 2])
    .initializer('shape1', 'int64', [1], [1])
    .node('ReduceMean', ['img'], ['m'], { keepdims: 0 })
    .node('Reshape', ['m', 'shape1'], ['raw_score'])
    .node('Identity', ['img'], ['raw_map'])
    .output('raw_score', 'float32', [1])
    .output('raw_map', 'float32', [1, 1, 2, 2]);
  const manifest: ManifestDraft = {
    schemaVersion: 1,
    name: 'mean-anomaly',
    version: '0.1.0',
    task: 'anomaly',
    input: { name: 'img', layout: 'nchw', width: 2, height: 2, dtype: 'float32', color: 'gray', resize: 'stretch', scale: 1 / 255 },
    outputs: {
      anomaly: { format: 'raw', score: 'raw_score', map: 'raw_map', normalization: { min: 0, max: 1, threshold: 0.4 } },
    },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  };
  return { model: b, manifest };
}

export type InputDtype = 'float32' | 'float16' | 'uint8';

/**
 * Declares a [1, C, H, W] image input of `dtype` and returns the name of a float32 value holding
 * it in 0..1: float inputs arrive scaled by the manifest (scale 1/255); uint8 models, as exported
 * with the normalisation inside, divide by 255 themselves.
 */
export function imageInput(b: OnnxModelBuilder, name: string, dtype: InputDtype, dims: readonly (number | string)[]): string {
  b.input(name, dtype, dims);
  if (dtype === 'float32') return name;
  b.node('Cast', [name], [`${name}_f32`], { to: 1 });
  if (dtype === 'float16') return `${name}_f32`;
  b.initializer(`${name}_inv255`, 'float32', [], [1 / 255]);
  b.node('Mul', [`${name}_f32`, `${name}_inv255`], [`${name}_01`]);
  return `${name}_01`;
}

/** The manifest's input scaling for an `imageInput` of `dtype`. */
export function inputScale(dtype: InputDtype): { scale?: number } {
  return dtype === 'uint8' ? {} : { scale: 1 / 255 };
}

/**
 * A linear "head": out = reshape(channelMeans(x) · W + bias, dims), with x the 0..1 image. Each
 * output value is `bias + wR·R̄ + wG·Ḡ + wB·B̄` (R̄ the mean of the red channel), so outputs are
 * known from the image's colour alone. `terms[i]` = [bias, wR, wG, wB] for flat output index i.
 */
export function colourHead(
  b: OnnxModelBuilder,
  x: string,
  terms: readonly (readonly [number, number, number, number])[],
  out: string,
  dims: readonly number[],
): void {
  const n = terms.length;
  const w = new Float32Array(3 * n);
  terms.forEach(([, r, g, bl], i) => {
    w[i] = r;
    w[n + i] = g;
    w[2 * n + i] = bl;
  });
  b.node('GlobalAveragePool', [x], [`${out}_pooled`])
    .node('Flatten', [`${out}_pooled`], [`${out}_means`], { axis: 1 })
    .initializer(`${out}_w`, 'float32', [3, n], w)
    .initializer(`${out}_b`, 'float32', [n], terms.map((t) => t[0]))
    .initializer(`${out}_shape`, 'int64', [dims.length], dims)
    .node('Gemm', [`${out}_means`, `${out}_w`, `${out}_b`], [`${out}_flat`])
    .node('Reshape', [`${out}_flat`, `${out}_shape`], [out]);
}

/**
 * An MNIST-like classifier over 2×2 gray inputs that expects raw 0..255 values, as its ONNX image
 * metadata says (Image.BitmapPixelFormat Gray8, Image.NominalPixelRange NominalRange_0_255):
 * logits (m − 100, 100 − m) for the mean pixel m, labels `bright`, `dark`. Fed 0..1 or ImageNet
 * normalised values, every image reads `dark`.
 */
export function rawGrayClassifier(metadata: Record<string, string> = {
  'Image.BitmapPixelFormat': 'Gray8',
  'Image.ColorSpaceGamma': 'SRGB',
  'Image.NominalPixelRange': 'NominalRange_0_255',
}): OnnxModelBuilder {
  const b = new OnnxModelBuilder({ opset: 13 });
  b.input('Input3', 'float32', [1, 1, 2, 2])
    .node('GlobalAveragePool', ['Input3'], ['pooled'])
    .node('Flatten', ['pooled'], ['mean'], { axis: 1 })
    .initializer('w', 'float32', [1, 2], [1, -1])
    .initializer('bias', 'float32', [2], [-100, 100])
    .node('Gemm', ['mean', 'w', 'bias'], ['Plus214_Output_0'])
    .output('Plus214_Output_0', 'float32', [1, 2]);
  for (const [k, v] of Object.entries(metadata)) b.meta(k, v);
  return b;
}

/**
 * A face detector in the layout of UltraFace/RFB-320-style exports: two outputs, `scores`
 * [1, 4420, 2] and `boxes` [1, 4420, 4], which fit neither Osprey layout.
 */
export function scoresBoxesDetector(): OnnxModelBuilder {
  const b = new OnnxModelBuilder({ opset: 13 });
  b.input('input', 'float32', [1, 3, 240, 320])
    .initializer('scores_c', 'float32', [1, 4420, 2], new Float32Array(4420 * 2))
    .initializer('boxes_c', 'float32', [1, 4420, 4], new Float32Array(4420 * 4))
    .node('Identity', ['scores_c'], ['scores'])
    .node('Identity', ['boxes_c'], ['boxes'])
    .output('scores', 'float32', [1, 4420, 2])
    .output('boxes', 'float32', [1, 4420, 4]);
  return b;
}
