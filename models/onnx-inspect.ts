/**
 * Reads an ONNX file's graph signature (inputs, outputs, opset, metadata_props) without running
 * it, and recognises the export conventions Osprey knows: Ultralytics YOLO, anomalib v2 (and
 * v1-style raw outputs), softmax or logits classifiers.
 */
import { readFile } from 'node:fs/promises';
import onnxProto from 'onnx-proto';
import { OspreyError } from '../protocol/errors.js';

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType → the names onnxruntime uses. */
const DTYPES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 8: 'string',
  9: 'bool', 10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

export interface TensorInfo {
  name: string;
  dtype: string;
  /** Dimensions; a symbolic or unknown dimension is its name or null. */
  shape: (number | string | null)[];
}

export type Convention =
  | 'ultralytics'
  | 'anomalib-v2'
  | 'anomalib-raw'
  | 'classifier-softmax'
  | 'classifier-logits'
  | 'unknown';

export interface OnnxDescription {
  irVersion: number;
  opsets: { domain: string; version: number }[];
  producer: string;
  inputs: TensorInfo[];
  outputs: TensorInfo[];
  metadata: Record<string, string>;
  convention: Convention;
  /** What the convention told us: task, labels, size, output formats. */
  hints: {
    task?: 'classification' | 'anomaly' | 'detection';
    labels?: string[];
    size?: { width: number; height: number };
    stride?: number;
    detectionFormat?: 'yolov8' | 'end2end';
    activation?: 'softmax' | 'none';
    /** Why a recognised export cannot be packed (e.g. an Ultralytics segmentation model). */
    unsupported?: string;
  };
}

function toNumber(v: unknown): number {
  return typeof v === 'number' ? v : Number(v);
}

function tensorInfo(vi: onnxProto.onnx.IValueInfoProto): TensorInfo {
  const tt = vi.type?.tensorType;
  const dims = tt?.shape?.dim ?? [];
  return {
    name: vi.name ?? '',
    dtype: DTYPES[tt?.elemType ?? 0] ?? `onnx-type-${tt?.elemType ?? 0}`,
    shape: dims.map((d) => (d.dimValue !== null && d.dimValue !== undefined && toNumber(d.dimValue) > 0 ? toNumber(d.dimValue) : d.dimParam || null)),
  };
}

/** Parses Ultralytics' `names` metadata, a Python dict repr: `{0: 'person', 1: 'bicycle'}`. */
export function parsePythonNames(text: string): string[] | undefined {
  const entries = [...text.matchAll(/(\d+)\s*:\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")/g)];
  if (entries.length === 0) return undefined;
  const names: string[] = [];
  for (const m of entries) names[Number(m[1])] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  return names.every((n) => typeof n === 'string') && names.length === entries.length ? names : undefined;
}

/** Decodes an ONNX model's bytes; a file that is not ONNX is a clear error. */
export function decodeOnnx(bytes: Uint8Array, file = 'model'): InstanceType<typeof onnx.ModelProto> {
  if (bytes.length === 0) throw new OspreyError('OSP_ERR_MODEL_LOAD', `${file}: empty file, not an ONNX model`);
  let model: InstanceType<typeof onnx.ModelProto>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_LOAD', `${file}: not an ONNX model or truncated (${(err as Error).message})`, { cause: err });
  }
  if (!model.graph?.node?.length || !model.graph.output?.length) {
    throw new OspreyError('OSP_ERR_MODEL_LOAD', `${file}: not an ONNX model (no graph, nodes or outputs)`);
  }
  return model;
}

/** Describes an ONNX model from its bytes. */
export function describeOnnx(bytes: Uint8Array, file = 'model'): OnnxDescription {
  const model = decodeOnnx(bytes, file);
  const graph = model.graph!;
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const inputs = (graph.input ?? []).filter((i) => !initializers.has(i.name)).map(tensorInfo);
  const outputs = (graph.output ?? []).map(tensorInfo);
  const metadata: Record<string, string> = {};
  for (const p of model.metadataProps ?? []) metadata[p.key ?? ''] = p.value ?? '';
  const opsets = (model.opsetImport ?? []).map((o) => ({ domain: o.domain || 'ai.onnx', version: toNumber(o.version) }));

  const desc: OnnxDescription = {
    irVersion: toNumber(model.irVersion),
    opsets,
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    inputs,
    outputs,
    metadata,
    convention: 'unknown',
    hints: {},
  };
  const outNames = new Set(outputs.map((o) => o.name));

  if ((metadata.author ?? '').toLowerCase().includes('ultralytics') || (metadata.names && metadata.imgsz)) {
    desc.convention = 'ultralytics';
    const task = metadata.task;
    desc.hints.task = task === 'classify' ? 'classification' : task === 'detect' || task === undefined ? 'detection' : undefined;
    if (task !== undefined && desc.hints.task === undefined) desc.hints.unsupported = `Ultralytics task ${task} (Osprey reads detect and classify)`;
    desc.hints.labels = metadata.names ? parsePythonNames(metadata.names) : undefined;
    // imgsz is [height, width] (a Python list); a single number means square.
    const size = (metadata.imgsz ?? '').match(/(\d+)(?:\D+(\d+))?/);
    if (size) desc.hints.size = { height: Number(size[1]), width: Number(size[2] ?? size[1]) };
    if (metadata.stride) desc.hints.stride = Number(metadata.stride);
    const out = outputs[0]?.shape ?? [];
    if (desc.hints.task === 'detection') {
      const nc = desc.hints.labels?.length;
      // [1, 4+nc, N] unless the export says end2end (YOLOv10/YOLO26, nms=True): [1, N, 6].
      const yolo = nc !== undefined && out[1] === 4 + nc;
      const e2e = /^true$/i.test(metadata.end2end ?? '') || (!yolo && out.length === 3 && out[2] === 6);
      desc.hints.detectionFormat = e2e ? 'end2end' : 'yolov8';
    }
    // Ultralytics classifiers end in Softmax when exported.
    if (desc.hints.task === 'classification') desc.hints.activation = 'none';
  } else if (outNames.has('pred_score') && (outNames.has('pred_label') || outNames.has('pred_mask'))) {
    // anomalib ≥ 2 exports its PostProcessor with the model: scores are already normalised.
    desc.convention = 'anomalib-v2';
    desc.hints.task = 'anomaly';
  } else if (outNames.has('anomaly_map') || outNames.has('pred_score') || outNames.has('anomaly_score')) {
    desc.convention = 'anomalib-raw';
    desc.hints.task = 'anomaly';
  } else if (outputs.length === 1) {
    const shape = outputs[0]!.shape;
    const classes = shape.filter((d) => typeof d === 'number' && d > 1);
    if (classes.length === 1 && shape.length <= 4) {
      const softmax = endsInSoftmax(graph, outputs[0]!.name);
      desc.convention = softmax ? 'classifier-softmax' : 'classifier-logits';
      desc.hints.task = 'classification';
      desc.hints.activation = softmax ? 'none' : 'softmax';
    }
  }
  const input = inputs[0];
  if (!desc.hints.size && input && input.shape.length === 4) {
    const [, a, b, c] = input.shape;
    const nchw = a === 1 || a === 3;
    const h = nchw ? b : a;
    const w = nchw ? c : b;
    if (typeof h === 'number' && typeof w === 'number') desc.hints.size = { width: w, height: h };
  }
  return desc;
}

/** Ops that change neither values' order nor their meaning: a Softmax before them still means probabilities. */
const PASS_THROUGH = new Set(['Reshape', 'Flatten', 'Squeeze', 'Unsqueeze', 'Identity', 'Cast', 'Transpose', 'Dropout']);

/** True when the value `name` is produced by a Softmax, possibly through reshapes and casts. */
function endsInSoftmax(graph: onnxProto.onnx.IGraphProto, name: string): boolean {
  const producers = new Map<string, onnxProto.onnx.INodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) producers.set(o, n);
  let node = producers.get(name);
  for (let hops = 0; node && hops < 8; hops++) {
    if (node.opType === 'Softmax') return true;
    if (!PASS_THROUGH.has(node.opType ?? '')) return false;
    node = producers.get(node.input?.[0] ?? '');
  }
  return false;
}

/** Reads and describes an ONNX file. */
export async function inspectOnnxFile(file: string): Promise<OnnxDescription> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  return describeOnnx(bytes, file);
}
