/**
 * Downloads one model artifact over HTTP with undici into a partial file: resumes from the
 * partial file's size with `Range`, retries transient failures with exponential backoff and
 * jitter, bounds each attempt in time, and resolves only once the file's sha256 is the one the
 * desired state names. Nothing here touches the pipeline: a download never blocks inspection.
 *
 * The disk (issue 13): before each attempt the free space is checked (the rest of the download
 * plus the extracted copy must leave `minFreeBytes` free); a disk that fills up anyway (ENOSPC)
 * ends the download at once, deletes the partial file and rejects with a message naming the file.
 */
import { createHash, type Hash } from 'node:crypto';
import { createReadStream, ftruncateSync, writeSync } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import { request, type Dispatcher } from 'undici';
import { backoffDelay } from '../protocol/backoff.js';
import { OspreyError, isOspreyError, oneLine } from '../protocol/errors.js';
import { sha256File } from '../models/package-reader.js';
import { assertRoomFor, isDiskFull } from './disk-space.js';

export interface DownloadOptions {
  url: string;
  /** sha256 (hex) the complete file must have. */
  sha256: string;
  /** Exact size in bytes; more bytes than this are never written. */
  size: number;
  /** The partial file: appended to when resuming, complete and verified when the promise resolves. */
  file: string;
  /** Aborts the download (the partial file is kept for a later resume). */
  signal?: AbortSignal;
  /** undici dispatcher (default: the global one); many simulated edges can share one Agent. */
  dispatcher?: Dispatcher;
  /** Longest one attempt may take, headers to last byte (default 10 min). */
  attemptTimeoutMs?: number;
  /** Longest wait for headers or for the next body chunk (default 30 s): a stalled link fails fast. */
  idleTimeoutMs?: number;
  /** First retry delay (default 500 ms); doubles per failed attempt without progress. */
  retryBaseMs?: number;
  /** Longest retry delay (default 60 s). */
  retryMaxMs?: number;
  /** Attempts before giving up (default: unlimited; the caller aborts when the desired state moves on). */
  maxAttempts?: number;
  logger: Logger;
  /** Called after each failed attempt, before the backoff wait. */
  onAttemptFailed?: (info: { attempt: number; delayMs: number; err: OspreyError }) => void;
  /**
   * Free space (bytes) the disk must keep: an attempt that would leave less is refused before its
   * first byte (default 0: only ENOSPC stops a download).
   */
  minFreeBytes?: number;
  /** Extra request headers (the edge credential towards the fleet's own origin). */
  headers?: Record<string, string>;
  /** Jitter source (tests). */
  random?: () => number;
}

export interface DownloadResult {
  bytes: number;
  attempts: number;
  /** Attempts that continued a partial file with a Range request. */
  resumed: number;
  ms: number;
}

/** A sha256 fed with the first `bytes` bytes of `file` (the part a resume continues). */
async function hashPrefix(file: string, bytes: number): Promise<Hash> {
  const hash = createHash('sha256');
  if (bytes > 0) for await (const chunk of createReadStream(file, Number.isFinite(bytes) ? { end: bytes - 1 } : {})) hash.update(chunk as Buffer);
  return hash;
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

/** `bytes 100-199/1000` → { start: 100, total: 1000 }. */
function parseContentRange(value: string | string[] | undefined): { start: number; total: number | undefined } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(value ?? '').trim());
  if (!m) return undefined;
  return { start: Number(m[1]), total: m[3] === '*' ? undefined : Number(m[3]) };
}

type AttemptOutcome = { done: true } | { done: false; progressed: boolean; err: OspreyError; fatal: boolean; restart?: boolean };

/**
 * Downloads (or finishes downloading) `opts.url` into `opts.file` and verifies it. Rejects with
 * OSP_ERR_ARTIFACT_CHECKSUM when the bytes are not the artifact (after one fresh retry, since a
 * resume may splice two different files), OSP_ERR_MODEL_DOWNLOAD after `maxAttempts`, or the
 * abort reason when `signal` fires.
 */
export async function downloadArtifact(opts: DownloadOptions): Promise<DownloadResult> {
  const log = opts.logger;
  const t0 = performance.now();
  const idle = opts.idleTimeoutMs ?? 30_000;
  const base = opts.retryBaseMs ?? 500;
  const cap = opts.retryMaxMs ?? 60_000;
  const random = opts.random ?? Math.random;
  let attempts = 0;
  let resumed = 0;
  let mismatches = 0;
  let failuresInARow = 0;

  /** `actual`: the digest computed while writing; absent: read the file back. */
  async function verifyComplete(actual?: string): Promise<AttemptOutcome> {
    actual ??= await sha256File(opts.file);
    if (actual === opts.sha256) return { done: true };
    await rm(opts.file, { force: true });
    mismatches++;
    const err = new OspreyError(
      'OSP_ERR_ARTIFACT_CHECKSUM',
      `downloaded bytes have sha256 ${actual.slice(0, 12)}…, the desired state names ${opts.sha256.slice(0, 12)}…`,
    );
    return { done: false, progressed: false, err, fatal: mismatches >= 2, restart: true };
  }

  /** The disk filled up: no resume can help, so the partial file goes (no 0-byte or partial file is left). */
  async function diskFull(err: unknown): Promise<AttemptOutcome> {
    await rm(opts.file, { force: true });
    const e = new OspreyError(
      'OSP_ERR_MODEL_DOWNLOAD',
      `no space left on the disk writing ${opts.file}: download aborted, partial file deleted (${(err as NodeJS.ErrnoException).code})`,
      { cause: err },
    );
    return { done: false, progressed: false, err: e, fatal: true };
  }

  async function attempt(signal: AbortSignal): Promise<AttemptOutcome> {
    let offset = await sizeOf(opts.file);
    if (offset > opts.size) {
      await rm(opts.file, { force: true });
      offset = 0;
    }
    if (offset === opts.size && offset > 0) return verifyComplete();
    try {
      // The rest of the archive, then its extracted copy (a tar: about as large) beside it.
      assertRoomFor(path.dirname(opts.file), opts.size - offset + opts.size, opts.minFreeBytes ?? 0, `the artifact ${path.basename(opts.file)}`);
    } catch (err) {
      return { done: false, progressed: false, err: err as OspreyError, fatal: true };
    }
    const headers: Record<string, string> = { ...opts.headers, ...(offset > 0 ? { range: `bytes=${offset}-` } : {}) };
    let progressed = false;
    // Hashed as written, so a complete download is not read back to be checked.
    let hash = await hashPrefix(opts.file, offset);
    // Opened before the request: between the response and the first read of its body there must
    // be no await, or a body that fails early (a cut) would be dropped with what it had received.
    let fh: Awaited<ReturnType<typeof open>>;
    try {
      fh = await open(opts.file, 'a');
    } catch (err) {
      if (isDiskFull(err)) return diskFull(err);
      throw err;
    }
    try {
      const res = await request(opts.url, {
        method: 'GET',
        headers,
        signal,
        headersTimeout: idle,
        bodyTimeout: idle,
        ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      });
      if (res.statusCode === 200) {
        // The server ignored Range (or we asked for none): the body is the whole file.
        if (offset > 0) {
          ftruncateSync(fh.fd, 0);
          hash = createHash('sha256');
        }
        offset = 0;
      } else if (res.statusCode === 206) {
        const range = parseContentRange(res.headers['content-range']);
        if (!range || range.start !== offset || (range.total !== undefined && range.total !== opts.size)) {
          await res.body.dump().catch(() => undefined);
          ftruncateSync(fh.fd, 0);
          throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `HTTP 206 with content-range ${String(res.headers['content-range'])} for a resume at ${offset}; restarting`);
        }
        resumed++;
      } else if (res.statusCode === 416) {
        // The partial file is at least as long as the server's copy: start over.
        await res.body.dump().catch(() => undefined);
        ftruncateSync(fh.fd, 0);
        throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `HTTP 416 resuming at byte ${offset}; restarting`);
      } else {
        await res.body.dump().catch(() => undefined);
        throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `HTTP ${res.statusCode} from ${opts.url}`);
      }
      // Written synchronously as each chunk arrives: everything received before a cut is on disk
      // for the resume (a body destroyed by an error drops whatever it still buffers).
      const limit = opts.size - offset;
      let written = 0;
      const body = res.body;
      await new Promise<void>((resolve, reject) => {
        body.on('data', (chunk: Buffer) => {
          written += chunk.length;
          if (written > limit) {
            body.destroy(new OspreyError('OSP_ERR_ARTIFACT_CHECKSUM', `artifact is larger than the ${opts.size} bytes expected`));
            return;
          }
          try {
            writeSync(fh.fd, chunk);
          } catch (err) {
            body.destroy(err as Error);
            return;
          }
          hash.update(chunk);
          progressed = true;
        });
        body.once('end', resolve);
        body.once('error', reject);
      });
    } catch (err) {
      if (isDiskFull(err)) {
        await fh.close().catch(() => undefined);
        return diskFull(err);
      }
      if (opts.signal?.aborted) throw opts.signal.reason ?? err;
      const ospErr = isOspreyError(err)
        ? err
        : new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `download from ${opts.url} failed: ${oneLine(err)}`, { cause: err });
      // Too many bytes: the server does not hold this artifact; count it like a checksum mismatch.
      if (ospErr.code === 'OSP_ERR_ARTIFACT_CHECKSUM') {
        await rm(opts.file, { force: true });
        mismatches++;
        return { done: false, progressed: false, err: ospErr, fatal: mismatches >= 2, restart: true };
      }
      return { done: false, progressed, err: ospErr, fatal: false };
    } finally {
      await fh.close().catch(() => undefined);
    }
    const have = await sizeOf(opts.file);
    if (have !== opts.size) {
      return {
        done: false,
        progressed,
        err: new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `body ended at byte ${have} of ${opts.size}`),
        fatal: false,
      };
    }
    return verifyComplete(hash.digest('hex'));
  }

  for (;;) {
    opts.signal?.throwIfAborted();
    attempts++;
    const timeout = AbortSignal.timeout(opts.attemptTimeoutMs ?? 600_000);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    const outcome = await attempt(signal);
    if (outcome.done) {
      const ms = Math.round(performance.now() - t0);
      log.info({ url: opts.url, bytes: opts.size, attempts, resumed, ms }, 'artifact downloaded');
      return { bytes: opts.size, attempts, resumed, ms };
    }
    if (outcome.fatal) throw outcome.err;
    if (opts.maxAttempts !== undefined && attempts >= opts.maxAttempts) {
      throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `gave up after ${attempts} attempts: ${outcome.err.message}`, { cause: outcome.err });
    }
    // Progress means the link works and merely broke: resume soon. A fresh restart after a
    // mismatch goes at once. Otherwise back off exponentially, with jitter so a line of edges
    // does not retry in step.
    failuresInARow = outcome.progressed || outcome.restart ? 0 : failuresInARow + 1;
    const delayMs = outcome.restart ? 0 : backoffDelay(Math.max(1, failuresInARow), { baseMs: base, maxMs: cap, random });
    log.warn({ url: opts.url, attempt: attempts, delayMs, code: outcome.err.code, reason: outcome.err.message }, 'artifact download attempt failed');
    try {
      opts.onAttemptFailed?.({ attempt: attempts, delayMs, err: outcome.err });
    } catch (hookErr) {
      log.error({ err: hookErr }, 'download hook threw');
    }
    if (delayMs > 0) await sleep(delayMs, undefined, opts.signal ? { signal: opts.signal } : {});
  }
}
