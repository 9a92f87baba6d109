/**
 * Calibration of a one-class model from good images only (leave-one-out scores), named operating
 * points, and the validation figures when defect images are given: AUROC and the
 * false-reject / catch-rate curve.
 */
import { OspreyError } from '../../protocol/errors.js';
import { normalizeAnomalyScore } from '../postprocess/anomaly.js';

/** Named operating points: the percentile of the good images' leave-one-out scores. */
export const OPERATING_POINTS = { balanced: 94, strict: 90, lenient: 99 } as const;
export type OperatingPointName = keyof typeof OPERATING_POINTS;

/** The p-th percentile (0..100) of `values`, linear interpolation between order statistics. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'percentile of no values');
  const s = [...values].sort((a, b) => a - b);
  const pos = (Math.min(100, Math.max(0, p)) / 100) * (s.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(s.length - 1, lo + 1);
  return s[lo] + (s[hi] - s[lo]) * (pos - lo);
}

/**
 * The deciles (0, 10, … 100 %) of calibration scores as the runtime normalises them
 * (models/postprocess/anomaly.ts), 4 decimals: a package's `metadata.scoreQuantiles`, the edge's
 * score-drift reference (edge-agent/monitor.ts). Eleven numbers: small enough for a manifest.
 */
export function scoreQuantiles(raw: readonly number[], normalization: { min: number; max: number; threshold: number }): number[] {
  const normalised = raw.map((v) => normalizeAnomalyScore(v, normalization));
  return Array.from({ length: 11 }, (_, i) => Number(percentile(normalised, i * 10).toFixed(4)));
}

/** Parses `--operating-point`: a name (balanced, strict, lenient) or `pNN` (a percentile). */
export function parseOperatingPoint(text: string): { name: string; percentile: number } {
  if (text in OPERATING_POINTS) return { name: text, percentile: OPERATING_POINTS[text as OperatingPointName] };
  const m = /^p(\d+(?:\.\d+)?)$/.exec(text);
  const p = m ? Number(m[1]) : NaN;
  if (!(p > 0 && p <= 100)) {
    throw new OspreyError('OSP_ERR_USAGE', `--operating-point must be balanced, strict, lenient or pNN (a percentile, e.g. p97), got "${text}"`);
  }
  return { name: text, percentile: p };
}

/** AUROC of scores (higher = more anomalous): the probability a defect outscores a good image, ties ½. */
export function auroc(good: readonly number[], defect: readonly number[]): number {
  if (good.length === 0 || defect.length === 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'AUROC needs good and defect scores');
  const all = [...good.map((s) => ({ s, d: 0 })), ...defect.map((s) => ({ s, d: 1 }))].sort((a, b) => a.s - b.s);
  let rankSum = 0;
  for (let i = 0; i < all.length; ) {
    let j = i;
    while (j < all.length && all[j].s === all[i].s) j++;
    const rank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) if (all[k].d === 1) rankSum += rank;
    i = j;
  }
  const nd = defect.length;
  return (rankSum - (nd * (nd + 1)) / 2) / (nd * good.length);
}

export interface CurvePoint {
  /** Raw score threshold (≥ is a reject). */
  threshold: number;
  falseRejectRate: number;
  catchRate: number;
}

/** False-reject and catch rates at a threshold. */
export function ratesAt(good: readonly number[], defect: readonly number[], threshold: number): CurvePoint {
  return {
    threshold,
    falseRejectRate: good.filter((s) => s >= threshold).length / Math.max(1, good.length),
    catchRate: defect.filter((s) => s >= threshold).length / Math.max(1, defect.length),
  };
}

/** The curve at each percentile 50..100 of the calibration scores (what a user picks an operating point from). */
export function rateCurve(calibration: readonly number[], good: readonly number[], defect: readonly number[]): (CurvePoint & { percentile: number })[] {
  const out: (CurvePoint & { percentile: number })[] = [];
  for (const p of [50, 60, 70, 80, 85, 90, 92.5, 94, 95, 97.5, 99, 100]) out.push({ percentile: p, ...ratesAt(good, defect, percentile(calibration, p)) });
  return out;
}

/** The validation figures of a model card: AUROC, the rates at the chosen threshold, the curve. */
export function validationFigures(calibration: readonly number[], good: readonly number[], defect: readonly number[], threshold: number) {
  const at = ratesAt(good, defect, threshold);
  return {
    auroc: auroc(good, defect),
    atOperatingPoint: { falseRejectRate: at.falseRejectRate, catchRate: at.catchRate },
    curve: rateCurve(calibration, good, defect),
  };
}
