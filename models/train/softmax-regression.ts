/**
 * Multinomial logistic (softmax) regression on standardised features: Adam, full batch, L2 on
 * the weights, zero initialisation (deterministic). The standardisation is folded into the
 * weights for the graph: logits = x·W' + b' with W' = W/σ (row-wise), b' = b − Σ μ·W/σ, which
 * is one Gemm followed by Softmax.
 */
import type { OnnxModelBuilder } from '../onnx-builder.js';
import type { Head } from './features-graph.js';

export interface SoftmaxFit {
  dim: number;
  classes: number;
  /** Folded weights W', row-major D×K. */
  weights: Float32Array;
  /** Folded bias b', K. */
  bias: Float32Array;
  /** Final training loss (mean cross-entropy + L2 term). */
  loss: number;
}

export interface SoftmaxOptions {
  epochs?: number;
  learningRate?: number;
  l2?: number;
}

/** Fits on `rows` (each of length `dim`) with labels 0..classes−1. */
export function fitSoftmax(rows: readonly Float32Array[], labels: readonly number[], dim: number, classes: number, opts: SoftmaxOptions = {}): SoftmaxFit {
  const epochs = opts.epochs ?? 200;
  const lr = opts.learningRate ?? 0.01;
  const l2 = opts.l2 ?? 1e-3;
  const n = rows.length;
  const D = dim;
  const K = classes;
  const mu = new Float64Array(D);
  const sd = new Float64Array(D);
  for (const r of rows) for (let a = 0; a < D; a++) mu[a] += r[a] / n;
  for (const r of rows) for (let a = 0; a < D; a++) sd[a] += (r[a] - mu[a]) ** 2 / n;
  for (let a = 0; a < D; a++) sd[a] = Math.sqrt(sd[a]) || 1;
  const X = rows.map((r) => Float64Array.from({ length: D }, (_, a) => (r[a] - mu[a]) / sd[a]));
  const P = D * K + K; // weights then bias
  const w = new Float64Array(P);
  const m = new Float64Array(P);
  const v = new Float64Array(P);
  const g = new Float64Array(P);
  const logits = new Float64Array(K);
  const b1 = 0.9;
  const b2 = 0.999;
  let loss = 0;
  for (let t = 1; t <= epochs; t++) {
    g.fill(0);
    loss = 0;
    for (let i = 0; i < n; i++) {
      const x = X[i];
      for (let k = 0; k < K; k++) logits[k] = w[D * K + k];
      for (let a = 0; a < D; a++) {
        const xa = x[a];
        const o = a * K;
        for (let k = 0; k < K; k++) logits[k] += xa * w[o + k];
      }
      let max = -Infinity;
      for (let k = 0; k < K; k++) max = Math.max(max, logits[k]);
      let sum = 0;
      for (let k = 0; k < K; k++) sum += (logits[k] = Math.exp(logits[k] - max));
      for (let k = 0; k < K; k++) logits[k] = logits[k] / sum - (k === labels[i] ? 1 : 0);
      loss -= Math.log(Math.max(logits[labels[i]] + 1, 1e-300)) / n;
      for (let a = 0; a < D; a++) {
        const xa = x[a] / n;
        const o = a * K;
        for (let k = 0; k < K; k++) g[o + k] += xa * logits[k];
      }
      for (let k = 0; k < K; k++) g[D * K + k] += logits[k] / n;
    }
    for (let j = 0; j < D * K; j++) {
      g[j] += l2 * w[j];
      loss += (l2 / 2) * w[j] * w[j];
    }
    const c1 = 1 - b1 ** t;
    const c2 = 1 - b2 ** t;
    for (let j = 0; j < P; j++) {
      m[j] = b1 * m[j] + (1 - b1) * g[j];
      v[j] = b2 * v[j] + (1 - b2) * g[j] * g[j];
      w[j] -= (lr * (m[j] / c1)) / (Math.sqrt(v[j] / c2) + 1e-8);
    }
  }
  const weights = new Float32Array(D * K);
  const bias = new Float32Array(K);
  for (let k = 0; k < K; k++) {
    let bk = w[D * K + k];
    for (let a = 0; a < D; a++) {
      weights[a * K + k] = w[a * K + k] / sd[a];
      bk -= (mu[a] * w[a * K + k]) / sd[a];
    }
    bias[k] = bk;
  }
  return { dim: D, classes: K, weights, bias, loss };
}

/** Class probabilities of one feature row, as the graph computes them. */
export function softmaxProbabilities(fit: SoftmaxFit, x: ArrayLike<number>): Float64Array {
  const K = fit.classes;
  const z = Float64Array.from(fit.bias);
  for (let a = 0; a < fit.dim; a++) for (let k = 0; k < K; k++) z[k] += x[a] * fit.weights[a * K + k];
  const max = Math.max(...z);
  let sum = 0;
  for (let k = 0; k < K; k++) sum += (z[k] = Math.exp(z[k] - max));
  return z.map((e) => e / sum);
}

/** The head for the package graph: features → Gemm → Softmax → `probabilities` [1, K]. */
export function softmaxHead(fit: SoftmaxFit): Head {
  return {
    build(b: OnnxModelBuilder) {
      b.initializer('head/weights', 'float32', [fit.dim, fit.classes], fit.weights)
        .initializer('head/bias', 'float32', [fit.classes], fit.bias)
        .node('Gemm', ['features', 'head/weights', 'head/bias'], ['head/logits'])
        .node('Softmax', ['head/logits'], ['probabilities'], { axis: 1 });
    },
    outputs: [{ name: 'probabilities', dims: [1, fit.classes] }],
  };
}
