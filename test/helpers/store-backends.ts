/**
 * The same behaviour test against both storage backends (issue 18): `testBackends(name, fn)`
 * registers `name [sqlite]` and `name [postgres]`, the PostgreSQL one skipped with a message
 * where the server is not installed (and failing under CI=true, as postgresSkip does).
 */
import { test, type TestContext, type TestOptions } from 'node:test';
import { postgresSkip } from './postgres.js';

export const STORE_BACKENDS = ['sqlite', 'postgres'] as const;
export type StoreBackend = (typeof STORE_BACKENDS)[number];

/** Registers `fn` once per backend. */
export function testBackends(name: string, fn: (t: TestContext, backend: StoreBackend) => Promise<void>, opts: TestOptions = {}): void {
  for (const backend of STORE_BACKENDS) {
    const skip = opts.skip || (backend === 'postgres' ? postgresSkip() : false);
    test(`${name} [${backend}]`, { ...opts, skip }, (t) => fn(t, backend));
  }
}
