/**
 * Benchmark helpers for processes under measurement (edge agent, fleet manager, simulated
 * edges): fork with IPC, wait for `ready`, ask for stats, close, and never leave one running.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

export interface BenchChild<Ready> {
  readonly process: ChildProcess;
  /** The child's `ready` message. */
  readonly ready: Ready;
  /** Sends `{ type }` (plus fields) and resolves with the next message of the same type. */
  request<T>(type: string, fields?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
  /** Waits for the next message of `type` (no request sent). */
  next<T>(type: string, timeoutMs?: number): Promise<T>;
  /** Asks the child to close and waits for it to exit (killed after `timeoutMs`). */
  close(timeoutMs?: number): Promise<void>;
}

export interface StartOptions {
  /** Node flags for the child (e.g. `--cpu-prof`). */
  execArgv?: string[];
  env?: NodeJS.ProcessEnv;
  /** Longest wait for `ready` (default 60 s: a model may be built or loaded first). */
  readyTimeoutMs?: number;
}

/** A sibling module of this file as a path, for fork(). */
export function benchScript(name: string): string {
  return fileURLToPath(new URL(name, import.meta.url));
}

/**
 * Forks `script` with IPC and resolves once it sends `{ type: 'ready' }`; rejects with its
 * `{ type: 'error', message }` or its exit. stdout is ignored, stderr is passed through.
 */
export async function startChild<Ready>(script: string, args: string[], opts: StartOptions = {}): Promise<BenchChild<Ready>> {
  const child = fork(script, args, {
    execArgv: opts.execArgv ?? [],
    env: opts.env ?? process.env,
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  interface Waiter {
    type: string;
    resolve: (msg: unknown) => void;
    reject: (err: Error) => void;
    timer: NodeJS.Timeout;
  }
  const waiters: Waiter[] = [];
  const settle = (w: Waiter) => {
    clearTimeout(w.timer);
    waiters.splice(waiters.indexOf(w), 1);
    return w;
  };
  child.on('message', (msg: { type?: string; message?: string }) => {
    if (msg.type === 'error') {
      // The child reports a failure: whatever was being waited for will not come.
      const err = new Error(`${script}: ${msg.message ?? 'failed'}`);
      for (const w of [...waiters]) settle(w).reject(err);
      return;
    }
    const w = waiters.find((x) => x.type === msg.type);
    if (w) settle(w).resolve(msg);
  });
  let exited = false;
  const exit = once(child, 'exit').then(() => {
    exited = true;
    for (const w of [...waiters]) settle(w).reject(new Error(`${script} exited (code ${child.exitCode}) before sending ${w.type}`));
  });

  function next<T>(type: string, timeoutMs = 30_000): Promise<T> {
    if (exited) return Promise.reject(new Error(`${script} has exited`));
    return new Promise<T>((resolve, reject) => {
      const w: Waiter = {
        type,
        resolve: resolve as (msg: unknown) => void,
        reject,
        timer: setTimeout(() => settle(w).reject(new Error(`${script}: no ${type} message in ${timeoutMs} ms`)), timeoutMs),
      };
      waiters.push(w);
    });
  }

  let ready: Ready;
  try {
    ready = await next<Ready>('ready', opts.readyTimeoutMs ?? 60_000);
  } catch (err) {
    if (!exited) child.kill('SIGKILL');
    throw err;
  }

  return {
    process: child,
    ready,
    next,
    request<T>(type: string, fields: Record<string, unknown> = {}, timeoutMs?: number) {
      const p = next<T>(type, timeoutMs);
      child.send({ type, ...fields });
      return p;
    },
    async close(timeoutMs = 30_000) {
      if (exited) return;
      child.send({ type: 'close' });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      await exit;
      clearTimeout(timer);
    },
  };
}
