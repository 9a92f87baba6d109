/**
 * Calls into a worker thread: each call of a proxied object's method is one message (object
 * name, method, arguments) and one reply, values carried by structured clone. Errors cross as
 * their name, message, `code` and stack, so callers still branch on `code`. A worker that dies
 * fails every call in flight and every later one instead of leaving them waiting. The storage
 * thread (storage-thread.ts, storage-worker.ts) is built on it.
 */
import { once } from 'node:events';
import { parentPort, Worker, workerData } from 'node:worker_threads';
import { pino, type Logger } from 'pino';
import { ErrorCodes, OspreyError, type ErrorCode } from '../protocol/errors.js';

/** An error as it crosses the thread boundary. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/** Main → worker. */
type ToWorker = { t: 'call'; id: number; o: string; m: string; a: unknown[] } | { t: 'close' };
/** Worker → main. */
type FromWorker =
  | { t: 'ok'; id: number; v: unknown }
  | { t: 'err'; id: number; e: WireError }
  | { t: 'log'; line: string }
  | { t: 'ready' }
  | { t: 'failed'; e: WireError };

export function toWireError(err: unknown): WireError {
  if (!(err instanceof Error)) return { name: 'Error', message: String(err) };
  const code = (err as { code?: unknown }).code;
  return { name: err.name, message: err.message, ...(typeof code === 'string' && { code }), ...(err.stack !== undefined && { stack: err.stack }) };
}

/** The error again on this side: an OspreyError with its code, or an Error carrying the original name and code. */
export function fromWireError(w: WireError): Error {
  const err = w.name === 'OspreyError' && w.code !== undefined && w.code in ErrorCodes ? new OspreyError(w.code as ErrorCode, w.message) : Object.assign(new Error(w.message), w.code !== undefined ? { code: w.code } : {});
  if (w.name !== 'OspreyError') err.name = w.name;
  // The worker's stack says where it failed; this side's would only say "in the message handler".
  if (w.stack !== undefined) err.stack = w.stack;
  return err;
}

/** A worker serving objects by name. */
export interface RpcWorker {
  /** An object whose every method call is a call into the worker (`then` and symbols excepted). */
  proxy<T extends object>(name: string): T;
  /** Calls sent and not yet answered. */
  inFlight(): number;
  /**
   * Waits for the calls in flight (and the calls their callers make next, until a turn passes
   * with none), then asks the worker to close its objects and waits for it to end. Idempotent.
   */
  close(): Promise<void>;
}

export interface RpcWorkerOptions {
  /** The worker's module; it calls serveRpc. */
  url: URL;
  /** Handed to the worker's open function (structured clone). */
  data: unknown;
  /** Where the worker's log lines go, re-logged at their level with their own fields. */
  logger: Logger;
  /** The component of the lines about the worker itself (its death). */
  component: string;
  /** What the calls are to, for error messages ("storage thread"). */
  what: string;
  /** Code of the error that fails calls when the worker dies. */
  deadCode: ErrorCode;
}

/**
 * Starts the worker and waits until it has opened its objects; rejects with its open error (code
 * kept) when it cannot.
 */
export async function startRpcWorker(opts: RpcWorkerOptions): Promise<RpcWorker> {
  const { logger, what } = opts;
  const own = logger.child({ component: opts.component });
  const worker = new Worker(opts.url, { workerData: { data: opts.data, level: logger.level } });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; what: string }>();
  let nextId = 1;
  // Set once calls can no longer be answered: later calls reject with it at once.
  let refused: Error | undefined;
  let closing: Promise<void> | undefined;
  let drained: (() => void) | undefined;

  const failAll = (err: Error) => {
    refused ??= err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
    drained?.();
  };
  const settled = (id: number) => {
    const p = pending.get(id);
    pending.delete(id);
    if (pending.size === 0) drained?.();
    return p;
  };

  let onReady: ((err?: Error) => void) | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    onReady = (err) => (err ? reject(err) : resolve());
  });
  worker.on('message', (msg: FromWorker) => {
    switch (msg.t) {
      case 'ok':
        settled(msg.id)?.resolve(msg.v);
        break;
      case 'err':
        settled(msg.id)?.reject(fromWireError(msg.e));
        break;
      case 'log':
        relog(logger, msg.line);
        break;
      case 'ready':
        onReady?.();
        break;
      case 'failed': {
        // The open error is the answer; the worker's exit that follows is no news.
        const err = fromWireError(msg.e);
        refused ??= err;
        onReady?.(err);
        break;
      }
    }
  });
  worker.on('error', (err) => {
    // An uncaught exception in the worker; 'exit' follows.
    own.error({ err }, `${what} failed`);
    failAll(new OspreyError(opts.deadCode, `${what} failed: ${err.message}`, { cause: err }));
    onReady?.(err);
  });
  const exited = once(worker, 'exit').then(([code]) => {
    if (!closing || pending.size > 0) {
      const err = new OspreyError(opts.deadCode, `${what} exited (code ${code}); the call was not answered`);
      if (!refused) own.error({ code, inFlight: pending.size }, `${what} exited unexpectedly`);
      failAll(err);
      onReady?.(err);
    }
  });
  try {
    await ready;
  } catch (err) {
    await exited;
    throw err;
  }

  function call(o: string, m: string, a: unknown[]): Promise<unknown> {
    if (refused) return Promise.reject(refused);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, what: `${o}.${m}` });
      worker.postMessage({ t: 'call', id, o, m, a } satisfies ToWorker);
    });
  }

  return {
    proxy<T extends object>(name: string): T {
      const methods = new Map<string, (...args: unknown[]) => Promise<unknown>>();
      return new Proxy({} as T, {
        get(_target, prop) {
          // Not a thenable (awaiting the proxy must not call into the worker), no symbols.
          if (typeof prop !== 'string' || prop === 'then') return undefined;
          let fn = methods.get(prop);
          if (!fn) {
            fn = (...args: unknown[]) => call(name, prop, args);
            methods.set(prop, fn);
          }
          return fn;
        },
      });
    },
    inFlight: () => pending.size,
    close() {
      closing ??= (async () => {
        // Bounded: a call that is never answered, or callers that never stop calling, must not
        // hold the fleet's shutdown; past the limit they are refused and the thread is ended.
        const timers: NodeJS.Timeout[] = [];
        const after = <T>(value: T) => new Promise<T>((resolve) => timers.push(setTimeout(() => resolve(value), CLOSE_DRAIN_MS)));
        const drain = (async () => {
          for (;;) {
            if (pending.size > 0) await new Promise<void>((resolve) => (drained = resolve));
            drained = undefined;
            // A caller's chain goes on after an answer (its next call comes within the same turn, a
            // desired-state refresh reads then writes): one more turn, and look again.
            await new Promise((resolve) => setImmediate(resolve));
            if (pending.size === 0 || refused) break;
          }
        })();
        const outcome = await Promise.race([drain.then(() => 'drained' as const), after('late' as const)]);
        if (outcome === 'late') {
          own.error({ pending: [...new Set([...pending.values()].map((p) => p.what))].slice(0, 10), inFlight: pending.size }, `${what}: calls still in flight ${CLOSE_DRAIN_MS} ms after close; refusing them`);
          failAll(new OspreyError('OSP_ERR_SHUTTING_DOWN', `${what} is closed`));
        }
        refused ??= new OspreyError('OSP_ERR_SHUTTING_DOWN', `${what} is closed`);
        worker.postMessage({ t: 'close' } satisfies ToWorker);
        const ended = await Promise.race([exited.then(() => 'ended' as const), after('stuck' as const)]);
        for (const t of timers) clearTimeout(t);
        if (ended === 'stuck') {
          own.error(`${what} did not end ${CLOSE_DRAIN_MS} ms after being told to close; terminated`);
          await worker.terminate();
          await exited;
        }
      })();
      return closing;
    },
  };
}

/** How long close waits for calls in flight, and then for the thread to end. */
const CLOSE_DRAIN_MS = 10_000;

/** What a worker's open function returns: the objects it serves by name, and their close. */
export interface RpcServed {
  objects: Record<string, object>;
  close(): Promise<void>;
}

/**
 * The worker's side: opens its objects with the data given to startRpcWorker and a logger whose
 * lines go to the main thread's logger, then answers calls until told to close.
 */
export async function serveRpc(open: (data: unknown, logger: Logger) => Promise<RpcServed> | RpcServed): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('serveRpc runs in a worker thread');
  const post = (msg: FromWorker) => port.postMessage(msg);
  const { data, level } = workerData as { data: unknown; level: string };
  const logger = pino({ level, base: undefined }, { write: (line: string) => post({ t: 'log', line }) });
  let served: RpcServed;
  try {
    served = await open(data, logger);
  } catch (err) {
    post({ t: 'failed', e: toWireError(err) });
    port.close();
    return;
  }
  const { objects } = served;
  port.on('message', (msg: ToWorker) => {
    if (msg.t === 'close') {
      // Closing the port lets the thread end once the objects are closed.
      void served.close().then(
        () => port.close(),
        (err: unknown) => {
          logger.error({ err }, 'close failed');
          port.close();
        },
      );
      return;
    }
    const { id, o, m, a } = msg;
    let out: unknown;
    try {
      const target = objects[o] as Record<string, unknown> | undefined;
      const fn = target?.[m];
      if (typeof fn !== 'function') throw new OspreyError('OSP_ERR_INTERNAL', `no method ${o}.${m} in the worker`);
      out = (fn as (...args: unknown[]) => unknown)(...a.map(asBuffer));
    } catch (err) {
      post({ t: 'err', id, e: toWireError(err) });
      return;
    }
    Promise.resolve(out).then(
      (v) => post({ t: 'ok', id, v }),
      (err: unknown) => post({ t: 'err', id, e: toWireError(err) }),
    );
  });
  post({ t: 'ready' });
}

/** Buffers arrive as plain Uint8Arrays: made Buffers again (a view, no copy), as the objects expect. */
function asBuffer(v: unknown): unknown {
  return v instanceof Uint8Array && !Buffer.isBuffer(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : v;
}

/** A worker's pino line logged again here at its level, with its fields. */
function relog(logger: Logger, line: string): void {
  let rec: { level?: number; msg?: string; time?: number } & Record<string, unknown>;
  try {
    rec = JSON.parse(line) as typeof rec;
  } catch {
    logger.warn({ line }, 'unreadable log line from a worker');
    return;
  }
  const { level = 30, msg = '', time: _time, ...fields } = rec;
  const name = (logger.levels.labels[level] ?? 'info') as 'info';
  logger[name](fields, msg);
}
