/**
 * Which backbone tensors the trainer taps: given by name (`--taps a,b,c`) or found in the graph.
 *
 * Found automatically, for any conv backbone, from the shapes of one run (backbone.ts):
 * - a *cut point* is a 4-D float tensor that is, when produced, the only live feature map (every
 *   path from the image to the output goes through it: a fire module's concat, a residual block's
 *   sum; never one branch of a pair);
 * - a tensor's *stride* is input size / its height, rounded to a power of two;
 * - `classify`: the last spatial cut point before the classifier head — the input of the global
 *   pooling, or of a 1×1 conv whose channels are the class count (SqueezeNet's conv10);
 * - `anomaly`: the last cut point at strides 4, 8 and 16 (up to the classify tap). A stride that
 *   is the backbone's last stage (the classify tap's: SqueezeNet 1.1 ends at stride 16) is tapped
 *   at the cut point halfway through the stage by conv depth instead of at its end, which is the
 *   classifier-level map (SqueezeNet: fire7, not fire9 — MTD dev AUROC 96.4 % vs 95.0 %).
 */
import onnxProto from 'onnx-proto';
import { OspreyError } from '../../protocol/errors.js';
import type { BackboneGraph, TensorShapes } from './backbone.js';

type NodeProto = onnxProto.onnx.INodeProto;

export type TapRecipe = 'anomaly' | 'classify';

/** Strides the anomaly recipe taps (three mid-level stages). */
export const ANOMALY_STRIDES = [4, 8, 16];

/** Ops that pass a tensor through unchanged at inference. */
const PASS_THROUGH = new Set(['Dropout', 'Identity']);
/** Element-wise ops that may follow a classifier conv. */
const ACTIVATIONS = new Set(['Relu', 'Clip', 'Sigmoid', 'LeakyRelu', 'HardSigmoid', 'HardSwish', 'Dropout', 'Identity']);
/** Ops counted for a tensor's depth. */
const WEIGHTED = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul']);

interface Analysis {
  producer: Map<string, NodeProto>;
  index: Map<string, number>;
  depth: Map<string, number>;
  /** Spatial (H·W > 1) cut points in graph order. */
  cuts: string[];
}

function isMap(shapes: TensorShapes, t: string): boolean {
  return shapes.dims.get(t)?.length === 4;
}

function spatial(shapes: TensorShapes, t: string): boolean {
  const d = shapes.dims.get(t);
  return d !== undefined && d.length === 4 && d[2]! * d[3]! > 1;
}

function analyse(bg: BackboneGraph, shapes: TensorShapes): Analysis {
  const producer = new Map<string, NodeProto>();
  const index = new Map<string, number>();
  const uses = new Map<string, number>();
  bg.nodes.forEach((n, i) => {
    for (const o of n.output ?? []) {
      producer.set(o, n);
      index.set(o, i);
    }
    for (const x of n.input ?? []) uses.set(x, (uses.get(x) ?? 0) + 1);
  });
  const derived = new Set([bg.inputName]);
  const depth = new Map<string, number>([[bg.inputName, 0]]);
  const live = new Set<string>();
  const cuts: string[] = [];
  for (const n of bg.nodes) {
    const ins = (n.input ?? []).filter((x) => derived.has(x));
    const d = Math.max(0, ...ins.map((x) => depth.get(x) ?? 0)) + (WEIGHTED.has(n.opType ?? '') ? 1 : 0);
    for (const x of n.input ?? []) {
      const left = (uses.get(x) ?? 0) - 1;
      uses.set(x, left);
      if (left <= 0) live.delete(x);
    }
    if (ins.length === 0) continue;
    for (const o of n.output ?? []) {
      derived.add(o);
      depth.set(o, d);
      if (isMap(shapes, o) && (uses.get(o) ?? 0) > 0) live.add(o);
    }
    const out = n.output?.[0] ?? '';
    if (live.size === 1 && live.has(out) && spatial(shapes, out)) cuts.push(out);
  }
  return { producer, index, depth, cuts };
}

/** The tensor a Dropout/Identity chain passes through. */
function throughPassing(a: Analysis, t: string): string {
  let n = a.producer.get(t);
  while (n && PASS_THROUGH.has(n.opType ?? '')) {
    t = n.input?.[0] ?? t;
    n = a.producer.get(t);
  }
  return t;
}

const fail = (file: string, msg: string): never => {
  throw new OspreyError('OSP_ERR_MODEL_LOAD', `${file}: ${msg}`);
};

/** The last spatial cut point before the classifier head (the classify recipe's tap). */
function headTap(bg: BackboneGraph, shapes: TensorShapes, a: Analysis): string {
  let t = a.cuts.at(-1) ?? fail(bg.file, 'the graph has no spatial feature maps (no 4-D tensor larger than 1×1 that every path goes through)');
  const classes = shapes.output.slice(1).reduce((x, y) => x * y, 1);
  if (shapes.dims.get(t)![1] === classes) {
    // A classifier conv (SqueezeNet conv10): step back over its activations to its input.
    let x = t;
    let n = a.producer.get(x);
    while (n && ACTIVATIONS.has(n.opType ?? '')) {
      x = n.input?.[0] ?? x;
      n = a.producer.get(x);
    }
    if (n?.opType === 'Conv') {
      const before = a.index.get(n.input?.[0] ?? '') ?? -1;
      const earlier = a.cuts.filter((c) => (a.index.get(c) ?? 0) <= before);
      t = earlier.at(-1) ?? fail(bg.file, 'the graph has no spatial feature maps before its classifier conv');
    }
  }
  return throughPassing(a, t);
}

function strideOf(size: number, dims: number[]): number {
  return 2 ** Math.round(Math.log2(size / dims[2]!));
}

/** Taps found automatically for `recipe` (see the file comment). */
export function autoTaps(bg: BackboneGraph, shapes: TensorShapes, recipe: TapRecipe): string[] {
  const a = analyse(bg, shapes);
  const head = headTap(bg, shapes, a);
  if (recipe === 'classify') return [head];
  const limit = a.index.get(head)!;
  const cuts = a.cuts.filter((c) => a.index.get(c)! <= limit).map((c) => throughPassing(a, c));
  const lastStride = strideOf(bg.size, shapes.dims.get(head)!);
  const taps: string[] = [];
  for (const s of ANOMALY_STRIDES) {
    const stage = cuts.filter((c) => strideOf(bg.size, shapes.dims.get(c)!) === s);
    if (stage.length === 0) continue;
    let pick = stage.at(-1)!;
    if (s === lastStride) {
      const d = (t: string) => a.depth.get(t) ?? 0;
      const mid = (d(stage[0]!) + d(stage.at(-1)!)) / 2;
      const off = (t: string) => Math.abs(d(t) - mid);
      const best = Math.min(...stage.map(off));
      pick = stage.filter((c) => off(c) === best).at(-1)!;
    }
    if (!taps.includes(pick)) taps.push(pick);
  }
  if (taps.length === 0) fail(bg.file, `the graph has no spatial feature maps at strides ${ANOMALY_STRIDES.join(', ')}`);
  return taps;
}

/** Checks taps given by name: each a 4-D float tensor the backbone produces. */
export function checkTaps(bg: BackboneGraph, shapes: TensorShapes, taps: readonly string[]): string[] {
  if (taps.length === 0) fail(bg.file, '--taps names no tensor');
  for (const t of taps) {
    if (!shapes.order.includes(t)) fail(bg.file, `--taps: no tensor named ${t} in the backbone`);
    const d = shapes.dims.get(t);
    if (d?.length !== 4) fail(bg.file, `--taps: ${t} is not a 4-D float feature map (shape [${d?.join(', ') ?? 'not float'}])`);
  }
  return [...taps];
}
