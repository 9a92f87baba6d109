/**
 * "This would have changed N of the last 1000 verdicts": a proposed threshold for one label,
 * replayed over an edge's stored results. Each result is decided again on its stored score:
 * - a defect called on the label becomes ok when its score is below the new threshold;
 * - an ok result becomes a defect on the label when its score reaches the new threshold (an ok
 *   result stores its closest call, the score that was compared with a defect threshold; for an
 *   anomaly model that is exactly the anomaly score, for a classifier with several defect
 *   labels it may be another label's, so the count is an upper bound there);
 * - defects called on other labels keep their verdict.
 */
import type { VerdictScore } from './store.js';

export interface ThresholdPreview {
  /** Results replayed (at most the limit asked). */
  considered: number;
  /** Results whose verdict would differ. */
  changed: number;
  /** Of those, ok results that would be defects. */
  toDefect: number;
  /** Of those, defects on the label that would be ok. */
  toOk: number;
}

/** Replays `results` under `threshold` for `label` (see the file comment for the rule). */
export function previewThreshold(results: readonly VerdictScore[], label: string, threshold: number): ThresholdPreview {
  let toDefect = 0;
  let toOk = 0;
  for (const r of results) {
    if (r.verdict === 'defect') {
      if (r.label === label && r.score < threshold) toOk++;
    } else if (r.score >= threshold) toDefect++;
  }
  return { considered: results.length, changed: toDefect + toOk, toDefect, toOk };
}
