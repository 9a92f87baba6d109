/**
 * Uploads kept images to the fleet manager over HTTP (undici), oldest first, one at a time:
 * `PUT {fleet}/api/results/{edgeId}/{seq}/image?store={storeId}` with the bytes and their sha256.
 *
 * Idempotent: the fleet stores images content-addressed and links each to (edge, store, seq), so
 * sending one again (after a timeout whose answer was lost, or after a crash before the local
 * rename) is a harmless no-op. Resumable: what is not uploaded stays in `pending/` on disk across
 * outages and restarts; a failed attempt is retried with exponential backoff (capped), and
 * `poke()` (the fleet link coming back) retries at once. Images are small, so an interrupted
 * upload restarts from its first byte rather than resuming mid-file.
 *
 * An image kept with an anomaly heatmap is followed by `PUT …/{seq}/heatmap?store=` (image/png),
 * and only counts as sent once both are: a heatmap that fails for a while is retried (the image is
 * not sent again), one the fleet refuses for good is dropped and the image marked sent anyway.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { request, type Dispatcher } from 'undici';
import { backoffDelay } from '../protocol/backoff.js';
import type { ImageStore, KeptImage } from './image-store.js';

export interface ImageUploaderOptions {
  edgeId: string;
  /** Fleet HTTP base URL, e.g. http://fleet:8080. */
  baseUrl: string;
  images: ImageStore;
  logger: Logger;
  retryBaseMs: number;
  retryMaxMs: number;
  timeoutMs: number;
  dispatcher?: Dispatcher;
  /** Headers an upload to `url` carries (the edge credential: fleet-credential.ts). */
  authHeaders?: (url: string) => Record<string, string>;
}

export interface ImageUploaderStats {
  uploaded: number;
  failures: number;
  /** Refused by the fleet for good (4xx other than 408/429): dropped locally, logged. */
  refused: number;
  /** Heatmaps uploaded (with their images). */
  heatmaps: number;
}

export interface ImageUploader {
  start(): void;
  /** Retry now instead of waiting out the backoff (e.g. the fleet link came back). */
  poke(): void;
  stats(): ImageUploaderStats;
  /** Stops after the upload in progress (bounded by timeoutMs). */
  close(): Promise<void>;
}

/** Creates the uploader; nothing is sent until start(). */
export function createImageUploader(opts: ImageUploaderOptions): ImageUploader {
  const log = opts.logger;
  const stats: ImageUploaderStats = { uploaded: 0, failures: 0, refused: 0, heatmaps: 0 };
  /** The image whose own bytes are uploaded while its heatmap is still to go. */
  let imageDone: KeptImage | undefined;
  const base = opts.baseUrl.replace(/\/+$/, '');
  let closed = false;
  let loop: Promise<void> | undefined;
  let failuresInARow = 0;
  let wakeUp: (() => void) | undefined;
  let lastErrorCode: string | undefined;
  let stop!: () => void;
  const stopped = new Promise<void>((resolve) => {
    stop = resolve;
  });

  function pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeUp = undefined;
        resolve();
      }
      wakeUp = done;
    });
  }

  function urlFor(img: KeptImage, kind: 'image' | 'heatmap'): string {
    const store = img.storeId === undefined ? '' : `?store=${encodeURIComponent(img.storeId)}`;
    return `${base}/api/results/${encodeURIComponent(opts.edgeId)}/${img.seq}/${kind}${store}`;
  }

  /** The image, then its heatmap: 'sent', 'refused' (do not retry), 'retry' or 'gone'. */
  async function upload(img: KeptImage): Promise<'sent' | 'refused' | 'retry' | 'gone'> {
    if (imageDone !== img) {
      const outcome = await put(img, img.file, img.contentType, 'image');
      if (outcome !== 'sent' || !img.heatmap) return outcome;
      imageDone = img;
    }
    if (!img.heatmap) return 'sent';
    const outcome = await put(img, img.heatmap.file, 'image/png', 'heatmap').catch((err: unknown) => {
      log.warn({ err, file: img.heatmap!.file }, 'cannot read heatmap for upload');
      return 'gone' as const;
    });
    if (outcome === 'retry') return 'retry';
    // Refused or gone: the image is uploaded, and a heatmap never holds it back.
    if (outcome === 'sent') stats.heatmaps++;
    imageDone = undefined;
    return 'sent';
  }

  /** PUTs one file of a kept image. */
  async function put(img: KeptImage, file: string, contentType: string, kind: 'image' | 'heatmap'): Promise<'sent' | 'refused' | 'retry' | 'gone'> {
    let body: Buffer;
    try {
      body = await readFile(file);
    } catch (err) {
      // Evicted by the quota between nextPending() and now, or removed by hand.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      throw err;
    }
    const sha256 = createHash('sha256').update(body).digest('hex');
    const url = urlFor(img, kind);
    try {
      const res = await request(url, {
        method: 'PUT',
        body,
        headers: { ...opts.authHeaders?.(url), 'content-type': contentType, 'x-osprey-sha256': sha256 },
        headersTimeout: opts.timeoutMs,
        bodyTimeout: opts.timeoutMs,
        signal: AbortSignal.timeout(opts.timeoutMs),
        ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
      });
      const text = await res.body.text();
      if (res.statusCode >= 200 && res.statusCode < 300) return 'sent';
      const permanent = res.statusCode >= 400 && res.statusCode < 500 && res.statusCode !== 408 && res.statusCode !== 429;
      log.warn({ seq: img.seq, storeId: img.storeId, kind, status: res.statusCode, body: text.slice(0, 200) }, 'image upload refused');
      return permanent ? 'refused' : 'retry';
    } catch (err) {
      const code = String((err as NodeJS.ErrnoException).code ?? (err as Error).name);
      // While the fleet is down every attempt fails the same way; log each kind once.
      if (code !== lastErrorCode) log.warn({ err, seq: img.seq }, 'image upload failed; will retry');
      lastErrorCode = code;
      return 'retry';
    }
  }

  async function run(): Promise<void> {
    while (!closed) {
      await Promise.race([opts.images.waitForPending(), stopped]);
      if (closed) break;
      const img = opts.images.nextPending();
      if (!img) continue;
      let outcome: Awaited<ReturnType<typeof upload>>;
      try {
        outcome = await upload(img);
      } catch (err) {
        log.error({ err, file: img.file }, 'cannot read image for upload');
        outcome = 'refused';
      }
      if (outcome === 'sent') {
        stats.uploaded++;
        failuresInARow = 0;
        lastErrorCode = undefined;
        await opts.images.markSent(img).catch((err: unknown) => log.error({ err, file: img.file }, 'cannot mark image uploaded'));
      } else if (outcome === 'refused' || outcome === 'gone') {
        imageDone = undefined;
        if (outcome === 'refused') stats.refused++;
        await opts.images.discard(img);
      } else {
        stats.failures++;
        failuresInARow++;
        // Jitter spreads a fleet of edges that lost the link at the same moment.
        await pause(backoffDelay(failuresInARow, { baseMs: opts.retryBaseMs, maxMs: opts.retryMaxMs }));
      }
    }
  }

  return {
    start() {
      loop ??= run().catch((err: unknown) => log.error({ err }, 'image uploader stopped'));
    },
    poke() {
      failuresInARow = 0;
      wakeUp?.();
    },
    stats() {
      return { ...stats };
    },
    async close() {
      closed = true;
      stop();
      wakeUp?.();
      await loop;
    },
  };
}
