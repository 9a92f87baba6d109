/**
 * The hot folder: camera software drops image files into a directory; each complete file is
 * inspected exactly once and then moved to `done/` or `failed/`.
 *
 * Completeness: a file is taken when its size and mtime are unchanged across two looks at least
 * `settleMs` apart. Writers that can should write `.name.jpg` or `name.jpg.tmp` and rename, which
 * is atomic; dot files and temp suffixes are never taken.
 * Discovery: fs.watch for promptness, plus a start-up scan and a periodic rescan because fs.watch
 * misses events on network and some virtual filesystems.
 */
import { watch, type FSWatcher } from 'node:fs';
import { link, mkdir, open, readdir, rename, stat, unlink, access } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { OspreyError, isOspreyError, oneLine } from '../protocol/errors.js';
import type { InspectOutcome, Pipeline } from './pipeline.js';

export interface HotFolderOptions {
  dir: string;
  pipeline: Pipeline;
  /** Camera recorded for files from this folder. */
  camera: string;
  settleMs: number;
  rescanMs: number;
  /** Files of this folder in the pipeline at once; the rest of the queue stays free for HTTP. */
  inFlight: number;
  /** Files larger than this are failed without being read. */
  maxFileBytes: number;
  logger: Logger;
  /** Failures the pipeline never saw (unreadable, oversize file). Must not throw. */
  onFailure?: (err: OspreyError, file: string) => void;
  /** Called after each file is moved (tests await it; no polling needed). Must not throw. */
  onFile?: (event: HotFolderEvent) => void;
}

export interface HotFolderEvent {
  file: string;
  outcome: 'done' | 'failed';
  movedTo: string | null;
  seq?: number;
  error?: { code: string; message: string };
}

export interface HotFolder {
  start(): Promise<void>;
  /** Tells the folder that the pipeline has room again. */
  poke(): void;
  /** Files seen but not yet moved. */
  readonly backlog: number;
  /** Stops taking files and waits for those already in the pipeline to be moved. */
  close(): Promise<void>;
}

/** Names a writer is still producing (or editor droppings): never taken. */
const TEMP_NAME = /^[.~]|\.(tmp|temp|part|partial|crdownload|filepart|swp|download)$|~$/i;

interface Seen {
  size: number;
  mtimeMs: number;
  observedAt: number;
}

/** Moves `src` into `destDir` under its name, or `stem-N.ext` if taken; never overwrites. */
async function moveNoClobber(src: string, destDir: string): Promise<string> {
  const name = path.basename(src);
  const ext = path.extname(name);
  const stem = name.slice(0, name.length - ext.length);
  for (let n = 0; n < 10_000; n++) {
    const dest = path.join(destDir, n === 0 ? name : `${stem}-${n}${ext}`);
    try {
      // link() fails with EEXIST instead of replacing, which rename() would do silently.
      await link(src, dest);
      await unlink(src);
      return dest;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') continue;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'ENOSYS') throw err;
      // Filesystems without hard links: check, then rename (racy only against other writers of done/).
      const exists = await access(dest).then(
        () => true,
        () => false,
      );
      if (exists) continue;
      await rename(src, dest);
      return dest;
    }
  }
  throw new Error(`no free name for ${name} in ${destDir}`);
}

/**
 * Reads a whole file of at most `maxBytes`, or returns null when it is larger. One open, a read
 * (two when the file grew since `expectedBytes` was seen) and a close: no separate stat, and a
 * file growing past the limit while being read is caught, not read whole.
 */
export async function readCapped(file: string, expectedBytes: number, maxBytes: number): Promise<Buffer | null> {
  const fh = await open(file, 'r');
  try {
    // One byte more than allowed: reading it proves the file is too large.
    let buf = Buffer.allocUnsafe(Math.min(expectedBytes, maxBytes) + 1);
    let total = 0;
    for (;;) {
      if (total === buf.length) {
        if (total > maxBytes) return null;
        const bigger = Buffer.allocUnsafe(Math.min(buf.length * 2, maxBytes + 1));
        buf.copy(bigger, 0, 0, total);
        buf = bigger;
      }
      const { bytesRead } = await fh.read(buf, total, buf.length - total, total);
      if (bytesRead === 0) break;
      total += bytesRead;
      // A short read of a regular file is its end (and total ≤ maxBytes: the buffer holds at most one byte more).
      if (total < buf.length) break;
    }
    return buf.subarray(0, total);
  } finally {
    await fh.close();
  }
}

/** Creates a hot folder over `dir` (created if missing, with `done/` and `failed/`). */
export function createHotFolder(opts: HotFolderOptions): HotFolder {
  const log = opts.logger;
  const doneDir = path.join(opts.dir, 'done');
  const failedDir = path.join(opts.dir, 'failed');
  const seen = new Map<string, Seen>();
  const ready: string[] = [];
  // Settled files waiting for the pipeline, with the size the scan saw (the read's first guess).
  const readySize = new Map<string, number>();
  const claimed = new Map<string, Promise<void>>();
  // Files we could not move away: never inspected again by this process.
  const stuck = new Set<string>();
  let watcher: FSWatcher | undefined;
  let rescanTimer: NodeJS.Timeout | undefined;
  let recheckTimer: NodeJS.Timeout | undefined;
  // Files claimed but not yet submitted: they hold a queue slot the pipeline can't see yet.
  let reading = 0;
  let scanning = false;
  let scanAgain = false;
  let closed = false;
  let closing: Promise<void> | undefined;

  function countFailure(err: OspreyError, file: string): void {
    try {
      opts.onFailure?.(err, file);
    } catch (hookErr) {
      log.error({ err: hookErr }, 'hot folder failure hook threw');
    }
  }

  function emit(event: HotFolderEvent): void {
    try {
      opts.onFile?.(event);
    } catch (err) {
      log.error({ err }, 'hot folder hook threw');
    }
  }

  function scheduleRecheck(): void {
    if (recheckTimer || closed) return;
    recheckTimer = setTimeout(() => {
      recheckTimer = undefined;
      void scan();
    }, Math.max(opts.settleMs, 5));
  }

  async function scan(): Promise<void> {
    if (closed) return;
    if (scanning) {
      scanAgain = true;
      return;
    }
    scanning = true;
    try {
      do {
        scanAgain = false;
        await scanOnce();
      } while (scanAgain && !closed);
    } catch (err) {
      log.warn({ err, dir: opts.dir }, 'hot folder scan failed');
    } finally {
      scanning = false;
    }
    dispatch();
  }

  async function scanOnce(): Promise<void> {
    const entries = await readdir(opts.dir, { withFileTypes: true });
    const present = new Set<string>();
    const fresh: { name: string; size: number; mtimeMs: number }[] = [];
    let unsettled = false;
    for (const entry of entries) {
      const name = entry.name;
      if (!entry.isFile() || TEMP_NAME.test(name)) continue;
      present.add(name);
      if (claimed.has(name) || stuck.has(name) || readySize.has(name)) continue;
      let st;
      try {
        st = await stat(path.join(opts.dir, name));
      } catch {
        continue; // gone between readdir and stat
      }
      const now = performance.now();
      const prev = seen.get(name);
      if (prev && prev.size === st.size && prev.mtimeMs === st.mtimeMs) {
        if (now - prev.observedAt >= opts.settleMs) {
          seen.delete(name);
          fresh.push({ name, size: st.size, mtimeMs: st.mtimeMs });
        } else unsettled = true;
      } else {
        seen.set(name, { size: st.size, mtimeMs: st.mtimeMs, observedAt: now });
        unsettled = true;
      }
    }
    for (const name of seen.keys()) if (!present.has(name)) seen.delete(name);
    for (const name of stuck) if (!present.has(name)) stuck.delete(name);
    // Oldest first: cameras name files in many ways, but mtime is the order they were written.
    fresh.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : 1));
    for (const f of fresh) {
      ready.push(f.name);
      readySize.set(f.name, f.size);
    }
    if (unsettled) scheduleRecheck();
  }

  function dispatch(): void {
    while (!closed && ready.length > 0 && claimed.size < opts.inFlight && opts.pipeline.capacity - reading > 0) {
      const name = ready.shift()!;
      const size = readySize.get(name) ?? 0;
      readySize.delete(name);
      reading++;
      let released = false;
      const release = () => {
        if (!released) reading--;
        released = true;
      };
      const done = processFile(name, size, release)
        .catch((err: unknown) => {
          // A bug, not the file's fault: leave it alone rather than loop on it.
          stuck.add(name);
          log.error({ err, file: name }, 'hot folder failed on a file');
        })
        .finally(() => {
          release();
          claimed.delete(name);
          dispatch();
        });
      claimed.set(name, done);
    }
  }

  async function finish(name: string, outcome: 'done' | 'failed', extra: Partial<HotFolderEvent>): Promise<void> {
    const src = path.join(opts.dir, name);
    try {
      const movedTo = await moveNoClobber(src, outcome === 'done' ? doneDir : failedDir);
      emit({ file: name, outcome, movedTo, ...extra });
    } catch (err) {
      stuck.add(name);
      log.error({ err, file: src, outcome }, 'input file could not be moved; it will not be inspected again');
      countFailure(new OspreyError('OSP_ERR_INPUT_READ', `cannot move ${name}: ${oneLine(err)}`, { cause: err }), src);
      emit({ file: name, outcome, movedTo: null, ...extra });
    }
  }

  async function reject(name: string, err: OspreyError): Promise<void> {
    log.warn({ file: path.join(opts.dir, name), code: err.code, reason: oneLine(err) }, 'input file rejected');
    await finish(name, 'failed', { error: { code: err.code, message: oneLine(err) } });
  }

  /** `release` is called right before submit, when the pipeline starts counting the frame. */
  async function processFile(name: string, size: number, release: () => void): Promise<void> {
    const src = path.join(opts.dir, name);
    let image: Buffer;
    try {
      const read = await readCapped(src, size, opts.maxFileBytes);
      if (!read) {
        const err = new OspreyError('OSP_ERR_IMAGE_TOO_LARGE', `file has more than ${opts.maxFileBytes} bytes, the limit`);
        countFailure(err, src);
        return reject(name, err);
      }
      image = read;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // taken away by someone else
      const ospErr = new OspreyError('OSP_ERR_INPUT_READ', `cannot read file: ${oneLine(err)}`, { cause: err });
      countFailure(ospErr, src);
      return reject(name, ospErr);
    }
    let outcome: InspectOutcome;
    try {
      release();
      outcome = await opts.pipeline.submit(image, { camera: opts.camera, source: 'folder', frame: name });
    } catch (err) {
      if (isOspreyError(err, 'OSP_ERR_QUEUE_FULL')) {
        // Lost a race with HTTP for the last slot: not the file's fault, try again later.
        ready.unshift(name);
        readySize.set(name, image.length);
        return;
      }
      // Shutting down: leave the file where it is; the next start takes it.
      if (isOspreyError(err, 'OSP_ERR_SHUTTING_DOWN')) return;
      return reject(name, isOspreyError(err) ? err : new OspreyError('OSP_ERR_INFERENCE', oneLine(err), { cause: err }));
    }
    log.debug({ file: name, seq: outcome.record.seq, verdict: outcome.record.verdict }, 'input file inspected');
    await finish(name, 'done', { seq: outcome.record.seq });
  }

  return {
    async start() {
      await mkdir(doneDir, { recursive: true });
      await mkdir(failedDir, { recursive: true });
      try {
        // Every file in or out of the folder is an event, and each scan reads the whole directory:
        // while files already wait for the pipeline, new ones cannot go sooner, so the recheck
        // timer (settleMs) picks them up instead of one scan per event (a backlog of n files cost
        // n scans of n entries).
        watcher = watch(opts.dir, { persistent: false }, () => (ready.length >= opts.inFlight ? scheduleRecheck() : void scan()));
        watcher.on('error', (err) => {
          log.warn({ err, dir: opts.dir }, 'fs.watch failed; relying on the periodic rescan');
          watcher?.close();
          watcher = undefined;
        });
      } catch (err) {
        log.warn({ err, dir: opts.dir }, 'fs.watch unavailable; relying on the periodic rescan');
      }
      rescanTimer = setInterval(() => void scan(), opts.rescanMs);
      rescanTimer.unref();
      await scan();
      log.info({ dir: opts.dir, camera: opts.camera }, 'hot folder watching');
    },
    poke() {
      dispatch();
    },
    get backlog() {
      return seen.size + ready.length + claimed.size;
    },
    close() {
      closing ??= (async () => {
        closed = true;
        watcher?.close();
        clearInterval(rescanTimer);
        clearTimeout(recheckTimer);
        await Promise.allSettled([...claimed.values()]);
      })();
      return closing;
    },
  };
}
