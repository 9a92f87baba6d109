/**
 * The images of a training job, laid out in its temp folder the way `osprey train` reads them:
 * `good/` (+ `defects/`) for anomaly, one folder per label for classify. Two sources:
 *
 * - images already in the fleet: kept frames (results with an image in the image store),
 *   filtered by edges or line, time range and model, read through FleetStore.listResults and
 *   FleetImageStore.get (no SQL here) and linked (symlinks to the blobs, never copies);
 * - an uploaded tar archive, extracted with every path checked (no absolute paths, no `..`, no
 *   links, bounded depth, count and bytes).
 *
 * A frame's label is its reviewed label when a review exists (`reviewOf`, the fleet's review
 * store: fleet-manager/review-store.ts) else the model's call: for anomaly, verdict ok → good,
 * defect → defects; for classify, the label.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { OspreyError, safeLine } from '../protocol/errors.js';
import type { Verdict } from '../protocol/messages.js';
import type { FleetImageStore, ResultKey } from './image-store.js';
import type { FleetStore, StoredResult } from './store.js';
import type { TrainingKind } from './training-store.js';

/** The filters of a fleet source. */
export interface FleetImageQuery {
  edges?: string[];
  line?: string;
  /** Inclusive epoch ms. */
  from?: number;
  /** Exclusive epoch ms. */
  to?: number;
  /** `name@version` as results carry it. */
  model?: string;
}

/** An inspector's verdict on a frame (issue 16); it overrides the model's call. */
export interface FrameReview {
  verdict: Verdict;
  label: string;
}

export interface SourceLimits {
  /** Most images a job takes (the rest are left out, newest kept). */
  maxImages: number;
  /** Most result rows read looking for kept frames. */
  maxScannedResults: number;
}

const IMAGE_EXT = /\.(jpe?g|png|bmp|webp|tiff?)$/i;
const EXT_OF: Record<string, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp', 'image/tiff': 'tiff', 'image/bmp': 'bmp' };
/** Folder names made from labels: what a file system and `osprey train` take everywhere. */
export const folderOf = (label: string) => label.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_').slice(0, 100) || '_';

/** The file extension of an image blob: from its content type, else from its first bytes. */
export async function extensionOf(file: string, contentType: string): Promise<string> {
  const known = EXT_OF[contentType];
  if (known) return known;
  const fh = await open(file, 'r');
  try {
    const b = Buffer.alloc(12);
    await fh.read(b, 0, 12, 0);
    if (b[0] === 0xff && b[1] === 0xd8) return 'jpg';
    if (b.subarray(0, 4).toString('latin1') === '\x89PNG') return 'png';
    if (b.subarray(0, 2).toString('latin1') === 'BM') return 'bmp';
    if (b.subarray(8, 12).toString('latin1') === 'WEBP') return 'webp';
    return 'tiff';
  } finally {
    await fh.close();
  }
}

/**
 * Links the fleet's kept frames matching `query` into `dir` (by folder, as `kind` needs);
 * returns images per folder.
 */
export async function materialiseFleetImages(
  deps: { results: Pick<FleetStore, 'listResults'>; images: Pick<FleetImageStore, 'get'>; reviewOf?: (key: ResultKey) => Promise<FrameReview | null> },
  kind: TrainingKind,
  query: FleetImageQuery,
  dir: string,
  limits: SourceLimits,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let taken = 0;
  let scanned = 0;
  const place = async (r: StoredResult) => {
    const key: ResultKey = { edgeId: r.edgeId, storeId: r.storeId ?? '', seq: r.seq };
    const image = await deps.images.get(key);
    if (!image) return;
    const review = deps.reviewOf ? await deps.reviewOf(key) : null;
    const verdict = review?.verdict ?? r.verdict;
    const label = review?.label ?? r.label;
    const folder = kind === 'anomaly' ? (verdict === 'ok' ? 'good' : 'defects') : folderOf(label);
    await mkdir(join(dir, folder), { recursive: true });
    const name = `${folderOf(r.edgeId)}_${folderOf(key.storeId || '0')}_${r.seq}.${await extensionOf(image.file, image.contentType)}`;
    await symlink(image.file, join(dir, folder, name));
    counts[folder] = (counts[folder] ?? 0) + 1;
    taken++;
  };
  const scopes: { edge?: string; line?: string }[] = query.edges?.length ? query.edges.map((edge) => ({ edge, ...(query.line && { line: query.line }) })) : [query.line ? { line: query.line } : {}];
  for (const scope of scopes) {
    let after: { ts: number; id: number } | undefined;
    for (;;) {
      if (taken >= limits.maxImages || scanned >= limits.maxScannedResults) return counts;
      const page = await deps.results.listResults({
        ...scope,
        ...(query.model && { model: query.model }),
        ...(query.from !== undefined && { from: query.from }),
        ...(query.to !== undefined && { to: query.to }),
        limit: Math.min(500, limits.maxScannedResults - scanned),
        ...(after && { after }),
      });
      scanned += page.items.length;
      for (const r of page.items) {
        if (taken >= limits.maxImages) break;
        await place(r);
      }
      if (!page.next) break;
      after = page.next;
    }
  }
  return counts;
}

const BLOCK = 512;
const text = (h: Buffer, off: number, len: number) => {
  const end = h.indexOf(0, off);
  return h.subarray(off, end >= 0 && end < off + len ? end : off + len).toString('utf8');
};

/** The path of a pax extended header's `path` record, if any. */
function paxPath(data: Buffer): string | undefined {
  let off = 0;
  let path: string | undefined;
  while (off < data.length) {
    const space = data.indexOf(0x20, off);
    if (space < 0) break;
    const len = Number(data.subarray(off, space).toString('latin1'));
    if (!Number.isSafeInteger(len) || len <= 0) break;
    const record = data.subarray(space + 1, off + len - 1).toString('utf8');
    const eq = record.indexOf('=');
    if (record.slice(0, eq) === 'path') path = record.slice(eq + 1);
    off += len;
  }
  return path;
}

/**
 * Checks a path from an archive and returns its parts; throws OSP_ERR_BAD_REQUEST naming it when
 * it is absolute, climbs out (`..`), or is deeper than `maxDepth` parts.
 */
function safeParts(raw: string, maxDepth: number): string[] {
  const bad = (why: string): never => {
    throw new OspreyError('OSP_ERR_BAD_REQUEST', `training archive entry "${safeLine(raw, 120)}" ${why}`);
  };
  if (raw.startsWith('/') || raw.includes('\\') || raw.includes('\0')) bad('is an absolute or non-portable path; refused');
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) bad('climbs out of the archive (..); refused');
  if (parts.length > maxDepth) bad(`is deeper than ${maxDepth} levels`);
  return parts;
}

export interface ArchiveLimits {
  /** Most image files taken from the archive. */
  maxImages: number;
}

/**
 * Extracts the images of a tar archive (plain ustar or GNU tar; pax `path` honoured) into `dir`,
 * keeping only image files (`*.jpg`, `.png`, …; hidden files skipped) and refusing links, device
 * files, unsafe paths and folders `kind` does not read. Returns images per top folder.
 */
export async function extractTrainingArchive(file: string, kind: TrainingKind, dir: string, limits: ArchiveLimits): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  const fh = await open(file, 'r');
  let images = 0;
  try {
    const size = (await fh.stat()).size;
    const h = Buffer.alloc(BLOCK);
    let off = 0;
    let nextPath: string | undefined;
    const bad = (why: string): never => {
      throw new OspreyError('OSP_ERR_BAD_REQUEST', `not a valid training archive: ${why}`);
    };
    for (;;) {
      if (off + BLOCK > size) bad(off === 0 ? 'empty or not a tar file' : 'truncated (no end-of-archive marker)');
      await fh.read(h, 0, BLOCK, off);
      if (h.every((b) => b === 0)) break;
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
      if (parseInt(text(h, 148, 8).trim(), 8) !== sum) bad(off === 0 ? 'not a tar file (header checksum mismatch)' : `header checksum mismatch at byte ${off}`);
      const type = String.fromCharCode(h[156]!);
      const entrySize = parseInt(text(h, 124, 12).trim() || '0', 8);
      if (!Number.isSafeInteger(entrySize) || entrySize < 0) bad(`invalid entry size at byte ${off}`);
      const start = off + BLOCK;
      if (start + entrySize > size) bad(`entry at byte ${off} is truncated`);
      off = start + Math.ceil(entrySize / BLOCK) * BLOCK;
      const ustar = text(h, 257, 6).startsWith('ustar');
      const name = nextPath ?? (ustar && h[345] !== 0 ? `${text(h, 345, 155)}/${text(h, 0, 100)}` : text(h, 0, 100));
      nextPath = undefined;
      if (type === 'x' || type === 'L') {
        if (entrySize > 64 * 1024) bad('extended header over 64 KiB');
        const data = Buffer.alloc(entrySize);
        await fh.read(data, 0, entrySize, start);
        nextPath = type === 'L' ? text(data, 0, entrySize) : paxPath(data);
        continue;
      }
      if (type === 'g') continue;
      const parts = safeParts(name, kind === 'anomaly' ? 3 : 2);
      if (type === '5') continue; // folders are made as their files need them
      if (type !== '0' && type !== '\0' && type !== '7') bad(`entry "${safeLine(name, 120)}" is a link or special file; only files and folders are taken`);
      const base = parts[parts.length - 1] ?? '';
      if (parts.length < 2 || base.startsWith('.') || !IMAGE_EXT.test(base)) continue; // top-level files, notes, hidden files
      const top = parts[0]!;
      if (kind === 'anomaly' && top !== 'good' && top !== 'defects') bad(`folder "${safeLine(top, 80)}" is neither good/ nor defects/ (anomaly archives hold good/ and optionally defects/)`);
      if (kind === 'anomaly' && top === 'good' && parts.length > 2) bad(`good/ must hold images directly, not "${safeLine(name, 120)}"`);
      if (++images > limits.maxImages) bad(`more than ${limits.maxImages} images (training.maxImages)`);
      const target = join(dir, ...parts);
      await mkdir(join(dir, ...parts.slice(0, -1)), { recursive: true });
      const out = createWriteStream(target, { flags: 'wx' });
      if (entrySize === 0) await new Promise<void>((resolve, reject) => out.on('error', reject).end(resolve));
      else await pipeline(createReadStream(file, { start, end: start + entrySize - 1 }), out);
      counts[top] = (counts[top] ?? 0) + 1;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new OspreyError('OSP_ERR_BAD_REQUEST', 'not a valid training archive: a file appears twice');
    throw err;
  } finally {
    await fh.close();
  }
  return counts;
}

/** Refuses a layout `osprey train` cannot train on, with one line naming what is short. */
export function checkCounts(kind: TrainingKind, counts: Record<string, number>, goodLabel?: string): void {
  const list = Object.entries(counts).map(([k, n]) => `${k}: ${n}`).join(', ') || 'none';
  if (kind === 'anomaly') {
    if ((counts.good ?? 0) < 3) throw new OspreyError('OSP_ERR_BAD_REQUEST', `too few images: anomaly training needs at least 3 good images, found ${counts.good ?? 0} (${list})`);
    return;
  }
  const labels = Object.keys(counts);
  if (labels.length < 2) throw new OspreyError('OSP_ERR_BAD_REQUEST', `too few labels: classify training needs one folder per label, at least 2, found ${labels.length} (${list})`);
  const short = labels.filter((l) => counts[l]! < 2);
  if (short.length) throw new OspreyError('OSP_ERR_BAD_REQUEST', `too few images: every label needs at least 2, ${short.map((l) => `${l} has ${counts[l]}`).join(', ')}`);
  if (goodLabel !== undefined && !labels.includes(goodLabel)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `goodLabel ${safeLine(goodLabel, 80)} is not one of the labels (${labels.join(', ')})`);
}
