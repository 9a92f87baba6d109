/**
 * Runs the real `osprey` command as a child process (as an operator would) and lets a test
 * await its JSON log lines instead of sleeping.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const execFileAsync = promisify(execFile);

export const OSPREY_BIN = fileURLToPath(new URL('../../../bin/osprey.js', import.meta.url));

export interface OspreyProcess {
  child: ChildProcess;
  /** Every stdout line parsed as JSON (non-JSON lines are kept as { text }). */
  lines: Record<string, unknown>[];
  stderr: string[];
  /** Resolves with the first log line (past or future) matching the predicate. */
  waitForLine(match: (line: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

export function startOsprey(args: string[], env: NodeJS.ProcessEnv = {}): OspreyProcess {
  const child = spawn(process.execPath, [OSPREY_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  const waiters: { match: (l: Record<string, unknown>) => boolean; resolve: (l: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (text) => {
    let line: Record<string, unknown>;
    try {
      line = JSON.parse(text) as Record<string, unknown>;
    } catch {
      line = { text };
    }
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  createInterface({ input: child.stderr! }).on('line', (text) => stderr.push(text));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    lines,
    stderr,
    exited,
    waitForLine(match, timeoutMs = 30_000) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(new Error(`no matching log line within ${timeoutMs} ms; stderr: ${stderr.slice(-5).join(' | ')}`));
        }, timeoutMs);
        const early = exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`process exited with ${code} before the expected log line; stderr: ${stderr.slice(-5).join(' | ')}`));
        });
        void early;
        waiters.push({
          match,
          resolve: (l) => {
            clearTimeout(timer);
            resolve(l);
          },
        });
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** What a finished `osprey` command printed, and its exit code. */
export interface OspreyRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `osprey ARGS...` to its end (a non-zero exit resolves too, with its code). */
export async function runOsprey(...args: string[]): Promise<OspreyRun> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [OSPREY_BIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
