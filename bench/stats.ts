/** Small statistics helpers shared by the benchmarks. */

/** The p-th percentile (0–100) by nearest rank; 0 for no samples. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return 0;
  const sorted = [...samples].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** p50, p99, mean and count of latency samples (ms). */
export interface LatencySummary {
  count: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
}

export function summarize(samples: readonly number[]): LatencySummary {
  const mean = samples.length ? samples.reduce((a, b) => a + b, 0) / samples.length : 0;
  return { count: samples.length, p50: percentile(samples, 50), p90: percentile(samples, 90), p99: percentile(samples, 99), mean };
}

/** Rounds for display and for the report (3 significant digits, at least 0 decimals). */
export function round(value: number, digits = 3): number {
  if (!Number.isFinite(value) || value === 0) return value;
  const magnitude = Math.floor(Math.log10(Math.abs(value)));
  const decimals = Math.max(0, digits - 1 - magnitude);
  const f = 10 ** decimals;
  return Math.round(value * f) / f;
}

/**
 * A distribution-free confidence interval for the median: the order statistics j and n + 1 − j,
 * j the largest with P(Binomial(n, ½) ≤ j − 1) ≤ (1 − confidence) / 2. With under 6 samples (no
 * such j at 95 %) it is the whole range.
 */
export function medianInterval(samples: readonly number[], confidence = 0.95): [number, number] {
  const s = [...samples].sort((a, b) => a - b);
  const n = s.length;
  if (n === 0) return [0, 0];
  const tail = (1 - confidence) / 2;
  let p = 0.5 ** n; // P(X = 0)
  let cum = p;
  let below = -1; // the largest i with P(X ≤ i) ≤ tail
  for (let i = 0; i < n && cum <= tail; i++) {
    below = i;
    p = (p * (n - i)) / (i + 1);
    cum += p;
  }
  return below < 0 ? [s[0]!, s[n - 1]!] : [s[below]!, s[n - 1 - below]!];
}
