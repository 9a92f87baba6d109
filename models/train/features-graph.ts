/**
 * The trainer's feature graph: a frozen ImageNet backbone (its nodes copied from the backbone's
 * ONNX file, float16 widened to float32; backbone.ts) with plain ONNX ops around it.
 *
 *   image [1,1,S,S] gray 0..1 → per-image standardisation → 3 identical channels   (--input-norm standardise)
 *   image [1,3,S,S] normalised by the edge as the backbone wants                    (--input-norm backbone)
 *   → backbone → taps (taps.ts), each brought to the grid: average-pooled when larger, resized
 *   → concatenated → [ReLU → Sqrt] → border dropped → global average [‖ global max] = features [1, F]
 *
 * The grid, the pooling of each tap and the channel counts come from the tap shapes of one run
 * (never written by hand). A head (gaussian.ts, softmax-regression.ts) is appended to the same
 * graph for the package: ONE ONNX graph.
 */
import onnxProto from 'onnx-proto';
import { OnnxModelBuilder, type AttributeValue } from '../onnx-builder.js';
import { backboneTensor, cutBackbone, probeShapes, readBackboneGraph, type Backbone } from './backbone.js';
import { resolveInputNorm, type InputNorm, type InputNormOptions } from './input-norm.js';
import { autoTaps, checkTaps, type TapRecipe } from './taps.js';

export type { Backbone };

/** One tapped tensor of the backbone and how it is brought to the grid. */
export interface TapSpec {
  name: string;
  channels: number;
  /** Its height (= width) at the input size. */
  size: number;
  /** Average pool (kernel and stride) bringing a larger map down before the resize. */
  avgPool?: { kernel: number; stride: number };
}

/** Where the features come from: the backbone's input and the tap tensors (all at `grid`×`grid`). */
export interface FeatureSpec {
  /** Input size (square). */
  size: number;
  taps: TapSpec[];
  /** How a tap is resized to the grid. */
  resize: 'nearest' | 'linear';
  /** Multiplies the standardised image (standardise input only). */
  inputScale: number;
  /** How the image is resized to `size` (the manifest's input.interpolation). */
  interpolation: 'nearest' | 'linear' | 'cubic' | 'lanczos3';
  /** Spatial size every tap is brought to. */
  grid: number;
  /** Cells dropped at each border before pooling. */
  border: number;
  /** Global pooling: average ‖ max (default) or average only. */
  pooling?: 'avg+max' | 'avg';
  /** ReLU → Sqrt on the taps before pooling (default true). */
  sqrt?: boolean;
  /** How the image becomes the backbone's input (default standardise). */
  input?: InputNorm;
}

/** A recipe's fixed choices; the taps, grid and pooling come from the backbone. */
export interface FeatureRecipe {
  taps: TapRecipe;
  border: number;
  resize: FeatureSpec['resize'];
  interpolation: FeatureSpec['interpolation'];
  pooling: NonNullable<FeatureSpec['pooling']>;
  sqrt: boolean;
}

/**
 * One-class: taps at strides 4/8/16 brought to the middle tap's grid, ReLU → √, 1-cell border
 * dropped, average ‖ max. SqueezeNet 1.1 (../shared/data/models/squeezenet-fp16): fire3
 * average-pooled 55→27 (3/2), fire5 (27), fire7 resized 13→27 (linear) → 768 channels, MTD dev
 * image AUROC 96.4 % (761 train images); fire9 instead of fire7 95.0 %, fire3 through the
 * backbone's own max-pool 95.8 %, fire7 nearest 96.2 %.
 */
export const ANOMALY_RECIPE: FeatureRecipe = { taps: 'anomaly', border: 1, resize: 'linear', interpolation: 'linear', pooling: 'avg+max', sqrt: true };

/** Classifier: the last feature map before the head (SqueezeNet: fire9, 512 channels), global average. */
export const CLASSIFY_RECIPE: FeatureRecipe = { taps: 'classify', border: 0, resize: 'nearest', interpolation: 'linear', pooling: 'avg', sqrt: false };

/**
 * The feature spec for taps of the given shapes [1, C, h, w]: the grid is the middle tap's size
 * (by size, the smaller of two middles); a larger tap is average-pooled with stride ⌊h/grid⌋ and
 * the kernel that lands exactly on the grid (55→27: 3/2), then every tap is resized to the grid.
 */
export function deriveSpec(recipe: FeatureRecipe, size: number, taps: { name: string; dims: number[] }[], input: InputNorm = { kind: 'standardise' }): FeatureSpec {
  const sizes = taps.map((t) => t.dims[2]!).sort((a, b) => b - a);
  const grid = sizes[Math.ceil((sizes.length - 1) / 2)]!;
  return {
    size,
    taps: taps.map((t) => tapSpec(t.name, t.dims, grid)),
    grid,
    border: Math.min(recipe.border, Math.floor((grid - 1) / 2)),
    resize: recipe.resize,
    inputScale: 1,
    interpolation: recipe.interpolation,
    pooling: recipe.pooling,
    sqrt: recipe.sqrt,
    input,
  };
}

/** A tap of shape [1, C, h, w] brought to `grid`: average-pooled with stride ⌊h/grid⌋ and the kernel that lands exactly on the grid when larger. */
export function tapSpec(name: string, dims: readonly number[], grid: number): TapSpec {
  const h = dims[2]!;
  const stride = Math.floor(h / grid);
  return { name, channels: dims[1]!, size: h, ...(stride >= 2 && { avgPool: { kernel: h - stride * (grid - 1), stride } }) };
}

/** What the person chose about the backbone (CLI flags). */
export interface BackboneChoice {
  /** Tensor names to tap (default: found in the graph, taps.ts). */
  taps?: string[];
  inputNorm?: InputNormOptions;
  /** A complete spec instead of one derived from the backbone (its taps must exist). */
  features?: FeatureSpec;
}

/**
 * The other taps the automatic search may try, as tap specs on the chosen spec's grid: the
 * anomaly recipe's taps and the classify recipe's tap of the same backbone (taps.ts).
 */
export interface TapCandidates {
  anomaly: TapSpec[];
  classify: TapSpec;
}

/**
 * Reads the backbone, runs it once for the tensor shapes, picks or checks the taps, derives the
 * feature spec and cuts the backbone at its taps. One-line errors name the file or the option.
 * `candidates` are absent when a complete spec was given (nothing probed).
 */
export async function prepareBackbone(bytes: Uint8Array, file: string, recipe: FeatureRecipe, choice: BackboneChoice = {}): Promise<{ backbone: Backbone; spec: FeatureSpec; candidates?: TapCandidates }> {
  const bg = readBackboneGraph(bytes, file);
  if (choice.features) {
    return { backbone: cutBackbone(bg, choice.features.taps.map((t) => t.name)), spec: choice.features };
  }
  const input = resolveInputNorm(choice.inputNorm, bg.metadata, file);
  const shapes = await probeShapes(bg);
  const names = choice.taps ? checkTaps(bg, shapes, choice.taps) : autoTaps(bg, shapes, recipe.taps);
  const spec = deriveSpec(recipe, bg.size, names.map((name) => ({ name, dims: shapes.dims.get(name)! })), input);
  const at = (name: string) => tapSpec(name, shapes.dims.get(name)!, spec.grid);
  const candidates = { anomaly: autoTaps(bg, shapes, 'anomaly').map(at), classify: at(autoTaps(bg, shapes, 'classify')[0]!) };
  return { backbone: cutBackbone(bg, names), spec, candidates };
}

/** The backbone cut at `spec`'s taps (another size or tap set of the same backbone). */
export function cutFor(bytes: Uint8Array, file: string, spec: FeatureSpec): Backbone {
  return cutBackbone(readBackboneGraph(bytes, file), spec.taps.map((t) => t.name));
}

/** A short description of the input normalisation, for the model card. */
export function inputNormCard(spec: FeatureSpec): Record<string, unknown> {
  const n = spec.input ?? { kind: 'standardise' };
  return n.kind === 'standardise' ? { mode: 'standardise', color: 'gray', standardise: 'per-image', channels: 'gray ×3' } : { mode: 'backbone', color: n.color, scale: n.scale, mean: n.mean, std: n.std, source: n.source };
}

/** Adds the feature nodes (input → features [1, F]) to `b`; returns the number of nodes before the backbone's. */
function addFeatureNodes(b: OnnxModelBuilder, bb: Backbone, spec: FeatureSpec): number {
  const S = spec.size;
  const G = spec.grid;
  let prefix: number;
  if (spec.input?.kind === 'backbone') {
    // The edge's pre-processing gives the backbone's own input (manifest color/scale/mean/std).
    b.input('image', 'float32', [1, 3, S, S]).node('Identity', ['image'], [bb.inputName]);
    prefix = 1;
  } else {
    b.input('image', 'float32', [1, 1, S, S])
      .initializer('train/eps', 'float32', [], [1e-6])
      .node('ReduceMean', ['image'], ['train/mean'], { axes: [1, 2, 3], keepdims: 1 })
      .node('Sub', ['image', 'train/mean'], ['train/centred'])
      .node('Mul', ['train/centred', 'train/centred'], ['train/sq'])
      .node('ReduceMean', ['train/sq'], ['train/var'], { axes: [1, 2, 3], keepdims: 1 })
      .node('Add', ['train/var', 'train/eps'], ['train/var_eps'])
      .node('Sqrt', ['train/var_eps'], ['train/std'])
      .node('Div', ['train/centred', 'train/std'], ['train/unit'])
      .initializer('train/input_scale', 'float32', [], [spec.inputScale])
      .node('Mul', ['train/unit', 'train/input_scale'], ['train/standardised'])
      .node('Concat', ['train/standardised', 'train/standardised', 'train/standardised'], [bb.inputName], { axis: 1 });
    prefix = 9;
  }
  const pooled: string[] = [];
  for (const [i, tap] of spec.taps.entries()) {
    const name = `train/tap${i}`;
    let src = backboneTensor(tap.name);
    if (tap.avgPool) {
      src = `${name}/pooled`;
      b.node('AveragePool', [backboneTensor(tap.name)], [src], { kernel_shape: [tap.avgPool.kernel, tap.avgPool.kernel], strides: [tap.avgPool.stride, tap.avgPool.stride] });
    }
    const mode: Record<string, AttributeValue> = spec.resize === 'linear' ? { mode: 'linear', coordinate_transformation_mode: 'half_pixel' } : { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' };
    b.initializer(`${name}/sizes`, 'int64', [4], [1, tap.channels, G, G]).node('Resize', [src, '', '', `${name}/sizes`], [name], mode);
    pooled.push(name);
  }
  const e = G - spec.border;
  b.initializer('train/slice_starts', 'int64', [2], [spec.border, spec.border])
    .initializer('train/slice_ends', 'int64', [2], [e, e])
    .initializer('train/slice_axes', 'int64', [2], [2, 3])
    .node('Concat', pooled, ['train/taps'], { axis: 1 });
  let maps = 'train/taps';
  if (spec.sqrt !== false) {
    b.node('Relu', ['train/taps'], ['train/relu']).node('Sqrt', ['train/relu'], ['train/sqrt']);
    maps = 'train/sqrt';
  }
  b.node('Slice', [maps, 'train/slice_starts', 'train/slice_ends', 'train/slice_axes'], ['train/inner']);
  if (spec.pooling === 'avg') {
    b.node('ReduceMean', ['train/inner'], ['features'], { axes: [2, 3], keepdims: 0 });
  } else {
    b.node('ReduceMean', ['train/inner'], ['train/avg'], { axes: [2, 3], keepdims: 0 })
      .node('ReduceMax', ['train/inner'], ['train/max'], { axes: [2, 3], keepdims: 0 })
      .node('Concat', ['train/avg', 'train/max'], ['features'], { axis: 1 });
  }
  return prefix;
}

/** Number of features the graph produces. */
export function featureCount(spec: FeatureSpec): number {
  return (spec.pooling === 'avg' ? 1 : 2) * spec.taps.reduce((a, t) => a + t.channels, 0);
}

/** A head appended after `features`: its initializers and nodes, ending in its `outputs`. */
export interface Head {
  build(b: OnnxModelBuilder): void;
  outputs: { name: string; dims: number[] }[];
}

/**
 * The ONNX bytes of the feature graph, with `head` appended when given (the package graph), or
 * with `features` as its output (what training runs).
 */
export function buildGraph(bb: Backbone, spec: FeatureSpec, head?: Head, meta: Record<string, string> = {}, graphName = 'osprey_trained_anomaly', docString = 'Osprey one-class model: frozen backbone + Gaussian head'): Uint8Array {
  const b = new OnnxModelBuilder({ opset: bb.opset, opsets: bb.opsets, graphName, docString });
  const prefix = addFeatureNodes(b, bb, spec);
  if (head) {
    head.build(b);
    for (const o of head.outputs) b.output(o.name, 'float32', o.dims);
  } else {
    b.output('features', 'float32', [1, featureCount(spec)]);
  }
  for (const [k, v] of Object.entries(meta)) b.meta(k, v);
  const proto = b.toProto();
  const g = proto.graph!;
  g.node = [...g.node!.slice(0, prefix), ...bb.nodes, ...g.node!.slice(prefix)];
  g.initializer = [...bb.initializers, ...g.initializer!];
  return onnxProto.onnx.ModelProto.encode(proto).finish();
}
