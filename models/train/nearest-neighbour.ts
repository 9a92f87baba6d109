/**
 * A 1-nearest-neighbour head over image features: score = the squared Euclidean distance to the
 * closest training image's features. The training features are the head's memory bank; in the
 * graph it is Sub (features [1, D] − bank [n, D], broadcast) → ReduceSumSquare over D → [n] →
 * ReduceMin → `score` [1]. Leave-one-out scores are exact and need no refit: the distance of each
 * training image to its nearest *other* training image.
 */
import { OspreyError } from '../../protocol/errors.js';
import type { OnnxModelBuilder } from '../onnx-builder.js';
import type { Head } from './features-graph.js';

export interface NearestFit {
  dim: number;
  /** The training features, row-major n×D (float32, as the graph holds them). */
  bank: Float32Array;
  /** Leave-one-out scores of the training rows, in their order. */
  looScores: number[];
}

function distanceSq(a: ArrayLike<number>, bank: Float32Array, offset: number, dim: number): number {
  let s = 0;
  for (let k = 0; k < dim; k++) {
    const v = a[k] - bank[offset + k];
    s += v * v;
  }
  return s;
}

/**
 * Keeps the rows as the bank; leave-one-out scores from the full distance matrix (n ≥ 2), unless
 * `leaveOneOut` is false (the search scores other images only).
 */
export function fitNearest(rows: readonly Float32Array[], dim: number, leaveOneOut = true): NearestFit {
  const n = rows.length;
  if (n < 2) throw new OspreyError('OSP_ERR_BAD_REQUEST', `the nearest-neighbour head needs at least 2 images, got ${n}`);
  const bank = new Float32Array(n * dim);
  rows.forEach((r, i) => bank.set(r.subarray(0, dim), i * dim));
  if (!leaveOneOut) return { dim, bank, looScores: [] };
  const loo = new Array<number>(n).fill(Infinity);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const d = distanceSq(bank.subarray(i * dim, (i + 1) * dim), bank, j * dim, dim);
      if (d < loo[i]) loo[i] = d;
      if (d < loo[j]) loo[j] = d;
    }
  }
  return { dim, bank, looScores: loo };
}

/** The score of one feature row, in JavaScript (the graph computes the same). */
export function nearestScore(fit: NearestFit, x: ArrayLike<number>): number {
  const n = fit.bank.length / fit.dim;
  let best = Infinity;
  for (let j = 0; j < n; j++) best = Math.min(best, distanceSq(x, fit.bank, j * fit.dim, fit.dim));
  return best;
}

/** The head as graph nodes: features → `score` [1] (raw squared distance to the nearest training image). */
export function nearestHead(fit: NearestFit): Head {
  const D = fit.dim;
  const n = fit.bank.length / D;
  return {
    outputs: [{ name: 'score', dims: [1] }],
    build(b: OnnxModelBuilder) {
      b.initializer('head/bank', 'float32', [n, D], fit.bank)
        .node('Sub', ['features', 'head/bank'], ['head/diff'])
        .node('ReduceSumSquare', ['head/diff'], ['head/distances'], { axes: [1], keepdims: 0 })
        .node('ReduceMin', ['head/distances'], ['score'], { axes: [0], keepdims: 1 });
    },
  };
}
