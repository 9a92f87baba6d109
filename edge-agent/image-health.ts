/**
 * Image health of one frame (issue 17), from the small gray thumbnail the model's pre-processing
 * made of the pixels it decoded anyway (models/thumbnail.ts): brightness (mean gray level),
 * contrast (RMS: std over mean), sharpness (variance of the Laplacian over the variance of the
 * gray levels) and the camera's shift
 * against a reference, estimated by cross-correlating the frame's row and column projection
 * profiles with the reference's. Pure functions: the monitor (monitor.ts) keeps the windows.
 */
import type { GrayThumbnail } from '../models/thumbnail.js';

/** Row and column means of a reference (the average of the reference frames' profiles). */
export interface ShiftReference {
  width: number;
  height: number;
  cols: Float64Array;
  rows: Float64Array;
}

export interface FrameHealth {
  /** Mean gray level, 0..255. */
  brightness: number;
  /** RMS contrast: standard deviation of the gray levels over their mean (a change of gain leaves it). */
  contrast: number;
  /**
   * Variance of the 4-neighbour Laplacian over the inner pixels, divided by the variance of the
   * gray levels: fine detail relative to all detail, so a change of gain or contrast leaves it and
   * blur lowers it.
   */
  sharpness: number;
  /** Column and row means of the thumbnail (for the shift and for building a reference). */
  cols: Float64Array;
  rows: Float64Array;
}

/**
 * Profile arrays reused from frame to frame, for frames whose profiles are not kept (every frame
 * once a reference exists): a typed array of this size lives outside the JS heap, and one pair
 * per frame at hundreds of frames a second shows in garbage collection. Zeroed on each take.
 */
export class ProfileBuffers {
  private cols = new Float64Array(0);
  private rows = new Float64Array(0);
  take(which: 'cols' | 'rows', length: number): Float64Array {
    let a = this[which];
    if (a.length !== length) a = this[which] = new Float64Array(length);
    else a.fill(0);
    return a;
  }
}

/**
 * Rows read by measureFrame: one in four once a thumbnail has 32 rows or more. At 128×128 that is
 * 4 k pixels for the moments and 2 k Laplacian samples, plenty for figures that are compared as
 * rolling medians, at a quarter of the full cost (it was one in two: the checks cost about 4 %
 * of a 2 ms model's throughput, now under the noise).
 */
const ROW_STEP = 4;

/**
 * One pass over every ROW_STEP-th row of the thumbnail (rows 1, 5, 9, …; every other row of a
 * small one: each has both neighbours for the Laplacian), in steps of two columns: each step
 * reads the pair of pixels (x − 1, x) for the moments and the column profile (every pixel of a
 * sampled row counts), and the Laplacian at x from the same reads plus three (thousands of
 * samples of its variance, every neighbour read at full resolution, so fine blur shows as
 * before). `rows` holds the sampled rows' means, so a vertical lag counts sampled rows:
 * frameShift divides by the profiles' lengths. A last odd column is left out.
 */
export function measureFrame(t: GrayThumbnail, into?: ProfileBuffers): FrameHealth {
  const { width: w, height: h, data: d } = t;
  const step = h >= 32 ? ROW_STEP : h >= 3 ? 2 : 1;
  const first = h >= 3 ? 1 : 0;
  const sampled = h >= 3 ? Math.floor((h - 3) / step) + 1 : h;
  // Pairs of columns; a 1-pixel-wide thumbnail is its own single "pair".
  const pairs = w >= 2 ? w >> 1 : 1;
  const span = w >= 2 ? 2 : 1;
  const cols = into ? into.take('cols', pairs * span) : new Float64Array(pairs * span);
  const rows = into ? into.take('rows', sampled) : new Float64Array(sampled);
  let sum = 0;
  let sum2 = 0;
  let lapSum = 0;
  let lapSum2 = 0;
  let m = 0;
  for (let r = 0, y = first; r < sampled; r++, y += step) {
    let rs = 0;
    const o = y * w;
    const inner = y > 0 && y < h - 1;
    for (let j = 0; j < pairs; j++) {
      const x = j * span + span - 1;
      const i = o + x;
      const v = d[i]!;
      const u = span === 2 ? d[i - 1]! : v;
      const p = span === 2 ? u + v : v;
      rs += p;
      sum2 += span === 2 ? u * u + v * v : v * v;
      cols[x]! += v;
      if (span === 2) cols[x - 1]! += u;
      if (inner && x < w - 1) {
        const l = u + d[i + 1]! + d[i - w]! + d[i + w]! - 4 * v;
        lapSum += l;
        lapSum2 += l * l;
        m++;
      }
    }
    rows[r] = rs / (pairs * span);
    sum += rs;
  }
  for (let x = 0; x < cols.length; x++) cols[x]! /= sampled;
  const n = pairs * span * sampled;
  const mean = sum / n;
  const lapMean = m > 0 ? lapSum / m : 0;
  const variance = Math.max(0, sum2 / n - mean * mean);
  return {
    brightness: mean,
    // Floors: a black frame has no contrast rather than a division by zero.
    contrast: Math.sqrt(variance) / Math.max(1, mean),
    sharpness: m > 0 ? Math.max(0, lapSum2 / m - lapMean * lapMean) / Math.max(1, variance) : 0,
    cols,
    rows,
  };
}

/**
 * Work arrays of profileLag, reused from call to call (a small typed array costs more to allocate
 * than the whole match): the function is synchronous and never re-entered.
 */
let scratch = { size: 0, a: new Float64Array(0), r: new Float64Array(0), a2: new Float64Array(0), r2: new Float64Array(0), scores: new Float64Array(0) };
function scratchFor(size: number): typeof scratch {
  if (scratch.size < size) {
    scratch = { size, a: new Float64Array(size), r: new Float64Array(size), a2: new Float64Array(size), r2: new Float64Array(size), scores: new Float64Array(size + 1) };
  }
  return scratch;
}

/**
 * The lag (in thumbnail pixels, within ±maxLag) at which `profile` best matches `reference`:
 * the maximum of the normalised cross-correlation of the two profiles' first differences over
 * their overlap (differences, so a change of brightness or a gradient does not move the peak).
 * Positive: the content moved towards higher indices (right or down). Sub-pixel: a parabola
 * through the peak and its two neighbours (a small thumbnail would otherwise round every shift to
 * whole pixels, and a rolling median of whole pixels jumps by one).
 */
export function profileLag(profile: Float64Array, reference: Float64Array, maxLag: number): number {
  const n = Math.min(profile.length, reference.length);
  if (n < 4) return 0;
  const k = n - 1;
  const { a, r, a2, r2, scores } = scratchFor(k + 1);
  // Prefix sums of the squares: each lag's energies over its overlap in O(1), so only the cross
  // products are summed per lag.
  a2[0] = 0;
  r2[0] = 0;
  for (let i = 0; i < k; i++) {
    const x = profile[i + 1]! - profile[i]!;
    const y = reference[i + 1]! - reference[i]!;
    a[i] = x;
    r[i] = y;
    a2[i + 1] = a2[i]! + x * x;
    r2[i + 1] = r2[i]! + y * y;
  }
  const L = Math.min(maxLag, Math.floor(k / 2));
  let best = 0;
  let bestScore = -Infinity;
  for (let lag = -L; lag <= L; lag++) {
    // a[i] is compared with r[i − lag]: content moved by +lag appears lag samples later.
    const from = Math.max(0, lag);
    const to = Math.min(k, k + lag);
    let sab = 0;
    for (let i = from; i < to; i++) sab += a[i]! * r[i - lag]!;
    const saa = a2[to]! - a2[from]!;
    const sbb = r2[to - lag]! - r2[from - lag]!;
    const score = saa > 0 && sbb > 0 ? sab / Math.sqrt(saa * sbb) : 0;
    scores[lag + L] = score;
    if (score > bestScore) {
      bestScore = score;
      best = lag;
    }
  }
  if (best === -L || best === L) return best;
  const a0 = scores[best + L - 1]!;
  const b0 = scores[best + L]!;
  const c0 = scores[best + L + 1]!;
  const curve = a0 - 2 * b0 + c0;
  return curve < 0 ? best + Math.max(-0.5, Math.min(0.5, (a0 - c0) / (2 * curve))) : best;
}

/** The camera's shift against `ref`, as a fraction of the thumbnail's width and height. */
export function frameShift(f: FrameHealth, ref: ShiftReference, maxLagFraction: number): { x: number; y: number } {
  if (f.cols.length !== ref.cols.length || f.rows.length !== ref.rows.length) return { x: 0, y: 0 };
  const x = profileLag(f.cols, ref.cols, Math.max(1, Math.round(maxLagFraction * ref.width)));
  const y = profileLag(f.rows, ref.rows, Math.max(1, Math.round(maxLagFraction * ref.height)));
  // ref.width/height are the profiles' lengths (rows: the sampled rows), so these are fractions of the frame.
  return { x: x / ref.width, y: y / ref.height };
}

/** The reference profiles: the mean of the reference frames' profiles (all of one size). */
export function shiftReference(frames: readonly FrameHealth[]): ShiftReference | undefined {
  const first = frames[0];
  if (!first) return undefined;
  const same = frames.filter((f) => f.cols.length === first.cols.length && f.rows.length === first.rows.length);
  const cols = new Float64Array(first.cols.length);
  const rows = new Float64Array(first.rows.length);
  for (const f of same) {
    for (let i = 0; i < cols.length; i++) cols[i]! += f.cols[i]!;
    for (let i = 0; i < rows.length; i++) rows[i]! += f.rows[i]!;
  }
  for (let i = 0; i < cols.length; i++) cols[i]! /= same.length;
  for (let i = 0; i < rows.length; i++) rows[i]! /= same.length;
  return { width: cols.length, height: rows.length, cols, rows };
}
