/**
 * A thin layer over OnnxModelBuilder for writing convolutional networks with random, seeded
 * weights: a conv with its activation in one call, fresh value names, and weights scaled so
 * activations stay in a normal float range through deep graphs (no overflow, no denormals, which
 * would make timings meaningless).
 */
import { OnnxModelBuilder, type AttributeValue } from '../../models/onnx-builder.js';
import { createRng, type Rng } from '../../models/prng.js';

export type Activation = 'relu' | 'silu' | 'none';

export interface ConvOptions {
  stride?: number;
  /** Output activation (default none). SiLU is written as x·Sigmoid(x), as Ultralytics exports it. */
  act?: Activation;
  /** Multiplies the He-initialised weights; below 1 for the last conv of a residual branch. */
  gain?: number;
  /** Constant bias value instead of a small random one (detector class priors). */
  bias?: number;
}

/** Writes nodes and seeded random weights into an OnnxModelBuilder. */
export class GraphWriter {
  readonly b: OnnxModelBuilder;
  private readonly rng: Rng;
  private n = 0;
  /** Parameters written so far (weights and biases). */
  params = 0;

  constructor(builder: OnnxModelBuilder, seed: number) {
    this.b = builder;
    this.rng = createRng(seed);
  }

  /** A fresh value name. */
  name(prefix: string): string {
    return `${prefix}_${this.n++}`;
  }

  /** Uniform values with the given standard deviation (uniform: cheap, and std is all that matters here). */
  random(count: number, std: number): Float32Array {
    const a = std * Math.sqrt(3);
    const out = new Float32Array(count);
    for (let i = 0; i < count; i++) out[i] = (this.rng.next() * 2 - 1) * a;
    return out;
  }

  /** A float32 initializer; returns its name. */
  weight(prefix: string, dims: number[], values: Float32Array | number[]): string {
    const name = this.name(prefix);
    this.b.initializer(name, 'float32', dims, values);
    this.params += values.length;
    return name;
  }

  /** An int64 constant (shapes, axes, split sizes). */
  ints(prefix: string, values: number[]): string {
    const name = this.name(prefix);
    this.b.initializer(name, 'int64', [values.length], values);
    return name;
  }

  /** Conv k×k (same padding) + bias + activation. Batch norm is folded into the bias, as exporters do. */
  conv(x: string, cIn: number, cOut: number, k: number, opts: ConvOptions = {}): string {
    const stride = opts.stride ?? 1;
    const pad = Math.floor(k / 2);
    // He initialisation keeps the activation variance roughly constant layer to layer.
    const std = Math.sqrt(2 / (cIn * k * k)) * (opts.gain ?? 1);
    const w = this.weight('w', [cOut, cIn, k, k], this.random(cOut * cIn * k * k, std));
    const biasValues = opts.bias !== undefined ? new Float32Array(cOut).fill(opts.bias) : this.random(cOut, 0.01);
    const bias = this.weight('b', [cOut], biasValues);
    const y = this.name('conv');
    this.b.node('Conv', [x, w, bias], [y], {
      kernel_shape: [k, k],
      strides: [stride, stride],
      pads: [pad, pad, pad, pad],
      dilations: [1, 1],
      group: 1,
    });
    return this.activate(y, opts.act ?? 'none');
  }

  activate(x: string, act: Activation): string {
    if (act === 'none') return x;
    if (act === 'relu') return this.op('Relu', [x]);
    const s = this.op('Sigmoid', [x]);
    return this.op('Mul', [x, s]);
  }

  /** One node with one output; returns the output name. */
  op(type: string, inputs: string[], attrs: Record<string, AttributeValue> = {}): string {
    const y = this.name(type.toLowerCase());
    this.b.node(type, inputs, [y], attrs);
    return y;
  }

  /** A node with several outputs. */
  multi(type: string, inputs: string[], outputs: number, attrs: Record<string, AttributeValue> = {}): string[] {
    const ys = Array.from({ length: outputs }, () => this.name(type.toLowerCase()));
    this.b.node(type, inputs, ys, attrs);
    return ys;
  }
}
