/**
 * Any ImageNet-trained ONNX classifier as the trainer's frozen backbone (issue 15, Backbones):
 * its one 4-D float image input (NCHW, 3 channels, any batch dim), float16 weights widened to
 * float32, nodes of older opsets brought to the package graph's opset, and the shape of every
 * tensor from one onnxruntime run on a dummy input (no shape inference of our own).
 *
 * Taps are chosen in taps.ts; the feature graph around them is features-graph.ts.
 */
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { OspreyError } from '../../protocol/errors.js';
import { float16ArrayToFloat32 } from '../float16.js';
import { decodeOnnx } from '../onnx-inspect.js';

type NodeProto = onnxProto.onnx.INodeProto;
type TensorProto = onnxProto.onnx.ITensorProto;
const { onnx } = onnxProto;

/** Input size used when the backbone's H and W are symbolic. */
export const DEFAULT_INPUT_SIZE = 224;
/** Oldest backbone opset accepted (before 7, Add/Mul broadcast by attribute). */
export const MIN_BACKBONE_OPSET = 7;
/** Newest backbone opset accepted: the trainer's own ops (Reduce* with an `axes` attribute) are valid up to 17. */
export const MAX_BACKBONE_OPSET = 17;

/** A backbone read from its ONNX file, float32 throughout. */
export interface BackboneGraph {
  file: string;
  inputName: string;
  /** Square input size (the input's H = W, or DEFAULT_INPUT_SIZE when they are symbolic). */
  size: number;
  /** Opset of the default domain the backbone was exported with. */
  opset: number;
  /** Opsets of other domains it uses (e.g. com.microsoft after an onnxruntime optimisation). */
  opsets: Record<string, number>;
  irVersion: number;
  nodes: NodeProto[];
  initializers: TensorProto[];
  /** The graph's first output (the class scores). */
  output: string;
  /** metadata_props (mean/std and Image.* keys are read by input-norm.ts). */
  metadata: Record<string, string>;
}

/** A backbone cut at its last tap, float32, ready to be embedded in the package graph. */
export interface Backbone {
  inputName: string;
  /** Opset the package graph must declare (at least 13). */
  opset: number;
  /** Other domains' opsets the nodes need. */
  opsets: Record<string, number>;
  nodes: NodeProto[];
  initializers: TensorProto[];
}

const fail = (file: string, msg: string): never => {
  throw new OspreyError('OSP_ERR_MODEL_LOAD', `${file}: ${msg}`);
};

function num(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

/** The name a backbone tensor has inside the package graph. */
export function backboneTensor(name: string): string {
  return `backbone/${name}`;
}

/** A float16 tensor as float32 (others unchanged). */
export function toFloat32(t: TensorProto): TensorProto {
  if (t.dataType !== 10) return t;
  const n = (t.dims ?? []).reduce<number>((a, b) => a * num(b), 1);
  let half: Uint16Array;
  if (t.rawData && t.rawData.length > 0) {
    const raw = t.rawData;
    half = new Uint16Array(n);
    const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
    for (let i = 0; i < n; i++) half[i] = view.getUint16(i * 2, true);
  } else {
    half = Uint16Array.from(t.int32Data ?? []);
  }
  const f = float16ArrayToFloat32(half);
  return { name: t.name, dims: t.dims, dataType: 1, rawData: new Uint8Array(f.buffer, f.byteOffset, f.byteLength) };
}

/** A node with float16 constants and casts made float32. */
function widenNode(n: NodeProto): NodeProto {
  const attribute = (n.attribute ?? []).map((a) => {
    if (n.opType === 'Cast' && a.name === 'to' && num(a.i) === 10) return { ...a, i: 1 };
    if (a.t && a.t.dataType === 10) return { ...a, t: toFloat32(a.t) };
    return a;
  });
  return { ...n, attribute };
}

/**
 * Reads a backbone: exactly one non-initializer input, 4-D float (NCHW, 3 channels, square or
 * symbolic H/W, any batch dim). Throws a one-line error naming the file otherwise.
 */
export function readBackboneGraph(bytes: Uint8Array, file = 'backbone'): BackboneGraph {
  const model = decodeOnnx(bytes, file);
  const g = model.graph;
  if (!g) return fail(file, 'no graph');
  const isDefault = (domain: string | null | undefined) => !domain || domain === 'ai.onnx';
  const opset = num((model.opsetImport ?? []).find((o) => isDefault(o.domain))?.version ?? 0);
  if (opset < MIN_BACKBONE_OPSET) fail(file, `opset ${opset} is older than the trainer takes (≥ ${MIN_BACKBONE_OPSET}); use a newer export (the ONNX model zoo's -7 or later files)`);
  if (opset > MAX_BACKBONE_OPSET) fail(file, `opset ${opset} is newer than the trainer takes (≤ ${MAX_BACKBONE_OPSET}); export the backbone again with opset_version=${MAX_BACKBONE_OPSET}`);
  const inits = new Set((g.initializer ?? []).map((t) => t.name ?? ''));
  const inputs = (g.input ?? []).filter((i) => !inits.has(i.name ?? ''));
  if (inputs.length !== 1) fail(file, `a backbone needs exactly one image input, found ${inputs.length} (${inputs.map((i) => i.name).join(', ')})`);
  const input = inputs[0]!;
  const tt = input.type?.tensorType;
  const dims = (tt?.shape?.dim ?? []).map((d) => (d.dimValue !== null && d.dimValue !== undefined && num(d.dimValue) > 0 ? num(d.dimValue) : undefined));
  const describe = `[${(tt?.shape?.dim ?? []).map((d) => d.dimParam || (d.dimValue ? String(d.dimValue) : '?')).join(', ')}]`;
  if (tt?.elemType !== 1 && tt?.elemType !== 10) fail(file, `input ${input.name} is not a float image (element type ${tt?.elemType ?? 'unknown'}); a backbone takes float32 or float16 NCHW images`);
  if (dims.length !== 4) fail(file, `input ${input.name} ${describe} is not a 4-D NCHW image`);
  if (dims[1] !== 3) fail(file, `input ${input.name} ${describe} does not have 3 channels in NCHW order`);
  const [h, w] = [dims[2], dims[3]];
  if (h !== undefined && w !== undefined && h !== w) fail(file, `input ${input.name} ${describe} is not square; the trainer feeds square images`);
  const size = h ?? w ?? DEFAULT_INPUT_SIZE;
  return {
    file,
    inputName: input.name ?? '',
    size,
    opset,
    opsets: Object.fromEntries((model.opsetImport ?? []).filter((o) => !isDefault(o.domain)).map((o) => [o.domain!, num(o.version)])),
    irVersion: num(model.irVersion ?? 8),
    nodes: (g.node ?? []).map(widenNode),
    initializers: (g.initializer ?? []).map(toFloat32),
    output: g.output?.[0]?.name ?? '',
    metadata: Object.fromEntries((model.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? ''])),
  };
}

/** What one run on a dummy input tells about every float tensor the nodes produce. */
export interface TensorShapes {
  /** Node outputs in the graph's (topological) order. */
  order: string[];
  /** Dims of each float tensor that was produced. */
  dims: Map<string, number[]>;
  /** Dims of the graph's first output (the class scores). */
  output: number[];
}

/**
 * Runs the (float32) backbone once on a zero image with every node output added as a graph output,
 * at the backbone's own opset, and returns their shapes.
 */
export async function probeShapes(bg: BackboneGraph): Promise<TensorShapes> {
  const order = bg.nodes.flatMap((n) => n.output ?? []).filter((o) => o);
  const inputInfo = { name: bg.inputName, type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 1 }, { dimValue: 3 }, { dimValue: bg.size }, { dimValue: bg.size }] } } } };
  const probe = onnx.ModelProto.create({
    irVersion: Math.max(4, bg.irVersion),
    opsetImport: [{ domain: '', version: bg.opset }, ...Object.entries(bg.opsets).map(([domain, version]) => ({ domain, version }))],
    graph: {
      name: 'probe',
      node: bg.nodes,
      initializer: bg.initializers,
      input: [inputInfo],
      // No type: onnxruntime infers it; int64 shape tensors come back too and are ignored.
      output: order.map((name) => ({ name })),
    },
  });
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(onnx.ModelProto.encode(probe).finish(), { graphOptimizationLevel: 'disabled' });
  } catch (err) {
    return fail(bg.file, `onnxruntime cannot load the backbone: ${String((err as Error).message ?? err).split('\n')[0]}`);
  }
  try {
    const x = new ort.Tensor('float32', new Float32Array(3 * bg.size * bg.size), [1, 3, bg.size, bg.size]);
    let res: ort.InferenceSession.OnnxValueMapType;
    try {
      res = await session.run({ [bg.inputName]: x });
    } catch (err) {
      return fail(bg.file, `the backbone does not run on a [1, 3, ${bg.size}, ${bg.size}] image: ${String((err as Error).message ?? err).split('\n')[0]}`);
    }
    const dims = new Map<string, number[]>();
    for (const name of order) {
      const t = res[name];
      if (t && (t.type === 'float32' || t.type === 'float16')) dims.set(name, t.dims.map(Number));
    }
    return { order, dims, output: dims.get(bg.output) ?? [] };
  } finally {
    await session.release();
  }
}

/**
 * Brings one node of an opset-`from` graph to opset ≥ 13 where its signature changed: Clip's and
 * Pad's attributes become inputs, Dropout becomes Identity, BatchNormalization loses its old
 * attributes. `constant` adds an initializer and returns its name.
 */
type Constant = (suffix: string, type: 'float32' | 'int64', values: number[], scalar?: boolean) => string;

function upgradeNode(n: NodeProto, from: number, constant: Constant): NodeProto {
  const attrs = n.attribute ?? [];
  const attr = (name: string) => attrs.find((a) => a.name === name);
  const rest = (...names: string[]) => attrs.filter((a) => !names.includes(a.name ?? ''));
  const input = [...(n.input ?? [])];
  if (n.opType === 'Dropout') return { ...n, opType: 'Identity', input: input.slice(0, 1), output: (n.output ?? []).slice(0, 1), attribute: [] };
  if (n.opType === 'Clip' && from < 11) {
    const min = attr('min');
    const max = attr('max');
    return { ...n, input: [input[0]!, min ? constant('min', 'float32', [min.f ?? 0], true) : '', max ? constant('max', 'float32', [max.f ?? 0], true) : ''], attribute: rest('min', 'max') };
  }
  if (n.opType === 'Pad' && from < 11) {
    const pads = (attr('pads')?.ints ?? []).map(num);
    const value = attr('value');
    return { ...n, input: [input[0]!, constant('pads', 'int64', pads), value ? constant('value', 'float32', [value.f ?? 0], true) : ''], attribute: rest('pads', 'value') };
  }
  if (n.opType === 'BatchNormalization') return { ...n, output: (n.output ?? []).slice(0, 1), attribute: rest('spatial', 'is_test', 'consumed_inputs') };
  return n;
}

/**
 * The nodes that the taps need (walked back from them), upgraded to the package graph's opset,
 * and the initializers they use.
 */
export function cutBackbone(bg: BackboneGraph, taps: readonly string[]): Backbone {
  const producer = new Map<string, NodeProto>();
  for (const n of bg.nodes) for (const o of n.output ?? []) producer.set(o, n);
  const needed = new Set<NodeProto>();
  const stack = taps.map((t) => producer.get(t) ?? fail(bg.file, `no tensor named ${t} to tap`));
  while (stack.length > 0) {
    const n = stack.pop()!;
    if (needed.has(n)) continue;
    needed.add(n);
    for (const i of n.input ?? []) {
      const p = producer.get(i);
      if (p) stack.push(p);
    }
  }
  const extra: TensorProto[] = [];
  const opset = Math.max(13, bg.opset);
  const nodes = bg.nodes.filter((n) => needed.has(n)).map((n, i) => {
    const name = backboneTensor(`node/${n.name || n.output?.[0] || i}`);
    const constant: Constant = (suffix, type, values, scalar = false) => {
      const c = `${name}/${suffix}`;
      const data = type === 'float32' ? new Uint8Array(Float32Array.from(values).buffer) : new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer);
      extra.push({ name: c, dims: scalar ? [] : [values.length], dataType: type === 'float32' ? 1 : 7, rawData: data });
      return c;
    };
    return { ...upgradeNode(n, bg.opset, constant), name };
  });
  const used = new Set(nodes.flatMap((n) => n.input ?? []));
  const initializers = [...bg.initializers.filter((t) => used.has(t.name ?? '')), ...extra];
  // Every value gets the backbone/ prefix: no clash with the trainer's names (image, features, score).
  const rename = (v: string) => (v ? backboneTensor(v) : v);
  return {
    inputName: backboneTensor(bg.inputName),
    opset,
    opsets: bg.opsets,
    nodes: nodes.map((n) => ({ ...n, input: (n.input ?? []).map(rename), output: (n.output ?? []).map(rename) })),
    initializers: initializers.map((t) => ({ ...t, name: rename(t.name ?? '') })),
  };
}
