/**
 * A small tmpfs for full-disk tests (issue 13): mounted on a fresh temp dir, unmounted and removed
 * after the test. Mounting needs root; as another user it tries `sudo -n` (CI runners have it),
 * mounting with that user as the owner. Where it cannot mount, the test is skipped with the
 * reason — except under CI=true, where it fails: CI must run it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';

/**
 * One after-hook that runs the functions given to the returned `defer` last-first (node:test runs
 * after-hooks in the order they were added: a disk must be unmounted after what uses it closed).
 */
export function cleanupStack(t: TestContext): (fn: () => unknown) => void {
  const stack: (() => unknown)[] = [];
  t.after(async () => {
    for (const fn of stack.reverse()) await fn();
  });
  return (fn) => stack.push(fn);
}

/**
 * Mounts a tmpfs of `size` (e.g. `8m`); undefined when the test was skipped. `defer` receives the
 * unmount (default: its own after-hook).
 */
export async function mountTmpfs(t: TestContext, size: string, defer: (fn: () => unknown) => void = (fn) => t.after(fn)): Promise<string | undefined> {
  const dir = await mkdtemp(path.join(tmpdir(), 'osprey-tmpfs-'));
  const root = process.getuid?.() === 0;
  // As root: mount(8) itself; otherwise through sudo without a password prompt.
  const run = (args: string[]) => (root ? execFileSync(args[0]!, args.slice(1), { stdio: 'pipe' }) : execFileSync('sudo', ['-n', ...args], { stdio: 'pipe' }));
  const owner = root ? '' : `,uid=${process.getuid?.()},gid=${process.getgid?.()}`;
  try {
    run(['mount', '-t', 'tmpfs', '-o', `size=${size},mode=0755${owner}`, 'tmpfs', dir]);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    const why = `cannot mount a tmpfs (needs root): ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message).trim()}`;
    if (process.env.CI === 'true') throw new Error(why);
    t.skip(why);
    return undefined;
  }
  defer(async () => {
    try {
      run(['umount', dir]);
    } catch {
      // Still busy (something the test left open): detach now, freed once it is closed.
      run(['umount', '-l', dir]);
    }
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}
