/**
 * onnxruntime's optimised graph of a model, built once per model and machine and kept on disk.
 *
 * Creating a session with graphOptimizationLevel 'all' rewrites the graph (NCHWc layouts, fused
 * nodes), copying every weight a few times on the way. The copies are freed, but glibc keeps the
 * memory in the process: ResNet-18 (47 MB of weights) leaves a session at 220 MB of RSS and a
 * 232 MB peak. The same graph, saved by onnxruntime (`optimizedModelFilePath`) and loaded with
 * optimisation off, runs as fast and costs 133 MB, peak included, and its session is created in
 * 15 ms instead of 230 ms (docs/BENCHMARKS.md, Memory levers). So the optimisation runs in a
 * short-lived child process (optimize-model-child.ts), whose memory goes back to the OS when it
 * exits, and the agent loads what it wrote.
 *
 * The saved graph holds layouts chosen for this CPU and onnxruntime build, so an entry is keyed
 * by the model's sha256, the onnxruntime version, the architecture and the CPU's feature flags,
 * and carries its own sha256 (checked at every load, so a damaged entry is rebuilt, never run).
 * Anything that goes wrong here only costs the saving: resolve() answers undefined and the model
 * loads as before.
 */
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as ort from 'onnxruntime-node';
import type { Logger } from 'pino';
import { sha256File } from './package-reader.js';

export interface OptimizedModelCacheOptions {
  /** Where entries live (created on first use). */
  dir: string;
  /** Models smaller than this load as they are (default 4 MiB): little memory to save, a child process to pay. */
  minBytes?: number;
  /** Entries kept; the least recently used go first (default 8). */
  keep?: number;
  /** Longest the child may take to optimise one model before it is killed (default 120 s). */
  timeoutMs?: number;
  logger?: Logger;
}

export interface OptimizedModelCache {
  readonly dir: string;
  /** Models smaller than this are not optimised ahead (resolve() answers undefined for them). */
  readonly minBytes: number;
  /**
   * The optimised graph of a verified model (`file`, whose content has `sha256`, `size` bytes):
   * the cached file when its own sha256 still matches, else built now in a child process.
   * Undefined when the model is below minBytes or cannot be optimised; the caller then loads
   * `file` as it is.
   */
  resolve(file: string, sha256: string, size: number): Promise<string | undefined>;
  /** Drops the entry of a model (onnxruntime refused its file); the next resolve() rebuilds it. */
  discard(sha256: string): Promise<void>;
}

interface EntryInfo {
  source: string;
  sha256: string;
  environment: string;
  bytes: number;
}

const CHILD = fileURLToPath(new URL('./optimize-model-child.js', import.meta.url));
const STDERR_LIMIT = 2048;

/**
 * What the saved graph depends on besides the model: onnxruntime's build, the architecture and
 * the instruction sets it chose kernels and block sizes for (Linux: the CPU's feature flags).
 */
function environmentKey(): string {
  let cpu = os.cpus()[0]?.model ?? 'unknown cpu';
  try {
    const flags = /^(?:flags|Features)\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (flags) cpu = flags[1]!;
  } catch {
    // Not Linux: the CPU's model name stands in for its flags.
  }
  const text = `onnxruntime ${ort.env.versions.common}|${process.platform}-${process.arch}|${cpu}`;
  return createHash('sha256').update(text).digest('hex').slice(0, 16);
}

/** Creates a cache over `opts.dir`; nothing touches the disk until the first resolve(). */
export function createOptimizedModelCache(opts: OptimizedModelCacheOptions): OptimizedModelCache {
  const dir = opts.dir;
  const minBytes = opts.minBytes ?? 4 * 1024 * 1024;
  const keep = Math.max(1, opts.keep ?? 8);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const log = opts.logger;
  const environment = environmentKey();
  // One build per entry at a time, however many agents of this process ask (the simulator).
  const building = new Map<string, Promise<string | undefined>>();

  const base = (sha256: string) => join(dir, `${sha256.slice(0, 32)}-${environment}`);

  async function cached(sha256: string): Promise<string | undefined> {
    const file = `${base(sha256)}.onnx`;
    let info: EntryInfo;
    try {
      info = JSON.parse(await readFile(`${base(sha256)}.json`, 'utf8')) as EntryInfo;
    } catch {
      return undefined;
    }
    if (info.source !== sha256 || info.environment !== environment) return undefined;
    let actual: string;
    try {
      actual = await sha256File(file);
    } catch {
      return undefined;
    }
    if (actual !== info.sha256) {
      log?.warn({ file, expected: info.sha256, actual }, 'optimised model damaged; rebuilding it');
      return undefined;
    }
    const now = new Date();
    await utimes(file, now, now).catch(() => undefined); // most recently used: pruned last
    return file;
  }

  /** Runs the child; resolves with its one-line reason on failure, undefined on success. */
  function optimise(source: string, sha256: string, out: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      const child = spawn(process.execPath, [CHILD, source, sha256, out], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (text: string) => {
        if (stderr.length < STDERR_LIMIT) stderr += text;
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        resolve(`cannot start node: ${err.message}`);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) resolve(undefined);
        else resolve(stderr.trim().split('\n')[0] || (signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs} ms?)` : ''}` : `exit code ${code}`));
      });
    });
  }

  async function build(source: string, sha256: string): Promise<string | undefined> {
    const file = `${base(sha256)}.onnx`;
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    const t0 = performance.now();
    try {
      await mkdir(dir, { recursive: true });
      const failure = await optimise(source, sha256, tmp);
      if (failure !== undefined) {
        log?.warn({ sha256, reason: failure }, 'model not optimised ahead; onnxruntime optimises it in the agent');
        return undefined;
      }
      const info: EntryInfo = { source: sha256, sha256: await sha256File(tmp), environment, bytes: (await stat(tmp)).size };
      await rename(tmp, file);
      // The sidecar last: an entry without it is never used, whatever stopped us in between.
      const sidecarTmp = `${base(sha256)}.json.${process.pid}.tmp`;
      await writeFile(sidecarTmp, `${JSON.stringify(info)}\n`);
      await rename(sidecarTmp, `${base(sha256)}.json`);
      log?.info({ sha256, bytes: info.bytes, ms: Math.round(performance.now() - t0) }, 'model optimised ahead');
      await prune(file);
      return file;
    } catch (err) {
      log?.warn({ err, sha256 }, 'optimised model not saved; onnxruntime optimises it in the agent');
      return undefined;
    } finally {
      await rm(tmp, { force: true }).catch(() => undefined);
    }
  }

  /** Keeps the `keep` most recently used entries (never `current`) and drops stale temporaries. */
  async function prune(current: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    const entries: { file: string; mtimeMs: number }[] = [];
    for (const name of names) {
      const file = join(dir, name);
      const st = await stat(file).catch(() => undefined);
      if (!st) continue;
      if (name.endsWith('.tmp')) {
        // Left by a process that died mid-build (an hour is far longer than any build).
        if (Date.now() - st.mtimeMs > 3_600_000) await rm(file, { force: true });
      } else if (name.endsWith('.onnx') && file !== current) entries.push({ file, mtimeMs: st.mtimeMs });
    }
    entries.sort((a, b) => b.mtimeMs - a.mtimeMs);
    for (const e of entries.slice(keep - 1)) {
      await rm(e.file.replace(/\.onnx$/, '.json'), { force: true });
      await rm(e.file, { force: true });
    }
  }

  return {
    dir,
    minBytes,
    async resolve(file, sha256, size) {
      if (size < minBytes) return undefined;
      const hit = await cached(sha256);
      if (hit) return hit;
      const key = base(sha256);
      let pending = building.get(key);
      if (!pending) {
        pending = build(file, sha256).finally(() => building.delete(key));
        building.set(key, pending);
      }
      return pending;
    },
    async discard(sha256) {
      await rm(`${base(sha256)}.json`, { force: true });
      await rm(`${base(sha256)}.onnx`, { force: true });
    },
  };
}
