/**
 * The edge's local storage beyond the result log (issue 5), wired as one component so the agent
 * only needs a handful of calls: retention and the result quota (retention.ts), kept images
 * (image-store.ts) chosen by the sampling policy (image-sampling.ts) and their upload to the
 * fleet (image-uploader.ts). Alarms and figures go into telemetry and /health; quota changes
 * become `alert` events.
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { EdgeSettings, EventMessage, TelemetryMessage } from '../protocol/messages.js';
import type { ImagesConfig, RetentionConfig } from './config.js';
import { createImageSampler, type ImageSampler } from './image-sampling.js';
import { createImageStore, IMAGE_QUOTA_ALARM, type ImageStore } from './image-store.js';
import { createImageUploader, type ImageUploader } from './image-uploader.js';
import type { InspectOutcome } from './pipeline.js';
import type { ResultStore } from './result-store.js';
import { createRetention, type Retention } from './retention.js';

/** Defaults for hand-built configs (the config schema fills the same values in). */
export const DEFAULT_RETENTION: RetentionConfig = { ackedMaxAgeMs: 7 * 24 * 3_600_000, maxBytes: 1 << 30, maxRows: 0, intervalMs: 10_000 };
export const DEFAULT_IMAGES: ImagesConfig = {
  maxBytes: 1 << 30,
  upload: true,
  sampling: { keepDefectImages: true, uncertainBand: 0.05, keepGoodEvery: 0 },
  retryBaseMs: 1000,
  retryMaxMs: 60_000,
  timeoutMs: 30_000,
};

export type StorageFigures = NonNullable<TelemetryMessage['storage']>;

export interface EdgeStorage {
  /** The store the pipeline writes through (applies the quota policy: seq 0 = not stored). */
  readonly pipelineStore: ResultStore;
  /** Scans kept images, starts pruning and (with a fleet URL) uploading. */
  start(): Promise<void>;
  /** After each answered frame: keeps its image when the sampling policy says so. Never throws. */
  onResult(outcome: InspectOutcome, image: Buffer | undefined): void;
  /** The fleet's sampling policy from desired state (absent fields: the local config). */
  setSampling(sampling: EdgeSettings['sampling'] | undefined): void;
  /** The fleet link is up again: retry uploads now. */
  online(): void;
  alarms(): string[];
  figures(): StorageFigures;
  readonly retention: Retention;
  readonly images: ImageStore | undefined;
  readonly uploader: ImageUploader | undefined;
  /** Resolves once every image kept so far is written (tests and shutdown). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface EdgeStorageOptions {
  edgeId: string;
  dataDir: string;
  store: ResultStore;
  retention?: RetentionConfig;
  images?: ImagesConfig;
  /** Fleet HTTP base for uploads; absent: images are kept locally only. */
  fleetHttpUrl?: string;
  dispatcher?: Dispatcher;
  logger: Logger;
  publishEvent?: (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data?: Record<string, unknown>) => void;
}

/** Creates the storage component around an open result store. */
export function createEdgeStorage(opts: EdgeStorageOptions): EdgeStorage {
  const log = opts.logger;
  const imagesConfig = opts.images ?? DEFAULT_IMAGES;
  const event = (level: EventMessage['level'], message: string, data: Record<string, unknown>) => {
    try {
      opts.publishEvent?.('alert', level, message, data);
    } catch (err) {
      log.error({ err }, 'event hook threw');
    }
  };

  const retention = createRetention({
    store: opts.store,
    config: opts.retention ?? DEFAULT_RETENTION,
    logger: log.child({ part: 'retention' }),
    onQuota: (full, f) =>
      full
        ? event('error', 'result store quota reached: verdicts are answered but not stored', { alarm: f.reason, ...f })
        : event('info', 'result store has room again: results are stored', { alarm: f.reason, cleared: true, ...f }),
  });

  let evictionsReported = 0;
  const images =
    imagesConfig.maxBytes > 0
      ? createImageStore({
          dir: path.join(opts.dataDir, 'images'),
          maxBytes: imagesConfig.maxBytes,
          logger: log.child({ part: 'images' }),
          onEvicted: (_img, evicted) => {
            // One event per burst of evictions is enough: the count travels with it and in telemetry.
            if (evicted - evictionsReported >= 100 || evictionsReported === 0) {
              event('warn', 'image quota full: unsent images evicted, oldest first', { alarm: IMAGE_QUOTA_ALARM, evicted });
              evictionsReported = evicted;
            }
          },
        })
      : undefined;
  const sampler: ImageSampler = createImageSampler(imagesConfig.sampling);
  const uploader =
    images && imagesConfig.upload && opts.fleetHttpUrl
      ? createImageUploader({
          edgeId: opts.edgeId,
          baseUrl: opts.fleetHttpUrl,
          images,
          logger: log.child({ part: 'image-upload' }),
          retryBaseMs: imagesConfig.retryBaseMs,
          retryMaxMs: imagesConfig.retryMaxMs,
          timeoutMs: imagesConfig.timeoutMs,
          ...(opts.dispatcher ? { dispatcher: opts.dispatcher } : {}),
        })
      : undefined;
  const writes = new Set<Promise<void>>();

  return {
    pipelineStore: retention.store,
    retention,
    images,
    uploader,
    async start() {
      await images?.start();
      retention.start();
      uploader?.start();
      if (images && imagesConfig.upload && !opts.fleetHttpUrl) {
        log.warn('fleet.httpUrl is not set: kept images stay at the edge and are not uploaded');
      }
    },
    onResult(outcome, image) {
      const { record, inspection } = outcome;
      // seq 0: the result itself was not stored (quota), so there is nothing to attach an image to.
      if (!images || !image || record.seq === 0) return;
      const reason = sampler.decide(record.verdict, record.score, inspection.threshold);
      if (!reason) return;
      const write = images
        .keep(opts.store.storeId, record.seq, image)
        .catch((err: unknown) => log.warn({ err, seq: record.seq }, 'cannot keep image'))
        .finally(() => writes.delete(write));
      writes.add(write);
    },
    setSampling(sampling) {
      sampler.update(sampling);
      log.info({ sampling: sampler.policy }, 'image sampling policy set');
    },
    online() {
      uploader?.poke();
    },
    alarms() {
      return [...retention.alarms(), ...(images?.alarms() ?? [])];
    },
    figures() {
      const u = opts.store.usage();
      const r = retention.stats();
      const i = images?.stats() ?? { images: 0, bytes: 0, pending: 0, evicted: 0 };
      return {
        resultRows: u.rows,
        resultBytes: u.bytes,
        notStored: r.notStored,
        notStoredDefects: r.notStoredDefects,
        images: i.images,
        imageBytes: i.bytes,
        imagesPending: i.pending,
        imagesEvicted: i.evicted,
      };
    },
    async flush() {
      await Promise.all([...writes]);
    },
    async close() {
      retention.close();
      await Promise.all([...writes]);
      await uploader?.close();
      images?.close();
    },
  };
}
