/**
 * The edge's bounded store of kept images (issue 5): the encoded bytes of frames the sampling
 * policy keeps (defects, uncertain scores, every Nth good part), one file per result, until the
 * uploader has handed them to the fleet manager.
 *
 * Layout: `<dir>/<store>/pending/<seq>.<ext>` until uploaded, then `<dir>/<store>/sent/<seq>.<ext>`,
 * where `<store>` is the result store's id (`legacy` for a store without one), so images of a
 * wiped database never collide with the new one's seqs. The directory is the index: a rename is
 * atomic, a file is written under a `.tmp` name first, and a start-up scan rebuilds everything,
 * so a crash at any moment leaves either the whole image or nothing. Images are not fsynced: they
 * are evidence next to the result, and a power cut may cost the last few (the result is intact).
 *
 * The quota (`maxBytes`) evicts oldest first: uploaded images before any pending one; a pending
 * image evicted is counted (`evicted`) and raises the `image-quota` alarm. The same order frees the
 * disk when it runs low (`disk`, issue 13): before each write, and when the owner asks
 * (`freeDisk`), images go until the disk has its floor again; with no image left to delete, the
 * new image is not kept (`skipped`), so images never take the space the result log needs. A write
 * that fails (ENOSPC) deletes its temp file: no 0-byte or partial file is left behind.
 *
 * An anomaly model's heatmap (a small PNG of where it looked) may travel with an image:
 * `<seq>.heatmap.png` beside `<seq>.<ext>`, written first (temp file, rename) so a crash never
 * leaves an image whose heatmap is half written; a heatmap without its image is deleted at start.
 * It counts toward the same quota and disk floor, moves to `sent/` with its image and is deleted
 * with it. When image and heatmap together would not fit, the image is kept without it: a heatmap
 * never costs an image. The edge hands it the model's raw anomaly map (a small Float32Array) and the
 * store renders the PNG itself (renderHeatmap), after the frame was answered: the verdict never
 * waits for PNG encoding, and a map is only rendered for an image that is kept.
 */
import { mkdir, readdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { AnomalyMap } from '../models/types.js';
import { renderHeatmap } from '../models/postprocess/heatmap.js';
import { freeBytes as statfsFree } from './disk-space.js';
import type { EdgeAlarm } from '../protocol/monitoring.js';

export const IMAGE_QUOTA_ALARM = 'image-quota' satisfies EdgeAlarm;

/** A heatmap kept with an image. */
export interface KeptHeatmap {
  file: string;
  bytes: number;
}

/** One kept image. */
export interface KeptImage {
  /** Result store id, or undefined for a store without one. */
  storeId: string | undefined;
  seq: number;
  file: string;
  bytes: number;
  contentType: string;
  /** When it was kept (ms); eviction order. */
  at: number;
  /** The anomaly heatmap kept with it, if any (counted in the store's bytes, deleted with it). */
  heatmap?: KeptHeatmap;
}

export interface ImageStoreStats {
  images: number;
  bytes: number;
  pending: number;
  /** Pending images removed by the quota or for disk space since start (never uploaded). */
  evicted: number;
  /** Images not kept since start because the disk was low and nothing was left to evict, or the write failed. */
  skipped: number;
}

export interface ImageStore {
  /** Scans the directory (removing partial files) and rebuilds the index. */
  start(): Promise<void>;
  /**
   * Keeps one image for result `seq` of store `storeId`, with its anomaly heatmap when given (a
   * PNG, or the anomaly map to render as one here); evicts the oldest while over quota.
   */
  keep(storeId: string | undefined, seq: number, image: Buffer, heatmap?: Buffer | AnomalyMap): Promise<void>;
  /** The oldest image not yet uploaded, or undefined. */
  nextPending(): KeptImage | undefined;
  /** Moves an image to the uploaded side. */
  markSent(image: KeptImage): Promise<void>;
  /** Forgets a pending image that cannot be uploaded (file gone, refused by the fleet). */
  discard(image: KeptImage): Promise<void>;
  /**
   * Deletes images (uploaded first, then the oldest pending) until the disk has `targetFreeBytes`
   * free or no image is left. Resolves with the images deleted.
   */
  freeDisk(targetFreeBytes: number): Promise<number>;
  /** Resolves when a pending image exists (now or later), or when close() is called. */
  waitForPending(): Promise<void>;
  stats(): ImageStoreStats;
  alarms(): string[];
  close(): void;
}

export interface ImageStoreOptions {
  dir: string;
  maxBytes: number;
  logger: Logger;
  /** A pending image was evicted by the quota. Must not throw. */
  onEvicted?: (image: KeptImage, evictedSinceStart: number) => void;
  /** Free space the data disk must keep (bytes; 0 or absent: quota only). */
  minFreeBytes?: number;
  /** Free bytes of the disk holding `dir` (default: statfs); undefined when unknown. */
  freeBytes?: (dir: string) => number | undefined;
}

const LEGACY = 'legacy';
const NAME = /^(\d+)\.(jpg|png|webp|tif|bmp|bin)$/;
const HEATMAP_NAME = /^(\d+)\.heatmap\.png$/;
const heatmapName = (seq: number) => `${seq}.heatmap.png`;
/** Bytes an image takes with its heatmap. */
const sizeOf = (img: KeptImage) => img.bytes + (img.heatmap?.bytes ?? 0);

const TYPES: Record<string, string> = {
  jpg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  tif: 'image/tiff',
  bmp: 'image/bmp',
  bin: 'application/octet-stream',
};

/** File extension from the image's magic bytes (the bytes are what the camera sent). */
export function imageExtension(image: Buffer): string {
  if (image[0] === 0xff && image[1] === 0xd8) return 'jpg';
  if (image.subarray(0, 4).toString('latin1') === '\x89PNG') return 'png';
  if (image.subarray(0, 4).toString('latin1') === 'RIFF' && image.subarray(8, 12).toString('latin1') === 'WEBP') return 'webp';
  const tiff = image.subarray(0, 4).toString('latin1');
  if (tiff === 'II*\0' || tiff === 'MM\0*') return 'tif';
  if (image[0] === 0x42 && image[1] === 0x4d) return 'bmp';
  return 'bin';
}

/** Creates the image store; call start() before use. */
export function createImageStore(opts: ImageStoreOptions): ImageStore {
  const log = opts.logger;
  // Oldest first within each side; keep() appends, so the lists stay ordered without sorting.
  let pending: KeptImage[] = [];
  /** keep() calls between their start and their image entering `pending`: counted as pending. */
  let writing = 0;
  let sent: KeptImage[] = [];
  let bytes = 0;
  let evicted = 0;
  let skipped = 0;
  const minFree = opts.minFreeBytes ?? 0;
  const diskFree = () => (opts.freeBytes ?? statfsFree)(opts.dir);
  let evictedRecently = false;
  let closed = false;
  let waiters: (() => void)[] = [];
  let seqTmp = 0;

  const storeDir = (storeId: string | undefined) => path.join(opts.dir, storeId ?? LEGACY);

  /**
   * Both sides of every store, oldest first. A heatmap is attached to the image of its seq in the
   * same store on either side (a crash between the two renames of markSent leaves them apart);
   * one without an image is deleted.
   */
  async function scan(): Promise<{ pending: KeptImage[]; sent: KeptImage[] }> {
    const out = { pending: [] as KeptImage[], sent: [] as KeptImage[] };
    let stores: string[];
    try {
      stores = await readdir(opts.dir);
    } catch {
      return out;
    }
    for (const store of stores) {
      const heatmaps = new Map<number, KeptHeatmap>();
      const found: KeptImage[] = [];
      for (const side of ['pending', 'sent'] as const) {
        const dir = path.join(opts.dir, store, side);
        let names: string[];
        try {
          names = await readdir(dir);
        } catch {
          continue;
        }
        for (const name of names) {
          const file = path.join(dir, name);
          const h = HEATMAP_NAME.exec(name);
          const m = h ? null : NAME.exec(name);
          if (!h && !m) {
            // A write cut short by a crash; never a whole image.
            if (name.endsWith('.tmp')) await unlink(file).catch(() => undefined);
            continue;
          }
          const st = await stat(file).catch(() => undefined);
          if (!st) continue;
          if (h) {
            heatmaps.set(Number(h[1]), { file, bytes: st.size });
            continue;
          }
          const img: KeptImage = {
            storeId: store === LEGACY ? undefined : store,
            seq: Number(m![1]),
            file,
            bytes: st.size,
            contentType: TYPES[m![2]!]!,
            at: st.mtimeMs,
          };
          found.push(img);
          out[side].push(img);
        }
      }
      for (const img of found) {
        const h = heatmaps.get(img.seq);
        if (h) {
          img.heatmap = h;
          heatmaps.delete(img.seq);
          // A crash between markSent's two renames leaves a sent image's heatmap in pending/: finish the move.
          const sentDir = path.join(opts.dir, store, 'sent');
          if (path.dirname(img.file) === sentDir && path.dirname(h.file) !== sentDir) {
            const target = path.join(sentDir, path.basename(h.file));
            if (await rename(h.file, target).then(() => true, () => false)) img.heatmap = { ...h, file: target };
          }
        }
      }
      // Heatmaps whose image is gone (evicted, or the crash came before the image's rename).
      for (const h of heatmaps.values()) await unlink(h.file).catch(() => undefined);
    }
    const order = (a: KeptImage, b: KeptImage) => a.at - b.at || a.seq - b.seq;
    out.pending.sort(order);
    out.sent.sort(order);
    return out;
  }

  async function remove(img: KeptImage): Promise<void> {
    bytes -= sizeOf(img);
    for (const file of [img.file, ...(img.heatmap ? [img.heatmap.file] : [])]) {
      await unlink(file).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') log.warn({ err, file }, 'cannot delete image');
      });
    }
  }

  /** Writes `data` to `file` through a temp file and a rename; no partial file is left behind. */
  async function writeAtomic(file: string, data: Buffer): Promise<void> {
    const tmp = `${file}.${process.pid}.${seqTmp++}.tmp`;
    try {
      await writeFile(tmp, data);
      await rename(tmp, file);
    } catch (err) {
      // ENOSPC mid-write leaves a 0-byte or partial temp file: never keep it.
      await unlink(tmp).catch(() => undefined);
      throw err;
    }
  }

  /** Deletes the oldest image, uploaded ones first; false when none is left. */
  async function evictOne(): Promise<boolean> {
    const victim = sent.shift();
    if (victim) {
      await remove(victim);
      return true;
    }
    const lost = pending.shift();
    if (!lost) return false;
    await remove(lost);
    evicted++;
    evictedRecently = true;
    log.warn({ seq: lost.seq, storeId: lost.storeId, evicted }, 'image quota or disk full; oldest unsent image evicted');
    try {
      opts.onEvicted?.(lost, evicted);
    } catch (err) {
      log.error({ err }, 'eviction hook threw');
    }
    return true;
  }

  async function evict(): Promise<void> {
    while (bytes > opts.maxBytes && (await evictOne()));
  }

  /** Evicts until the disk has `target` bytes free; false when it still has not (nothing left). */
  async function diskRoom(target: number): Promise<boolean> {
    for (;;) {
      const free = diskFree();
      if (free === undefined || free >= target) return true;
      if (!(await evictOne())) return false;
    }
  }

  function wake(): void {
    const w = waiters;
    waiters = [];
    for (const fn of w) fn();
  }

  /**
   * Writes one image to `pending/` (temp file, then rename), its heatmap first, and adds it; false
   * when skipped for lack of room. A heatmap that does not fit or cannot be written is left out.
   */
  async function write(storeId: string | undefined, seq: number, image: Buffer, source: Buffer | AnomalyMap | undefined, at: number): Promise<boolean> {
    const ext = imageExtension(image);
    const dir = path.join(storeDir(storeId), 'pending');
    await mkdir(dir, { recursive: true });
    const heatmapPng = await heatmapBytes(source, seq);
    const file = path.join(dir, `${seq}.${ext}`);
    let extra = heatmapPng && heatmapPng.length > 0 && image.length + heatmapPng.length <= opts.maxBytes ? heatmapPng : undefined;
    if (minFree > 0 && !(await diskRoom(minFree + image.length + (extra?.length ?? 0)))) {
      if (!extra || !(await diskRoom(minFree + image.length))) {
        skipped++;
        log.warn({ seq, bytes: image.length, minFreeBytes: minFree }, 'data disk low and no image left to evict; image not kept');
        return false;
      }
      extra = undefined; // room for the image alone
    }
    let heatmap: KeptHeatmap | undefined;
    if (extra) {
      const hfile = path.join(dir, heatmapName(seq));
      try {
        await writeAtomic(hfile, extra);
        heatmap = { file: hfile, bytes: extra.length };
      } catch (err) {
        log.warn({ err, seq }, 'cannot write heatmap; image kept without it');
      }
    }
    try {
      await writeAtomic(file, image);
    } catch (err) {
      if (heatmap) await unlink(heatmap.file).catch(() => undefined);
      skipped++;
      throw err;
    }
    const kept: KeptImage = { storeId, seq, file, bytes: image.length, contentType: TYPES[ext]!, at };
    if (heatmap) kept.heatmap = heatmap;
    // In the order keep() was called, not the order writes finished (a defect's image waits for its
    // heatmap's write): the oldest result's image is evicted first.
    let i = pending.length;
    while (i > 0 && (pending[i - 1]!.at > at || (pending[i - 1]!.at === at && pending[i - 1]!.storeId === storeId && pending[i - 1]!.seq > seq))) i--;
    pending.splice(i, 0, kept);
    bytes += sizeOf(kept);
    return true;
  }

  /** The PNG of a heatmap: as given, or rendered from its anomaly map (undefined if that fails). */
  async function heatmapBytes(source: Buffer | AnomalyMap | undefined, seq: number): Promise<Buffer | undefined> {
    if (source === undefined || Buffer.isBuffer(source)) return source;
    try {
      return await renderHeatmap(source.values, source.width, source.height);
    } catch (err) {
      log.warn({ err, seq }, 'cannot render heatmap; image kept without it');
      return undefined;
    }
  }

  return {
    async start() {
      ({ pending, sent } = await scan());
      bytes = [...pending, ...sent].reduce((sum, i) => sum + sizeOf(i), 0);
      log.info({ pending: pending.length, sent: sent.length, bytes }, 'image store opened');
      await evict();
      if (pending.length > 0) wake();
    },
    async keep(storeId, seq, image, heatmap) {
      if (closed || opts.maxBytes <= 0 || image.length > opts.maxBytes) return;
      // From the first await on, the image is on its way to `pending`: stats() counts it, so
      // "nothing pending" never holds while a kept image is still being written.
      writing++;
      let kept: boolean;
      try {
        kept = await write(storeId, seq, image, heatmap, Date.now());
      } finally {
        writing--;
      }
      if (!kept) return;
      await evict();
      wake();
    },
    nextPending() {
      return pending[0];
    },
    async markSent(img) {
      const i = pending.indexOf(img);
      if (i < 0) return; // evicted meanwhile
      const dir = path.join(storeDir(img.storeId), 'sent');
      await mkdir(dir, { recursive: true });
      const target = path.join(dir, path.basename(img.file));
      try {
        await rename(img.file, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // evicted while we waited
        throw err;
      }
      let heatmap = img.heatmap;
      if (heatmap) {
        const hTarget = path.join(dir, path.basename(heatmap.file));
        // A failed move leaves it where it is: still found by its seq at the next start.
        heatmap = await rename(heatmap.file, hTarget).then(
          () => ({ ...heatmap!, file: hTarget }),
          (err: unknown) => (log.warn({ err, file: heatmap!.file }, 'cannot move heatmap to sent'), heatmap),
        );
      }
      // Re-find: keep() or evict() may have moved entries while we awaited.
      const j = pending.indexOf(img);
      if (j >= 0) pending.splice(j, 1);
      const moved: KeptImage = { ...img, file: target };
      if (heatmap) moved.heatmap = heatmap;
      sent.push(moved);
      if (pending.length === 0) evictedRecently = false;
    },
    async discard(img) {
      const i = pending.indexOf(img);
      if (i < 0) return;
      pending.splice(i, 1);
      await remove(img);
    },
    async freeDisk(target) {
      const before = pending.length + sent.length;
      await diskRoom(target);
      return before - pending.length - sent.length;
    },
    waitForPending() {
      if (pending.length > 0 || closed) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
    stats() {
      return { images: pending.length + sent.length, bytes, pending: pending.length + writing, evicted, skipped };
    },
    alarms() {
      return evictedRecently ? [IMAGE_QUOTA_ALARM] : [];
    },
    close() {
      closed = true;
      wake();
    },
  };
}
