/**
 * The one way a test skips for a missing outside service or data set (Mosquitto, ../shared/data).
 * On a developer's machine it skips with the reason; in CI (`CI=true`) a skip would hide a run
 * that CI promises, so it throws instead and the test file fails with the same reason.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** True when running under CI (`CI=true` or `CI=1`, as CI services set it). */
export function inCi(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.CI === 'true' || env.CI === '1';
}

/**
 * `reason` as a node:test `skip` value (false: run), except under CI, where a reason throws
 * `OSP_ERR_TEST_SERVICE_MISSING` so the missing service fails the run instead of skipping it.
 */
export function serviceSkip(reason: string | false, env: NodeJS.ProcessEnv = process.env): string | false {
  if (reason === false) return false;
  if (inCi(env)) throw Object.assign(new Error(`CI=true, so this test may not skip: ${reason}`), { code: 'OSP_ERR_TEST_SERVICE_MISSING' });
  return reason;
}

/** The shared data set: $OSPREY_DATA, else ../shared/data beside the repository. */
export function ospreyDataDir(env: NodeJS.ProcessEnv = process.env): string {
  const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
  return path.resolve(env.OSPREY_DATA ?? path.resolve(repoRoot, '../shared/data'));
}

/** The reason to skip a test that needs `sub` of the shared data set, or false when it is there. */
export function dataSkip(sub: string, env: NodeJS.ProcessEnv = process.env): string | false {
  const where = path.join(ospreyDataDir(env), sub);
  return serviceSkip(existsSync(where) ? false : `${where} not found (set OSPREY_DATA to the shared data folder); skipping`, env);
}
