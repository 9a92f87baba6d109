/**
 * Score drift (issue 17): the scores of a rolling window against a reference, by the population
 * stability index over bins cut at the reference's deciles, the same for the label rates, and a
 * defect-rate spike test: the defects in a rolling window against the binomial tail of the
 * reference rate. Pure statistics and small windows; the monitor (monitor.ts) raises the alarms.
 */

/** Smallest bin share used in the PSI, so an empty bin gives a large but finite term. */
const PSI_FLOOR = 1e-4;

/**
 * Population stability index Σ (a − e)·ln(a / e) over bins, `expected` and `actual` as counts or
 * shares (each normalised here). 0 for identical distributions; the usual reading: < 0.1 no
 * change, 0.1–0.25 some, > 0.25 a major shift.
 */
export function psi(expected: readonly number[], actual: readonly number[]): number {
  const te = expected.reduce((a, b) => a + b, 0);
  const ta = actual.reduce((a, b) => a + b, 0);
  if (te <= 0 || ta <= 0) return 0;
  let sum = 0;
  for (let i = 0; i < expected.length; i++) {
    const e = Math.max(PSI_FLOOR, expected[i]! / te);
    const a = Math.max(PSI_FLOOR, (actual[i] ?? 0) / ta);
    sum += (a - e) * Math.log(a / e);
  }
  return sum;
}

/** Inner bin edges at the reference's quantiles (deciles by default; ties merged): bins are [−∞, e0), [e0, e1), … [en, ∞). */
export function quantileEdges(reference: readonly number[], bins = 10): number[] {
  const s = [...reference].sort((a, b) => a - b);
  const edges: number[] = [];
  for (let i = 1; i < bins; i++) {
    const v = s[Math.min(s.length - 1, Math.floor((i * s.length) / bins))]!;
    if (edges.length === 0 || v > edges[edges.length - 1]!) edges.push(v);
  }
  return edges;
}

/** Index of the bin of `v` among `edges` (binary search). */
export function binOf(v: number, edges: readonly number[]): number {
  let lo = 0;
  let hi = edges.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (v >= edges[mid]!) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Counts of `values` in the bins of `edges`. */
export function histogram(values: Iterable<number>, edges: readonly number[]): number[] {
  const out = new Array<number>(edges.length + 1).fill(0);
  for (const v of values) out[binOf(v, edges)]!++;
  return out;
}

/** P(X ≥ k) for X ~ Binomial(n, p), summed in log space (n up to 10⁵ in microseconds). */
export function binomialTail(n: number, p: number, k: number): number {
  if (k <= 0) return 1;
  if (k > n) return 0;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  const lp = Math.log(p);
  const lq = Math.log1p(-p);
  // log C(n, k) by the log-gamma-free running product from i = k upwards.
  let logC = 0;
  for (let i = 1; i <= k; i++) logC += Math.log((n - k + i) / i);
  let term = logC + k * lp + (n - k) * lq;
  let sum = 0;
  for (let i = k; i <= n; i++) {
    const t = Math.exp(term);
    sum += t;
    if (t < sum * 1e-16 && i > n * p) break;
    term += Math.log((n - i) / (i + 1)) + lp - lq;
  }
  return Math.min(1, sum);
}

/** The smallest count k with P(X ≥ k) ≤ alpha under Binomial(n, p): the spike bound of a window. */
export function binomialCriticalCount(n: number, p: number, alpha: number): number {
  let k = Math.max(1, Math.floor(n * p));
  while (k <= n && binomialTail(n, p, k) > alpha) k++;
  return k;
}

/** A fixed-size ring of the last `size` values, with a running count of those ≥ 1 (defect flags). */
export class Ring {
  readonly values: Float64Array;
  /** median()'s sorting space: a window's median is taken every frame, so nothing is allocated. */
  private readonly sorted: Float64Array;
  private at = 0;
  private n = 0;
  constructor(readonly size: number) {
    this.values = new Float64Array(size);
    this.sorted = new Float64Array(size);
  }
  push(v: number): number | undefined {
    const old = this.n === this.size ? this.values[this.at] : undefined;
    this.values[this.at] = v;
    this.at = (this.at + 1) % this.size;
    if (this.n < this.size) this.n++;
    return old;
  }
  get length(): number {
    return this.n;
  }
  get full(): boolean {
    return this.n === this.size;
  }
  /** The values held (oldest first order not kept). */
  held(): Float64Array {
    return this.n === this.size ? this.values : this.values.subarray(0, this.n);
  }
  /** Median of the values held (sorts a copy in place: windows are small). */
  median(): number {
    const s = this.n === this.size ? this.sorted : this.sorted.subarray(0, this.n);
    s.set(this.held());
    s.sort();
    const m = s.length >> 1;
    return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  }
}

export interface ScoreReference {
  /** Inner bin edges of the score histogram (the reference's deciles). */
  edges: number[];
  /** Reference share of each bin. */
  shares: number[];
  /** Reference frames per label (absent: from calibration, no labels). */
  labels?: Map<string, number>;
  source: 'calibration' | 'frames';
}

/** The reference made of `scores` (and their labels) seen after activation. */
export function scoreReferenceOf(scores: readonly number[], labels?: readonly string[], bins = 10): ScoreReference {
  const edges = quantileEdges(scores, bins);
  const ref: ScoreReference = { edges, shares: histogram(scores, edges), source: 'frames' };
  if (labels) {
    ref.labels = new Map();
    for (const l of labels) ref.labels.set(l, (ref.labels.get(l) ?? 0) + 1);
  }
  return ref;
}

/**
 * The reference given by calibration quantiles (a package's `metadata.scoreQuantiles`: the
 * normalised scores of its calibration images at equally spaced quantiles, lowest first): bins cut
 * at the inner quantiles, each of equal share.
 */
export function scoreReferenceFromQuantiles(quantiles: readonly number[]): ScoreReference | undefined {
  if (quantiles.length < 3 || quantiles.some((q) => !Number.isFinite(q))) return undefined;
  const inner = quantiles.slice(1, -1);
  const edges: number[] = [];
  const shares: number[] = [];
  const step = 1 / (quantiles.length - 1);
  let share = step;
  for (const q of inner) {
    if (edges.length > 0 && q <= edges[edges.length - 1]!) {
      share += step;
      continue;
    }
    shares.push(share);
    edges.push(q);
    share = step;
  }
  shares.push(share);
  return { edges, shares, source: 'calibration' };
}

/** PSI of the label counts of a window against the reference's label counts (labels seen on either side). */
export function labelPsi(reference: Map<string, number>, window: Map<string, number>): number {
  const names = new Set([...reference.keys(), ...window.keys()]);
  const e: number[] = [];
  const a: number[] = [];
  for (const n of names) {
    e.push(reference.get(n) ?? 0);
    a.push(window.get(n) ?? 0);
  }
  return psi(e, a);
}
