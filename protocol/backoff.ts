/**
 * Retry delays: exponential backoff with jitter, the one implementation for every retry loop
 * (artifact downloads, image uploads). Jitter keeps a line of edges that failed together from
 * retrying in step.
 */

export interface BackoffOptions {
  /** Delay ceiling after the first failure. */
  baseMs: number;
  /** Largest delay ceiling. */
  maxMs: number;
  /** Uniform in [0, 1) (default Math.random); tests pin it. */
  random?: () => number;
}

/**
 * The wait before the next attempt after `failures` failures in a row (0: none yet, no wait):
 * the ceiling doubles per failure from `baseMs` up to `maxMs`, and the delay is drawn from the
 * upper half of it.
 */
export function backoffDelay(failures: number, opts: BackoffOptions): number {
  if (failures <= 0) return 0;
  const ceiling = Math.min(opts.maxMs, opts.baseMs * 2 ** (failures - 1));
  return Math.round(ceiling / 2 + ((opts.random ?? Math.random)() * ceiling) / 2);
}
