/**
 * A token bucket that may go into debt: a caller takes what it used (a whole batch) and the next
 * take waits until the debt is paid back. The average rate is exact without knowing a batch's
 * size before reading it from the store, and a batch is never split to fit the bucket.
 */
export interface RateLimiter {
  /** Milliseconds until the next take is allowed (0: now). */
  delayMs(): number;
  /** Records `n` units used now. */
  take(n: number): void;
  /** Units per second; 0 means unlimited. */
  readonly rate: number;
}

/**
 * `rate` units per second (0: unlimited) with up to `burst` units saved while idle (default: one
 * second's worth), so catch-up starts at once and then settles at `rate`.
 */
export function createRateLimiter(rate: number, burst = rate, now: () => number = () => performance.now()): RateLimiter {
  let tokens = burst;
  let at = now();

  function refill(): void {
    const t = now();
    tokens = Math.min(burst, tokens + ((t - at) / 1000) * rate);
    at = t;
  }

  return {
    rate,
    delayMs() {
      if (rate <= 0) return 0;
      refill();
      return tokens >= 0 ? 0 : Math.ceil((-tokens / rate) * 1000);
    },
    take(n) {
      if (rate <= 0) return;
      refill();
      tokens -= n;
    },
  };
}
