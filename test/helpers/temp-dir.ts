/**
 * A temp dir for one test, removed after it. node:test runs a test's `after` hooks in the order
 * they were registered and stops at the first that throws, so a dir made before an agent is
 * removed while that agent may still be writing, and a failed removal would skip the agent's
 * close (leaving its timers and sockets to hang the file). The removal therefore never throws:
 * what it could not remove is removed again once every test of the file has finished.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, type TestContext } from 'node:test';

const leftovers = new Set<string>();
let fileHook = false;

export async function makeTempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  if (!fileHook) {
    fileHook = true;
    after(async () => {
      for (const d of leftovers) await rm(d, { recursive: true, force: true, maxRetries: 5 });
    });
  }
  t.after(async () => {
    try {
      await rm(dir, { recursive: true, force: true, maxRetries: 2 });
    } catch {
      leftovers.add(dir);
    }
  });
  return dir;
}
