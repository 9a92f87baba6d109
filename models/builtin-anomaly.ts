/**
 * Osprey's built-in anomaly model, created by code: per-pixel statistics of defect-free images,
 * emitted as a real ONNX graph.
 *
 *   image [1,1,H,W] (gray, 0..1)
 *   → |image − mean| · w          w = 0.5 / (T · max(std′, minStd)), std′ = std max-filtered
 *                                  over ±tolerance px (shifted parts do not light up their edges)
 *   → AveragePool k×k (same size, padding not counted)
 *   → Clip [0, 1]                  = anomaly_map [1,1,H,W]
 *   → ReduceMax → Reshape [1]     = score [1]
 *
 * T is chosen from the training images themselves: each image is scored leave-one-out (with the
 * statistics of the other images, as an unseen good part would be), and T is the largest of
 * those scores times a margin. The scale w puts T at 0.5, anomalib's convention, so the manifest
 * threshold is 0.5 and maps read 0.5 at the threshold.
 */
import { OspreyError, isOspreyError } from '../protocol/errors.js';
import type { Manifest } from '../protocol/manifest.js';
import { resolveInput } from './manifest-check.js';
import { OnnxModelBuilder } from './onnx-builder.js';
import { writeModelPackage } from './package-writer.js';
import { preprocessImage } from './preprocess.js';

export interface BuiltinAnomalyOptions {
  name?: string;
  version?: string;
  description?: string;
  /** Model input size (default 128×128): small enough for a few milliseconds per frame on one core. */
  width?: number;
  height?: number;
  /** AveragePool window (odd, default 3): larger smooths noise but dilutes thin defects. */
  kernel?: number;
  /** Floor on the per-pixel std, in 0..1 units (default 0.01): flat regions would otherwise flag any noise. */
  minStd?: number;
  /**
   * Misalignment tolerance in pixels (default 1): each pixel's std is the largest std within this
   * radius, so the edges of a part that shifts by a pixel or two are not flagged.
   */
  tolerance?: number;
  /** Threshold = largest leave-one-out training score × margin (default 1.15). */
  margin?: number;
  /** Extra manifest metadata. */
  metadata?: Record<string, string>;
}

export interface BuiltinAnomalyFit {
  dir: string;
  manifest: Manifest;
  /** Raw (un-normalised) threshold T. */
  rawThreshold: number;
  /** Leave-one-out raw scores of the training images. */
  trainScores: number[];
}

/** Mean of each k×k window (same size; windows clipped at the border, as count_include_pad=0). */
export function boxMean(src: Float64Array, width: number, height: number, kernel: number): Float64Array {
  const r = (kernel - 1) / 2;
  const out = new Float64Array(width * height);
  for (let y = 0; y < height; y++) {
    const y0 = Math.max(0, y - r);
    const y1 = Math.min(height - 1, y + r);
    for (let x = 0; x < width; x++) {
      const x0 = Math.max(0, x - r);
      const x1 = Math.min(width - 1, x + r);
      let s = 0;
      for (let yy = y0; yy <= y1; yy++) for (let xx = x0; xx <= x1; xx++) s += src[yy * width + xx];
      out[y * width + x] = s / ((y1 - y0 + 1) * (x1 - x0 + 1));
    }
  }
  return out;
}

/** Largest value within `radius` (a square window), same size. */
export function maxFilter(src: Float64Array, width: number, height: number, radius: number): Float64Array {
  if (radius <= 0) return src.slice();
  const out = new Float64Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let m = -Infinity;
      for (let yy = Math.max(0, y - radius); yy <= Math.min(height - 1, y + radius); yy++) {
        for (let xx = Math.max(0, x - radius); xx <= Math.min(width - 1, x + radius); xx++) m = Math.max(m, src[yy * width + xx]);
      }
      out[y * width + x] = m;
    }
  }
  return out;
}

/**
 * Fits the built-in model on defect-free images (any format sharp reads) and writes a package
 * (manifest.json + model.onnx) to `outDir`. Needs at least 3 images; 30 or more work well.
 */
export async function fitBuiltinAnomalyModel(
  images: Buffer[],
  outDir: string,
  opts: BuiltinAnomalyOptions = {},
): Promise<BuiltinAnomalyFit> {
  const W = opts.width ?? 128;
  const H = opts.height ?? 128;
  const kernel = opts.kernel ?? 3;
  const minStd = opts.minStd ?? 0.01;
  const margin = opts.margin ?? 1.15;
  const tolerance = opts.tolerance ?? 1;
  if (images.length < 3) {
    throw new OspreyError('OSP_ERR_BAD_REQUEST', `the built-in anomaly model needs at least 3 good images, got ${images.length}`);
  }
  if (kernel < 1 || kernel % 2 !== 1) throw new OspreyError('OSP_ERR_BAD_REQUEST', `kernel must be odd, got ${kernel}`);

  const inputSpec: Manifest['input'] = {
    name: 'image',
    layout: 'nchw',
    width: W,
    height: H,
    dtype: 'float32',
    color: 'gray',
    resize: 'stretch',
    interpolation: 'linear',
    scale: 1 / 255,
    mean: [0],
    std: [1],
  };
  const input = resolveInput(inputSpec);
  const P = W * H;
  const N = images.length;

  // Training goes through the exact pre-processing the edge will apply.
  const samples: Float32Array[] = [];
  for (const [i, bytes] of images.entries()) {
    try {
      samples.push((await preprocessImage(bytes, input)).tensor.data as Float32Array);
    } catch (err) {
      if (isOspreyError(err)) throw new OspreyError(err.code, `training image ${i}: ${err.message}`, { cause: err });
      throw err;
    }
  }
  const sum = new Float64Array(P);
  const sumSq = new Float64Array(P);
  for (const s of samples) {
    for (let p = 0; p < P; p++) {
      sum[p] += s[p];
      sumSq[p] += s[p] * s[p];
    }
  }

  const trainScores = samples.map((s) => {
    const mean = new Float64Array(P);
    const sd = new Float64Array(P);
    for (let p = 0; p < P; p++) {
      mean[p] = (sum[p] - s[p]) / (N - 1);
      sd[p] = Math.sqrt(Math.max(0, (sumSq[p] - s[p] * s[p]) / (N - 1) - mean[p] * mean[p]));
    }
    const tol = maxFilter(sd, W, H, tolerance);
    const z = new Float64Array(P);
    for (let p = 0; p < P; p++) z[p] = Math.abs(s[p] - mean[p]) / Math.max(tol[p], minStd);
    let max = 0;
    for (const v of boxMean(z, W, H, kernel)) max = Math.max(max, v);
    return max;
  });
  const rawThreshold = Math.max(...trainScores) * margin;

  const mean = new Float32Array(P);
  const sd = new Float64Array(P);
  for (let p = 0; p < P; p++) {
    mean[p] = sum[p] / N;
    sd[p] = Math.sqrt(Math.max(0, sumSq[p] / N - mean[p] * mean[p]));
  }
  const tol = maxFilter(sd, W, H, tolerance);
  const weight = Float32Array.from(tol, (v) => 0.5 / (rawThreshold * Math.max(v, minStd)));

  const r = (kernel - 1) / 2;
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'osprey_builtin_anomaly', docString: 'Osprey built-in anomaly model' });
  b.input('image', 'float32', [1, 1, H, W])
    .initializer('mean', 'float32', [1, 1, H, W], mean)
    .initializer('weight', 'float32', [1, 1, H, W], weight)
    .initializer('zero', 'float32', [], [0])
    .initializer('one', 'float32', [], [1])
    .initializer('score_shape', 'int64', [1], [1])
    .node('Sub', ['image', 'mean'], ['diff'])
    .node('Abs', ['diff'], ['abs_diff'])
    .node('Mul', ['abs_diff', 'weight'], ['z'])
    .node('AveragePool', ['z'], ['pooled'], { kernel_shape: [kernel, kernel], pads: [r, r, r, r], strides: [1, 1], count_include_pad: 0 })
    .node('Clip', ['pooled', 'zero', 'one'], ['anomaly_map'])
    .node('ReduceMax', ['anomaly_map'], ['max'], { keepdims: 0 })
    .node('Reshape', ['max', 'score_shape'], ['score'])
    .output('anomaly_map', 'float32', [1, 1, H, W])
    .output('score', 'float32', [1])
    .meta('osprey.builtin', 'anomaly-v1');

  const sorted = [...trainScores].sort((a, c) => a - c);
  const manifest = await writeModelPackage(
    outDir,
    {
      schemaVersion: 1,
      name: opts.name ?? 'osprey-builtin-anomaly',
      version: opts.version ?? '1.0.0',
      task: 'anomaly',
      description: opts.description ?? `Osprey built-in anomaly model fitted on ${N} defect-free images`,
      input: inputSpec,
      outputs: { anomaly: { format: 'osprey', score: 'score', map: 'anomaly_map' } },
      labels: [],
      defectLabels: ['anomaly'],
      thresholds: { default: 0.5 },
      metadata: {
        generator: 'osprey builtin-anomaly v1',
        trainImages: String(N),
        kernel: String(kernel),
        minStd: String(minStd),
        tolerance: String(tolerance),
        rawThreshold: rawThreshold.toFixed(6),
        trainScoreMedian: sorted[Math.floor(N / 2)].toFixed(6),
        trainScoreMax: sorted[N - 1].toFixed(6),
        ...opts.metadata,
      },
    },
    b.toBytes(),
  );
  return { dir: outDir, manifest, rawThreshold, trainScores };
}
