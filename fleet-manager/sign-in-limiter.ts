import { createAttemptLimiter } from './attempt-limiter.js';

/**
 * How many sign-in failures a client IP or a username may make: at most `maxFailures` in a window
 * of `windowMs` (the window starts at its first failure), then every attempt is refused until the
 * window ends. In memory, bounded (`maxKeys`, oldest forgotten first) and without timers: expiry
 * is computed from the clock when a key is read, so nothing needs clearing at shutdown.
 */

export interface SignInLimiterOptions {
  /** Failures allowed per key and window (default 5). */
  maxFailures?: number;
  /** Window length (default 60 s). */
  windowMs?: number;
  /** Keys remembered at most (default 10 000); beyond it the oldest window is forgotten. */
  maxKeys?: number;
  now?: () => number;
}

export interface SignInLimiter {
  /**
   * Counts an attempt against every key before the password is checked (so parallel attempts
   * count too); returns the ms to wait when any key is over its limit (nothing is counted then),
   * or 0 when the attempt may go on.
   */
  attempt(keys: readonly string[]): number;
  /** The attempt succeeded: it does not count as a failure. */
  forgive(keys: readonly string[]): void;
  /** Keys remembered now (tests check the bound). */
  size(): number;
}

export function createSignInLimiter(opts: SignInLimiterOptions = {}): SignInLimiter {
  // The same bounded, timer-free failure windows that guard enrollment, counted before the check.
  const windows = createAttemptLimiter({ maxFailures: opts.maxFailures ?? 5, windowMs: opts.windowMs ?? 60_000, ...(opts.maxKeys !== undefined && { maxKeys: opts.maxKeys }), ...(opts.now && { now: opts.now }) });
  return {
    attempt(keys) {
      const wait = Math.max(0, ...keys.map((key) => windows.blockedFor(key)));
      if (wait > 0) return wait;
      for (const key of keys) windows.fail(key);
      return 0;
    },
    forgive(keys) {
      for (const key of keys) windows.forgive(key);
    },
    size: () => windows.size,
  };
}
