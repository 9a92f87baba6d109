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

interface Window {
  start: number;
  failures: number;
}

export function createSignInLimiter(opts: SignInLimiterOptions = {}): SignInLimiter {
  const maxFailures = opts.maxFailures ?? 5;
  const windowMs = opts.windowMs ?? 60_000;
  const maxKeys = opts.maxKeys ?? 10_000;
  const now = opts.now ?? Date.now;
  // Insertion order is window-start order: the first entries are the oldest.
  const windows = new Map<string, Window>();

  const current = (key: string, t: number): Window | undefined => {
    const w = windows.get(key);
    if (w && t - w.start >= windowMs) {
      windows.delete(key);
      return undefined;
    }
    return w;
  };

  /** Forgets the oldest windows (expired ones are the oldest) until one more key fits. */
  function makeRoom(): void {
    for (const key of windows.keys()) {
      if (windows.size < maxKeys) return;
      windows.delete(key);
    }
  }

  return {
    attempt(keys) {
      const t = now();
      let wait = 0;
      for (const key of keys) {
        const w = current(key, t);
        if (w && w.failures >= maxFailures) wait = Math.max(wait, w.start + windowMs - t);
      }
      if (wait > 0) return wait;
      for (const key of keys) {
        const w = current(key, t);
        if (w) w.failures++;
        else {
          makeRoom();
          windows.set(key, { start: t, failures: 1 });
        }
      }
      return 0;
    },
    forgive(keys) {
      const t = now();
      for (const key of keys) {
        const w = current(key, t);
        if (w && w.failures > 0) w.failures--;
      }
    },
    size: () => windows.size,
  };
}
