/**
 * Failed attempts per client address in a fixed window, in bounded memory: the guard against
 * guessing secrets (enrollment tokens) over HTTP. Only failures count, so a provisioning host
 * that enrolls a whole line from one address is never slowed; an address with `maxFailures`
 * failures in the current window is refused until the window ends. At most `maxKeys` addresses
 * are tracked; when full, the oldest entry goes (an attacker with that many addresses gains a
 * few more guesses at 2^-256 each).
 */
export interface AttemptLimiterOptions {
  maxFailures: number;
  windowMs: number;
  /** Addresses tracked at once (default 10 000). */
  maxKeys?: number;
  now?: () => number;
}

export interface AttemptLimiter {
  /** Milliseconds until `key` may try again; 0: now. */
  blockedFor(key: string): number;
  /** Counts a failed attempt of `key`. */
  fail(key: string): void;
  /** Takes back one counted attempt of `key` (it turned out not to be a failure). */
  forgive(key: string): void;
  /** Addresses tracked now (tests). */
  readonly size: number;
}

export function createAttemptLimiter(opts: AttemptLimiterOptions): AttemptLimiter {
  const now = opts.now ?? Date.now;
  const maxKeys = opts.maxKeys ?? 10_000;
  const entries = new Map<string, { start: number; failures: number }>();

  function current(key: string): { start: number; failures: number } | undefined {
    const e = entries.get(key);
    if (e && now() - e.start >= opts.windowMs) {
      entries.delete(key);
      return undefined;
    }
    return e;
  }

  return {
    blockedFor(key) {
      const e = current(key);
      return e && e.failures >= opts.maxFailures ? Math.max(1, e.start + opts.windowMs - now()) : 0;
    },
    fail(key) {
      const e = current(key);
      if (e) {
        e.failures++;
        return;
      }
      // Map order is insertion order: the first key is the oldest window.
      if (entries.size >= maxKeys) entries.delete(entries.keys().next().value!);
      entries.set(key, { start: now(), failures: 1 });
    },
    forgive(key) {
      const e = current(key);
      if (e && e.failures > 0) e.failures--;
    },
    get size() {
      return entries.size;
    },
  };
}
