/**
 * Runs an uploaded model once, in a child process bounded in time and memory
 * (check-model-child.ts), before the registry accepts it: a `model.onnx` that is not a model
 * (random bytes with a matching sha256), does not take the manifest's input, or does not compute,
 * is refused at upload instead of at every edge.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { OspreyError, type ErrorCode } from '../protocol/errors.js';
import type { Manifest } from '../protocol/manifest.js';

const CHILD = fileURLToPath(new URL('./check-model-child.js', import.meta.url));
const STDERR_LIMIT = 2048;
const UPLOAD_CODES: ReadonlySet<string> = new Set<ErrorCode>(['OSP_ERR_MODEL_LOAD', 'OSP_ERR_MODEL_INPUT', 'OSP_ERR_MODEL_OUTPUT', 'OSP_ERR_MODEL_MANIFEST', 'OSP_ERR_IMAGE_DECODE', 'OSP_ERR_IMAGE_EMPTY', 'OSP_ERR_IMAGE_TOO_LARGE']);

export interface ModelCheckOptions {
  /** The file holding the model's bytes, and where in it (an archive entry, or a whole file). */
  file: string;
  start: number;
  size: number;
  manifest: Manifest;
  /** Longest the child may take (default 60 s); then it is killed and the model refused. */
  timeoutMs?: number;
  /** Largest resident memory of the child (default 4 GiB); above it the child is killed and the model refused. */
  maxRssBytes?: number;
}

/** Resident set of a process in bytes (Linux /proc), or undefined where it cannot be read. */
export async function rssOf(pid: number): Promise<number | undefined> {
  try {
    const statm = await readFile(`/proc/${pid}/statm`, 'utf8');
    return Number(statm.split(' ')[1]) * 4096;
  } catch {
    return undefined;
  }
}

/** Resolves when the model runs; rejects with the child's OspreyError code (OSP_ERR_MODEL_LOAD, _INPUT, _OUTPUT, …). */
export async function checkModelInChild(opts: ModelCheckOptions): Promise<void> {
  await runBoundedChild({ script: CHILD, args: [opts.file, String(opts.start), String(opts.size)], stdin: JSON.stringify(opts.manifest), what: opts.manifest.model.file, captureStdout: false, ...opts });
}

export interface BoundedChildOptions {
  /** The compiled script node runs, and its arguments. */
  script: string;
  args: string[];
  /** Written to the child's stdin, then closed. */
  stdin: string;
  /** Names the model in errors (`model.onnx does not run: …`). */
  what: string;
  timeoutMs?: number;
  maxRssBytes?: number;
  /** Keep the child's stdout (the answer); false: ignored. Default true. */
  captureStdout?: boolean;
  /** Largest stdout kept (default 64 KiB); more is a refusal. */
  maxStdoutBytes?: number;
}

/**
 * Runs a script that loads a model in a child process bounded in time and memory; resolves
 * with its stdout when it exits 0, else rejects with the child's `CODE message` line (an
 * upload fault, 422) or OSP_ERR_MODEL_LOAD.
 */
export function runBoundedChild(opts: BoundedChildOptions): Promise<string> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const maxRss = opts.maxRssBytes ?? 4 * 1024 ** 3;
  const maxStdout = opts.maxStdoutBytes ?? 64 * 1024;
  const file = opts.what;
  return new Promise((resolve, reject) => {
    const argv = [opts.script, ...opts.args];
    const child = opts.captureStdout === false ? spawn(process.execPath, argv, { stdio: ['pipe', 'ignore', 'pipe'] }) : spawn(process.execPath, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    let killedFor: string | undefined;
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      if (stderr.length < STDERR_LIMIT) stderr += text;
    });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (text: string) => {
      stdout += text;
      if (stdout.length > maxStdout) kill(`wrote more than ${maxStdout} bytes of output`);
    });
    child.stdin.on('error', () => undefined); // a child that died early: its exit says why
    child.stdin.end(opts.stdin);
    const kill = (why: string) => {
      killedFor ??= why;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(`did not finish within ${timeoutMs} ms`), timeoutMs);
    const watch = setInterval(() => {
      if (child.pid === undefined) return;
      void rssOf(child.pid).then((rss) => {
        if (rss !== undefined && rss > maxRss) kill(`used more than ${maxRss} bytes of memory`);
      });
    }, 100);
    const stop = () => {
      clearTimeout(timer);
      clearInterval(watch);
    };
    child.on('error', (err) => {
      stop();
      reject(new OspreyError('OSP_ERR_INTERNAL', `cannot start the model check: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      stop();
      if (killedFor) return reject(new OspreyError('OSP_ERR_MODEL_LOAD', `${file}: the model check ${killedFor}; refused`));
      if (code === 0) return resolve(stdout);
      const line = stderr.trim().split('\n')[0] ?? '';
      const m = /^(OSP_ERR_[A-Z0-9_]+) (.*)$/.exec(line);
      // The model's fault whatever the stage (an inference error included): a 422 for the uploader.
      const reported = m && UPLOAD_CODES.has(m[1]!) ? (m[1] as ErrorCode) : undefined;
      const reason = m ? m[2]! : line || (signal ? `killed by ${signal}` : `exit code ${code}`);
      reject(new OspreyError(reported ?? 'OSP_ERR_MODEL_LOAD', `${file} does not run: ${reason}`));
    });
  });
}
