/**
 * A promise raced against a timer that is always cleared, whichever settles first. The one
 * implementation of "wait at most N ms" for every part of Osprey.
 */

/**
 * Resolves as `p` does, or with `onTimeout()` once `ms` have passed (rejects if it throws). The
 * timer never outlives the race, so it keeps no process alive and fires nothing late.
 */
export function withTimeout<T, F>(p: Promise<T>, ms: number, onTimeout: () => F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<F>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (err) {
        reject(err);
      }
    }, ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
