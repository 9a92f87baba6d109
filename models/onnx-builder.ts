/**
 * Builds ONNX models in code (onnx-proto / protobufjs), for the built-in anomaly model and for
 * test fixtures with known outputs. Typed just enough to make wrong graphs hard to write:
 * element types by name, explicit attribute kinds where a number would be ambiguous.
 *
 * @example
 *   const b = new OnnxModelBuilder({ opset: 13 });
 *   b.input('x', 'float32', [1, 3]);
 *   b.initializer('w', 'float32', [1, 3], [1, 2, 3]);
 *   b.node('Mul', ['x', 'w'], ['y']);
 *   b.output('y', 'float32', [1, 3]);
 *   const bytes = b.toBytes();
 */
import onnxProto from 'onnx-proto';
import { float32ToFloat16 } from './float16.js';

const { onnx } = onnxProto;

/** ONNX element types the builder writes (TensorProto.DataType). */
export const OnnxElementTypes = {
  float32: 1,
  uint8: 2,
  int8: 3,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  float64: 11,
} as const;
export type OnnxElementType = keyof typeof OnnxElementTypes;

/** A dimension: a fixed size, or a symbolic name such as 'batch' (dynamic). */
export type Dim = number | string;

/**
 * Tensor contents. Numbers are converted to the element type (float16 is rounded from float32
 * values); a Uint16Array for float16 is taken as ready-made binary16 bit patterns.
 */
export type TensorValues =
  | readonly number[]
  | Float32Array
  | Float64Array
  | Uint16Array
  | Uint8Array
  | Int8Array
  | Int32Array
  | BigInt64Array
  | readonly bigint[];

export interface TensorSpec {
  type: OnnxElementType;
  dims: readonly number[];
  values: TensorValues;
}

/**
 * An attribute value. Plain numbers are INT when integral and FLOAT otherwise; use
 * `{ float: 1 }` / `{ floats: [...] }` when a float attribute has an integral value.
 */
export type AttributeValue =
  | number
  | string
  | readonly number[]
  | readonly string[]
  | { int: number }
  | { float: number }
  | { ints: readonly number[] }
  | { floats: readonly number[] }
  | { tensor: TensorSpec };

export interface NodeOptions {
  name?: string;
  /** Operator domain; '' (the default) is the standard ONNX domain. */
  domain?: string;
}

export interface BuilderOptions {
  /** Opset of the default domain (default 13, supported by every onnxruntime in use). */
  opset?: number;
  /** Extra opsets for other domains, e.g. { 'com.microsoft': 1 }. */
  opsets?: Record<string, number>;
  /** IR version (default 8, the newest that onnx-proto 8 describes). */
  irVersion?: number;
  graphName?: string;
  producerName?: string;
  producerVersion?: string;
  docString?: string;
}

function valueInfo(name: string, type: OnnxElementType, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: OnnxElementTypes[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Little-endian raw bytes of `values` in element type `type` (rawData is always little-endian). */
export function encodeTensorValues(type: OnnxElementType, values: TensorValues): Uint8Array {
  const n = values.length;
  const width = { float32: 4, uint8: 1, int8: 1, int32: 4, int64: 8, bool: 1, float16: 2, float64: 8 }[type];
  const view = new DataView(new ArrayBuffer(n * width));
  for (let i = 0; i < n; i++) {
    const v = values[i] as number | bigint;
    switch (type) {
      case 'float32':
        view.setFloat32(i * 4, Number(v), true);
        break;
      case 'float64':
        view.setFloat64(i * 8, Number(v), true);
        break;
      case 'float16':
        view.setUint16(i * 2, values instanceof Uint16Array ? Number(v) : float32ToFloat16(Number(v)), true);
        break;
      case 'int32':
        view.setInt32(i * 4, Number(v), true);
        break;
      case 'int64':
        view.setBigInt64(i * 8, BigInt(v), true);
        break;
      case 'int8':
        view.setInt8(i, Number(v));
        break;
      case 'uint8':
      case 'bool':
        view.setUint8(i, Number(v));
        break;
    }
  }
  return new Uint8Array(view.buffer);
}

function tensorProto(name: string, spec: TensorSpec): onnxProto.onnx.ITensorProto {
  const expected = spec.dims.reduce((a, b) => a * b, 1);
  if (spec.values.length !== expected) {
    throw new RangeError(`tensor ${name}: ${spec.values.length} values for dims [${spec.dims.join(',')}] (${expected} expected)`);
  }
  return {
    name,
    dataType: OnnxElementTypes[spec.type],
    dims: [...spec.dims],
    rawData: encodeTensorValues(spec.type, spec.values),
  };
}

function attribute(name: string, value: AttributeValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  const enc = (s: string) => new TextEncoder().encode(s);
  if (typeof value === 'number') {
    return Number.isInteger(value) ? { name, type: T.INT, i: value } : { name, type: T.FLOAT, f: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: enc(value) };
  if (Array.isArray(value)) {
    if (value.every((v) => typeof v === 'string')) return { name, type: T.STRINGS, strings: (value as string[]).map(enc) };
    const nums = value as number[];
    return nums.every(Number.isInteger) ? { name, type: T.INTS, ints: [...nums] } : { name, type: T.FLOATS, floats: [...nums] };
  }
  const v = value as Exclude<AttributeValue, number | string | readonly unknown[]>;
  if ('int' in v) return { name, type: T.INT, i: v.int };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  if ('ints' in v) return { name, type: T.INTS, ints: [...v.ints] };
  if ('floats' in v) return { name, type: T.FLOATS, floats: [...v.floats] };
  return { name, type: T.TENSOR, t: tensorProto(name, v.tensor) };
}

/** Accumulates a graph and serialises it as an ONNX ModelProto. */
export class OnnxModelBuilder {
  private readonly opts: BuilderOptions;
  private readonly inputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly outputs: onnxProto.onnx.IValueInfoProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly metadata = new Map<string, string>();
  private readonly names = new Set<string>();

  constructor(opts: BuilderOptions = {}) {
    this.opts = opts;
  }

  /** Declares a graph input. */
  input(name: string, type: OnnxElementType, dims: readonly Dim[]): this {
    this.claim(name);
    this.inputs.push(valueInfo(name, type, dims));
    return this;
  }

  /** Declares a graph output (it must be produced by a node, or be an input or initializer). */
  output(name: string, type: OnnxElementType, dims: readonly Dim[]): this {
    this.outputs.push(valueInfo(name, type, dims));
    return this;
  }

  /** Adds a constant tensor (weights) to the graph. */
  initializer(name: string, type: OnnxElementType, dims: readonly number[], values: TensorValues): this {
    this.claim(name);
    this.initializers.push(tensorProto(name, { type, dims, values }));
    return this;
  }

  /** Adds a node. Use '' in `inputs` for an omitted optional input. */
  node(
    opType: string,
    inputs: readonly string[],
    outputs: readonly string[],
    attributes: Record<string, AttributeValue> = {},
    options: NodeOptions = {},
  ): this {
    for (const o of outputs) this.claim(o);
    this.nodes.push({
      opType,
      input: [...inputs],
      output: [...outputs],
      name: options.name ?? `${opType}_${this.nodes.length}`,
      domain: options.domain ?? '',
      attribute: Object.entries(attributes).map(([k, v]) => attribute(k, v)),
    });
    return this;
  }

  /** Sets a `metadata_props` entry (Ultralytics, for example, stores names/imgsz/stride here). */
  meta(key: string, value: string): this {
    this.metadata.set(key, value);
    return this;
  }

  /** The ModelProto as a plain protobufjs message. */
  toProto(): onnxProto.onnx.ModelProto {
    const opsets = [{ domain: '', version: this.opts.opset ?? 13 }];
    for (const [domain, version] of Object.entries(this.opts.opsets ?? {})) opsets.push({ domain, version });
    return onnx.ModelProto.create({
      irVersion: this.opts.irVersion ?? 8,
      producerName: this.opts.producerName ?? 'osprey',
      producerVersion: this.opts.producerVersion ?? '1',
      docString: this.opts.docString ?? '',
      opsetImport: opsets,
      metadataProps: [...this.metadata].map(([key, value]) => ({ key, value })),
      graph: {
        name: this.opts.graphName ?? 'graph',
        input: this.inputs,
        output: this.outputs,
        initializer: this.initializers,
        node: this.nodes,
      },
    });
  }

  /** Serialises the model to ONNX bytes. */
  toBytes(): Uint8Array {
    return onnx.ModelProto.encode(this.toProto()).finish();
  }

  private claim(name: string): void {
    // SSA: every value has exactly one producer; a duplicate is always a bug in the graph.
    if (this.names.has(name)) throw new Error(`ONNX value ${name} is defined twice`);
    this.names.add(name);
  }
}
