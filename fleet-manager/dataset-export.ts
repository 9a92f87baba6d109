/**
 * Reviewed images as a dataset (issue 16), laid out for ImageFolder, YOLO or COCO and written as
 * a tar stream: one image's bytes in memory at a time (read in chunks from its blob), the small
 * label files beside them. The labels are the ones given in review; boxes are the result's
 * detections, relabelled when the review changed the label, and none for a frame reviewed as ok.
 */
import { createReadStream } from 'node:fs';
import { header } from '../models/package-archive.js';
import type { Detection } from '../protocol/messages.js';
import type { StoredImage } from './image-store.js';
import type { ReviewRecord } from './review-store.js';
import type { ExportFormat } from './review-schemas.js';
import { folderOf } from './training-sources.js';

const BLOCK = 512;

/** One reviewed frame to export. */
export interface ExportFrame {
  review: ReviewRecord;
  image: StoredImage;
  /** File extension of the image (jpg, png, …). */
  ext: string;
  /** The result's detections (boxes in image pixels). */
  detections: readonly Detection[];
  /** Image size in pixels; needed by YOLO and COCO. */
  width?: number;
  height?: number;
}

/** A file of the archive: an image blob on disk, or bytes made here. */
export type ExportEntry = { path: string; mtime: number } & ({ file: string; size: number } | { bytes: Buffer });

/** The boxes of a frame as reviewed: relabelled with the review's label; none when reviewed ok or when the model drew none. */
export function reviewedBoxes(f: Pick<ExportFrame, 'review' | 'detections'>): { label: string; box: readonly [number, number, number, number] }[] {
  if (f.review.verdict === 'ok' || f.review.review === 'missed-defect') return [];
  return f.detections.map((d) => ({ label: f.review.review === 'relabelled' ? f.review.label : d.label, box: d.box }));
}

const baseName = (f: ExportFrame) => `${folderOf(f.review.edgeId)}_${f.review.storeId ? folderOf(f.review.storeId.slice(0, 12)) : '0'}_${f.review.seq}.${f.ext}`;
const mtimeOf = (f: ExportFrame) => Math.floor(f.review.reviewedAt / 1000);
const imageEntry = (path: string, f: ExportFrame): ExportEntry => ({ path, mtime: mtimeOf(f), file: f.image.file, size: f.image.bytes });
const text = (path: string, body: string, mtime: number): ExportEntry => ({ path, mtime, bytes: Buffer.from(body, 'utf8') });
const fixed = (v: number) => Number(v.toFixed(6)).toString();

/**
 * The archive's files for `format`: ImageFolder `LABEL/NAME`; YOLO `images/`, `labels/NAME.txt`
 * (class cx cy w h, normalised) and `data.yaml` (frames reviewed as defects without boxes, or
 * of unknown size, cannot be labelled for detection and are left out); COCO `images/` and `annotations.json`.
 */
export function datasetEntries(frames: readonly ExportFrame[], format: ExportFormat, now: number): ExportEntry[] {
  const mtime = Math.floor(now / 1000);
  if (format === 'imagefolder') return frames.map((f) => imageEntry(`${folderOf(f.review.label)}/${baseName(f)}`, f));
  const boxed = frames.map((f) => ({ f, boxes: reviewedBoxes(f) }));
  if (format === 'yolo') {
    const usable = boxed.filter(({ f, boxes }) => f.review.verdict === 'ok' || (boxes.length > 0 && !!f.width && !!f.height));
    const names = [...new Set(usable.flatMap(({ boxes }) => boxes.map((b) => b.label)))].sort();
    const out: ExportEntry[] = [];
    for (const { f, boxes } of usable) {
      const name = baseName(f);
      const w = f.width ?? 0;
      const h = f.height ?? 0;
      const lines = boxes.map(({ label, box: [x1, y1, x2, y2] }) =>
        `${names.indexOf(label)} ${fixed((x1 + x2) / 2 / w)} ${fixed((y1 + y2) / 2 / h)} ${fixed((x2 - x1) / w)} ${fixed((y2 - y1) / h)}`,
      );
      out.push(imageEntry(`images/${name}`, f), text(`labels/${name.replace(/\.[^.]+$/, '')}.txt`, lines.map((l) => `${l}\n`).join(''), mtimeOf(f)));
    }
    const yaml = ['path: .', 'train: images', 'val: images', `nc: ${names.length}`, 'names:', ...names.map((n, i) => `  ${i}: ${JSON.stringify(n)}`)].join('\n');
    out.push(text('data.yaml', `${yaml}\n`, mtime));
    return out;
  }
  const categories = [...new Set(boxed.flatMap(({ f, boxes }) => [...boxes.map((b) => b.label), f.review.label]))].sort();
  const catId = (label: string) => categories.indexOf(label) + 1;
  const images: Record<string, unknown>[] = [];
  const annotations: Record<string, unknown>[] = [];
  const out: ExportEntry[] = [];
  for (const [i, { f, boxes }] of boxed.entries()) {
    const name = baseName(f);
    out.push(imageEntry(`images/${name}`, f));
    images.push({
      id: i + 1,
      file_name: name,
      width: f.width ?? 0,
      height: f.height ?? 0,
      // Beyond COCO: the frame's reviewed label and verdict, and where it came from.
      label: f.review.label,
      category_id: catId(f.review.label),
      verdict: f.review.verdict,
      review: f.review.review,
      osprey: { edgeId: f.review.edgeId, storeId: f.review.storeId || null, seq: f.review.seq, ts: f.review.ts, model: f.review.model },
    });
    for (const { label, box: [x1, y1, x2, y2] } of boxes) {
      const bw = x2 - x1;
      const bh = y2 - y1;
      annotations.push({ id: annotations.length + 1, image_id: i + 1, category_id: catId(label), bbox: [x1, y1, bw, bh], area: bw * bh, iscrowd: 0 });
    }
  }
  const coco = {
    info: { description: 'Osprey reviewed images', date_created: new Date(now).toISOString() },
    images,
    annotations,
    categories: categories.map((name, i) => ({ id: i + 1, name })),
  };
  out.push(text('annotations.json', JSON.stringify(coco), mtime));
  return out;
}

/** The ustar header of one entry; a path over 100 bytes is split into ustar's prefix and name. */
function entryHeader(path: string, size: number, mtime: number): Buffer {
  if (Buffer.byteLength(path) <= 100) return header(path, size, mtime);
  const cut = path.lastIndexOf('/', 155);
  const h = header(path.slice(cut + 1), size, mtime);
  h.write(path.slice(0, cut), 345, 155, 'utf8');
  h.write('        ', 148, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'ascii');
  return h;
}

/** The tar archive of `entries`, chunk by chunk (image blobs streamed from disk). */
export async function* tarChunks(entries: readonly ExportEntry[]): AsyncGenerator<Buffer> {
  for (const e of entries) {
    const size = 'bytes' in e ? e.bytes.length : e.size;
    yield entryHeader(e.path, size, e.mtime);
    if ('bytes' in e) yield e.bytes;
    else {
      let read = 0;
      for await (const chunk of createReadStream(e.file, { highWaterMark: 64 * 1024 })) {
        const b = chunk as Buffer;
        // Blobs are immutable; a size that differs would corrupt every entry after it.
        if (read + b.length > size) throw new Error(`image blob ${e.file} is larger than recorded (${size} bytes)`);
        read += b.length;
        yield b;
      }
      if (read !== size) throw new Error(`image blob ${e.file} is smaller than recorded (${read} of ${size} bytes)`);
    }
    const pad = (BLOCK - (size % BLOCK)) % BLOCK;
    if (pad) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(BLOCK * 2);
}
