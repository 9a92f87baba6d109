/**
 * One Gaussian over image features, with a relative ridge: Σ = S/(n−1) + r·tr(S/(n−1))/D·I
 * (S the scatter about the mean). Score = squared Mahalanobis distance = ‖L⁻¹(x − μ)‖², L the
 * Cholesky factor of Σ; in the graph it is Sub, MatMul by W = (L⁻¹)ᵀ, ReduceSumSquare.
 *
 * Leave-one-out scores in closed form (no refits): without image i, with the ridge λ held at its
 * full-data value, Σ₋ᵢ = B − k·dᵢdᵢᵀ where B = S/(n−2) + λI, dᵢ = xᵢ − μ, k = n/((n−1)(n−2)),
 * and xᵢ − μ₋ᵢ = c·dᵢ, c = n/(n−1). Sherman–Morrison gives score₋ᵢ = c²·q/(1 − k·q), q = dᵢᵀB⁻¹dᵢ.
 */
import { OspreyError } from '../../protocol/errors.js';
import type { Head } from './features-graph.js';
import type { OnnxModelBuilder } from '../onnx-builder.js';

export interface GaussianFit {
  dim: number;
  mean: Float64Array;
  /** W = (L⁻¹)ᵀ, row-major D×D: score(x) = ‖(x − μ)W‖². */
  whitening: Float64Array;
  ridge: number;
  /** Leave-one-out scores of the training rows, in their order. */
  looScores: number[];
}

/** In-place Cholesky of a symmetric positive definite row-major n×n matrix (lower triangle). */
export function cholesky(a: Float64Array, n: number): Float64Array {
  for (let j = 0; j < n; j++) {
    const rj = j * n;
    let d = a[rj + j];
    for (let k = 0; k < j; k++) d -= a[rj + k] * a[rj + k];
    if (!(d > 0)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `covariance is not positive definite at ${j}`);
    const l = Math.sqrt(d);
    a[rj + j] = l;
    for (let i = j + 1; i < n; i++) {
      const ri = i * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      a[ri + j] = s / l;
    }
    for (let i = 0; i < j; i++) a[i * n + j] = 0;
  }
  return a;
}

/** ‖L⁻¹v‖² by forward substitution (L lower, row-major). */
export function forwardNormSq(l: Float64Array, n: number, v: ArrayLike<number>, tmp = new Float64Array(n)): number {
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    let s = v[i];
    for (let k = 0; k < i; k++) s -= l[ri + k] * tmp[k];
    tmp[i] = s / l[ri + i];
    sum += tmp[i] * tmp[i];
  }
  return sum;
}

/** (L⁻¹)ᵀ for lower-triangular L: column j of L⁻¹ solves L·x = e_j, stored as row j of the result. */
export function inverseTransposeLower(l: Float64Array, n: number): Float64Array {
  const w = new Float64Array(n * n);
  for (let j = 0; j < n; j++) {
    const row = j * n;
    for (let i = j; i < n; i++) {
      const ri = i * n;
      let s = i === j ? 1 : 0;
      for (let k = j; k < i; k++) s -= l[ri + k] * w[row + k];
      w[row + i] = s / l[ri + i];
    }
  }
  // w row j = column j of L⁻¹ = row j of (L⁻¹)ᵀ.
  return w;
}

/** The rows' count, mean and the rows minus it (n ≥ 3, else a one-line error). */
function centre(rows: readonly Float32Array[], dim: number): { n: number; mean: Float64Array; centred: Float64Array[] } {
  const n = rows.length;
  if (n < 3) throw new OspreyError('OSP_ERR_BAD_REQUEST', `the Gaussian needs at least 3 images, got ${n}`);
  const mean = new Float64Array(dim);
  for (const r of rows) for (let a = 0; a < dim; a++) mean[a] += r[a];
  for (let a = 0; a < dim; a++) mean[a] /= n;
  return { n, mean, centred: rows.map((r) => Float64Array.from(r.subarray(0, dim), (v, a) => v - mean[a])) };
}

/**
 * Score functions of the Gaussian for any ridge from the same rows, without the leave-one-out
 * scores or the whitening matrix (what the search needs). With fewer images than features it
 * works in the dual: by Woodbury, (UᵀU + λI)⁻¹ = (I − Uᵀ(UUᵀ + λI)⁻¹U)/λ with U = X/√(n−1), so
 * score(x) = (‖d‖² − ‖L⁻¹Ud‖²)/λ with L the Cholesky factor of the n×n Gram matrix + λI.
 */
export function gaussianScorers(rows: readonly Float32Array[], dim: number): (ridge: number) => (x: ArrayLike<number>) => number {
  const { n, mean, centred } = centre(rows, dim);
  const dual = n - 1 < dim;
  const m = dual ? n : dim;
  // Primal: S/(n−1) (D×D, lower triangle); dual: XXᵀ/(n−1) (n×n, lower triangle).
  const gram = new Float64Array(m * m);
  if (dual) {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let sum = 0;
        const ci = centred[i];
        const cj = centred[j];
        for (let a = 0; a < dim; a++) sum += ci[a] * cj[a];
        gram[i * n + j] = sum / (n - 1);
      }
    }
  } else {
    for (const d of centred) {
      for (let a = 0; a < dim; a++) {
        const da = d[a] / (n - 1);
        if (da === 0) continue;
        const ra = a * dim;
        for (let b = 0; b <= a; b++) gram[ra + b] += da * d[b];
      }
    }
  }
  let trace = 0;
  for (let a = 0; a < m; a++) trace += gram[a * m + a];
  const meanVariance = trace / dim;
  if (!(meanVariance > 0)) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'all training images give the same features');
  const scale = 1 / Math.sqrt(n - 1);
  const projections = new WeakMap<object, { norm: number; v: Float64Array }>();
  return (ridge) => {
    const lambda = ridge * meanVariance;
    const k = Float64Array.from(gram);
    for (let a = 0; a < m; a++) k[a * m + a] += lambda;
    const l = cholesky(k, m);
    const d = new Float64Array(dim);
    const tmp = new Float64Array(m);
    return (x) => {
      if (!dual) {
        for (let a = 0; a < dim; a++) d[a] = x[a] - mean[a];
        return forwardNormSq(l, dim, d, tmp);
      }
      const { norm, v } = project(x);
      return (norm - forwardNormSq(l, n, v, tmp)) / lambda;
    };
  };
  /** ‖d‖² and Ud of a row, kept per row object: every ridge scores the same rows. */
  function project(x: ArrayLike<number>): { norm: number; v: Float64Array } {
    const known = projections.get(x as object);
    if (known) return known;
    const d = Float64Array.from({ length: dim }, (_, a) => x[a] - mean[a]);
    let norm = 0;
    for (let a = 0; a < dim; a++) norm += d[a] * d[a];
    const v = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      let sum = 0;
      const ci = centred[i];
      for (let a = 0; a < dim; a++) sum += ci[a] * d[a];
      v[i] = sum * scale;
    }
    const p = { norm, v };
    projections.set(x as object, p);
    return p;
  }
}

/** Fits the Gaussian on n rows of `dim` features (n ≥ 3). */
export function fitGaussian(rows: readonly Float32Array[], dim: number, ridge = 0.01): GaussianFit {
  const { n, mean, centred } = centre(rows, dim);
  const scatter = new Float64Array(dim * dim);
  for (const d of centred) {
    for (let a = 0; a < dim; a++) {
      const da = d[a];
      if (da === 0) continue;
      const ra = a * dim;
      for (let b = 0; b <= a; b++) scatter[ra + b] += da * d[b];
    }
  }
  let trace = 0;
  for (let a = 0; a < dim; a++) trace += scatter[a * dim + a];
  const lambda = (ridge * trace) / (n - 1) / dim;
  if (!(lambda > 0)) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'all training images give the same features');

  const sigma = new Float64Array(dim * dim);
  const b = new Float64Array(dim * dim);
  for (let a = 0; a < dim; a++) {
    for (let c = 0; c <= a; c++) {
      const s = scatter[a * dim + c];
      sigma[a * dim + c] = s / (n - 1) + (a === c ? lambda : 0);
      b[a * dim + c] = s / (n - 2) + (a === c ? lambda : 0);
    }
  }
  const l = cholesky(sigma, dim);
  const whitening = inverseTransposeLower(l, dim);
  const lb = cholesky(b, dim);
  const c = n / (n - 1);
  const k = n / ((n - 1) * (n - 2));
  const tmp = new Float64Array(dim);
  const looScores = centred.map((d) => {
    const q = forwardNormSq(lb, dim, d, tmp);
    return (c * c * q) / (1 - k * q);
  });
  return { dim, mean, whitening, ridge, looScores };
}

/** The score of one feature row, in JavaScript (the graph computes the same). */
export function gaussianScore(fit: GaussianFit, x: ArrayLike<number>): number {
  const D = fit.dim;
  const d = new Float64Array(D);
  for (let a = 0; a < D; a++) d[a] = x[a] - fit.mean[a];
  let sum = 0;
  const w = fit.whitening;
  // z = d·W, W = (L⁻¹)ᵀ is upper triangular: z_j = Σ_{a ≤ j} d_a W[a][j].
  const z = new Float64Array(D);
  for (let a = 0; a < D; a++) {
    const da = d[a];
    const ra = a * D;
    for (let j = a; j < D; j++) z[j] += da * w[ra + j];
  }
  for (let j = 0; j < D; j++) sum += z[j] * z[j];
  return sum;
}

/** The Gaussian head as graph nodes: features → `score` [1] (raw squared Mahalanobis distance). */
export function gaussianHead(fit: GaussianFit): Head {
  const D = fit.dim;
  return {
    outputs: [{ name: 'score', dims: [1] }],
    build(b: OnnxModelBuilder) {
      b.initializer('head/mean', 'float32', [1, D], Float32Array.from(fit.mean))
        .initializer('head/whitening', 'float32', [D, D], Float32Array.from(fit.whitening))
        .node('Sub', ['features', 'head/mean'], ['head/centred'])
        .node('MatMul', ['head/centred', 'head/whitening'], ['head/z'])
        .node('ReduceSumSquare', ['head/z'], ['score'], { axes: [1], keepdims: 0 });
    },
  };
}
