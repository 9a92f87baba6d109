/**
 * The edge's local storage beyond the result log (issue 5), wired as one component so the agent
 * only needs a handful of calls: retention and the result quota (retention.ts), kept images
 * (image-store.ts) chosen by the sampling policy (image-sampling.ts) and their upload to the
 * fleet (image-uploader.ts). Alarms and figures go into telemetry and /health; quota changes
 * become `alert` events.
 *
 * Free space (issue 13): every `disk.checkIntervalMs` the data disk's free bytes are read (statfs);
 * below `disk.minFreeBytes` the `disk-low` alarm is raised and kept images are deleted (uploaded
 * ones first, then the oldest unsent) until `disk.resumeFreeBytes` are free. The alarm clears once
 * the disk is above the resume mark and has not been low for `disk.alarmHoldMs` (no flapping).
 */
import path from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import type { EdgeSettings, EventMessage, TelemetryMessage } from '../protocol/messages.js';
import type { DiskConfig, ImagesConfig, RetentionConfig } from './config.js';
import { freeBytes as statfsFree } from './disk-space.js';
import { createHysteresisAlarm } from './hysteresis-alarm.js';
import { createImageSampler, type ImageSampler } from './image-sampling.js';
import { createImageStore, IMAGE_QUOTA_ALARM, type ImageStore } from './image-store.js';
import { createImageUploader, type ImageUploader } from './image-uploader.js';
import type { ModelRunner } from '../models/types.js';
import type { InspectOutcome } from './pipeline.js';
import type { ResultStore } from './result-store.js';
import { createRetention, RESULT_QUOTA_ALARM, type Retention } from './retention.js';
import type { EdgeAlarm } from '../protocol/monitoring.js';

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

export const DEFAULT_DISK: DiskConfig = { minFreeBytes: 256 << 20, resumeFreeBytes: 512 << 20, checkIntervalMs: 5000, alarmHoldMs: 60_000 };
export const DISK_LOW_ALARM = 'disk-low' satisfies EdgeAlarm;
/** results.db was damaged at start and replaced by a new store (result-store.ts); until restart. */
export const STORE_REPLACED_ALARM = 'result-store-replaced' satisfies EdgeAlarm;

export type StorageFigures = NonNullable<TelemetryMessage['storage']>;

export interface EdgeStorage {
  /** The store the pipeline writes through (applies the quota policy: seq 0 = not stored). */
  readonly pipelineStore: ResultStore;
  /** Scans kept images, starts pruning and (with a fleet URL) uploading. */
  start(): Promise<void>;
  /** After each answered frame: keeps its image when the sampling policy says so. Never throws. */
  onResult(outcome: InspectOutcome, image: Buffer | undefined): void;
  /**
   * Whether the pipeline should ask `runner` for an anomaly heatmap: an anomaly model, and a
   * policy that may keep a defect frame's image (keepDefectImages, or an uncertain band).
   */
  wantsHeatmap(runner: ModelRunner): boolean;
  /** The fleet's sampling policy from desired state (absent fields: the local config). */
  setSampling(sampling: EdgeSettings['sampling'] | undefined): void;
  /** The fleet link is up again: retry uploads now. */
  online(): void;
  alarms(): string[];
  figures(): StorageFigures;
  readonly retention: Retention;
  readonly images: ImageStore | undefined;
  readonly uploader: ImageUploader | undefined;
  /** Reads the disk's free space now, sets the disk-low alarm and frees space (also what the timer does). */
  checkDisk(): Promise<void>;
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
  disk?: DiskConfig;
  /** Free bytes of the data disk (default: statfs of dataDir); tests drive the alarm with it. */
  freeBytes?: (dir: string) => number | undefined;
  /** Clock of the alarms' hold times (default performance.now). */
  now?: () => number;
  /** Fleet HTTP base for uploads; absent: images are kept locally only. */
  fleetHttpUrl?: string;
  /** Headers of an upload (the edge credential). */
  fleetAuthHeaders?: (url: string) => Record<string, string>;
  dispatcher?: Dispatcher;
  logger: Logger;
  publishEvent?: (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data?: Record<string, unknown>) => void;
}

/** Creates the storage component around an open result store. */
export function createEdgeStorage(opts: EdgeStorageOptions): EdgeStorage {
  const log = opts.logger;
  const imagesConfig = opts.images ?? DEFAULT_IMAGES;
  const disk = opts.disk ?? DEFAULT_DISK;
  const readFree = () => (opts.freeBytes ?? statfsFree)(opts.dataDir);
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
    ...(opts.now ? { now: opts.now } : {}),
    alarmHoldMs: disk.alarmHoldMs,
    onQuota: (full, f) =>
      full
        ? event(
            'error',
            f.reason === RESULT_QUOTA_ALARM
              ? 'result store quota reached: verdicts are answered but not stored'
              : `the disk refused a result write (${opts.store.file}): verdicts are answered but not stored`,
            { alarm: f.reason, ...f },
          )
        : event('info', 'result store has room again: results are stored', { alarm: f.reason, cleared: true, ...f }),
  });

  /** Free bytes the alarm reports: the low reading that raised it, the reading that cleared it. */
  let diskFree: number | undefined;
  const diskAlarm = createHysteresisAlarm({
    holdMs: disk.alarmHoldMs,
    ...(opts.now ? { now: opts.now } : {}),
    onChange: (raised) => {
      const data = { alarm: DISK_LOW_ALARM, freeBytes: diskFree, minFreeBytes: disk.minFreeBytes, resumeFreeBytes: disk.resumeFreeBytes };
      if (raised) {
        log.error(data, 'data disk low: kept images are deleted to make room');
        event('error', `data disk low: ${diskFree} bytes free in ${opts.dataDir}, below disk.minFreeBytes ${disk.minFreeBytes}`, data);
      } else {
        log.warn(data, 'data disk has room again');
        event('info', `data disk has room again: ${diskFree} bytes free in ${opts.dataDir}`, { ...data, cleared: true });
      }
    },
  });
  const recovery = opts.store.recovery;
  let recoveryReported = false;
  let diskTimer: NodeJS.Timeout | undefined;
  let checking: Promise<void> | undefined;

  let evictionsReported = 0;
  const images =
    imagesConfig.maxBytes > 0
      ? createImageStore({
          dir: path.join(opts.dataDir, 'images'),
          maxBytes: imagesConfig.maxBytes,
          minFreeBytes: disk.minFreeBytes,
          ...(opts.freeBytes ? { freeBytes: opts.freeBytes } : {}),
          logger: log.child({ part: 'images' }),
          onEvicted: (_img, evicted) => {
            // One event per burst of evictions is enough: the count travels with it and in telemetry.
            if (evicted - evictionsReported >= 100 || evictionsReported === 0) {
              event('warn', 'image quota or data disk full: unsent images evicted, oldest first', { alarm: IMAGE_QUOTA_ALARM, evicted });
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
          ...(opts.fleetAuthHeaders ? { authHeaders: opts.fleetAuthHeaders } : {}),
        })
      : undefined;
  const writes = new Set<Promise<void>>();

  async function checkDiskNow(): Promise<void> {
    const found = readFree();
    if (found === undefined) return;
    const low = found < disk.minFreeBytes;
    let now = found;
    if (low && images) {
      const deleted = await images.freeDisk(disk.resumeFreeBytes);
      now = readFree() ?? found;
      if (deleted > 0) log.warn({ deleted, before: found, after: now }, 'kept images deleted to free the data disk');
    }
    // Raised by the reading that found the disk low, even if deleting images fixed it at once:
    // the fleet should know the disk got there.
    diskFree = low ? found : now;
    diskAlarm.update(low, now >= disk.resumeFreeBytes);
  }
  function checkDisk(): Promise<void> {
    checking ??= checkDiskNow()
      .catch((err: unknown) => log.error({ err }, 'disk check failed'))
      .finally(() => {
        checking = undefined;
      });
    return checking;
  }

  return {
    pipelineStore: retention.store,
    retention,
    images,
    uploader,
    async start() {
      if (recovery?.kind === 'corrupt') {
        log.error({ file: recovery.file, movedTo: recovery.movedTo, reason: recovery.reason, storeId: opts.store.storeId }, 'result store damaged: moved aside, a new store was started');
      } else if (recovery) {
        log.warn({ file: recovery.file, reason: recovery.reason, storeId: opts.store.storeId }, 'result store was empty (0 bytes): a new store was started');
      }
      await images?.start();
      await checkDisk();
      diskTimer = setInterval(() => void checkDisk(), disk.checkIntervalMs);
      diskTimer.unref();
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
      // The heatmap goes with a kept defect image only (the model returns no map for an ok call);
      // the store renders it from the map after the frame was answered.
      const heatmap = record.verdict === 'defect' ? inspection.anomalyMap : undefined;
      const write = images
        .keep(opts.store.storeId, record.seq, image, heatmap)
        .catch((err: unknown) => log.warn({ err, seq: record.seq }, 'cannot keep image'))
        .finally(() => writes.delete(write));
      writes.add(write);
    },
    wantsHeatmap(runner) {
      const p = sampler.policy;
      return images !== undefined && runner.manifest?.task === 'anomaly' && (p.keepDefectImages || p.uncertainBand > 0);
    },
    setSampling(sampling) {
      sampler.update(sampling);
      log.info({ sampling: sampler.policy }, 'image sampling policy set');
    },
    online() {
      // Sent once the link is up (the link exists by then, whatever the order the agent builds in).
      if (recovery && !recoveryReported) {
        recoveryReported = true;
        const corrupt = recovery.kind === 'corrupt';
        event(
          corrupt ? 'error' : 'warn',
          corrupt
            ? `result store ${recovery.file} was damaged and moved aside to ${recovery.movedTo}; a new store was started: ${recovery.reason}`
            : `result store ${recovery.file} was empty (0 bytes); a new store was started`,
          { alarm: STORE_REPLACED_ALARM, ...recovery, storeId: opts.store.storeId },
        );
      }
      uploader?.poke();
    },
    alarms() {
      return [...retention.alarms(), ...(images?.alarms() ?? []), ...(diskAlarm.raised ? [DISK_LOW_ALARM] : []), ...(recovery?.kind === 'corrupt' ? [STORE_REPLACED_ALARM] : [])];
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
    checkDisk,
    async flush() {
      await Promise.all([...writes]);
    },
    async close() {
      clearInterval(diskTimer);
      retention.close();
      await checking;
      await Promise.all([...writes]);
      await uploader?.close();
      images?.close();
    },
  };
}
