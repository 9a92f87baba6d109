/**
 * Occlusion maps for classifiers (issue 17, "explainability"): which parts of an image the
 * model's call depends on. A grey patch slides over a grid of cells (stride = cell); for each
 * cell the image is run again with that cell greyed, and the drop of the predicted label's
 * probability is recorded. A large drop: the model needs that part of the image for its call.
 *
 * The predicted label is the top-1 label of the unaltered image. The image is decoded once
 * (sharp, as the runtime decodes it), each variant is encoded losslessly (PNG) so only the patch
 * differs, and every variant goes through the package's own pre- and post-processing.
 */
import sharp from 'sharp';
import { OspreyError } from '../protocol/errors.js';
import type { ModelRunner } from './types.js';

/** Grey of the patch (mid-grey, the usual occlusion fill). */
export const OCCLUSION_FILL = 128;
/** Cells per side by default: 8 × 8 = 64 runs of the model. */
export const OCCLUSION_CELLS = 8;

export interface OcclusionMap {
  /** The label whose probability is followed: top-1 of the unaltered image. */
  label: string;
  /** Its probability on the unaltered image. */
  score: number;
  /** Grid: `cols` × `rows` cells over an image of `width` × `height` pixels. */
  cols: number;
  rows: number;
  width: number;
  height: number;
  /** Row-major, one per cell: score − the label's probability with that cell greyed (may be negative). */
  drops: number[];
}

/** Pixel bounds of cell (cx, cy): cells tile the image exactly (integer edges, last ones absorb the remainder). */
export function cellRect(width: number, height: number, cols: number, rows: number, cx: number, cy: number): { left: number; top: number; width: number; height: number } {
  const left = Math.floor((cx * width) / cols);
  const top = Math.floor((cy * height) / rows);
  return { left, top, width: Math.floor(((cx + 1) * width) / cols) - left, height: Math.floor(((cy + 1) * height) / rows) - top };
}

/** Decoded pixels of an image, as sharp gives them (gray stays one channel; alpha dropped). */
export interface Pixels {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export async function decodeForOcclusion(image: Buffer): Promise<Pixels> {
  try {
    const { data, info } = await sharp(image).removeAlpha().raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { data, width: info.width, height: info.height, channels: info.channels };
  } catch (err) {
    throw new OspreyError('OSP_ERR_IMAGE_DECODE', `cannot decode the result's image: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`, { cause: err });
  }
}

/** A lossless PNG of `px` with the rectangle filled with OCCLUSION_FILL. */
export function greyedPng(px: Pixels, rect: { left: number; top: number; width: number; height: number }): Promise<Buffer> {
  const data = Buffer.from(px.data);
  const rowBytes = px.width * px.channels;
  for (let y = rect.top; y < rect.top + rect.height; y++) {
    data.fill(OCCLUSION_FILL, y * rowBytes + rect.left * px.channels, y * rowBytes + (rect.left + rect.width) * px.channels);
  }
  return sharp(data, { raw: { width: px.width, height: px.height, channels: px.channels } }).png({ compressionLevel: 0 }).toBuffer();
}

/** The probability `runner` gives `label` on `image` (every label asked for, so it is never cut off by top-k). */
export async function labelScore(runner: ModelRunner, image: Buffer, label: string): Promise<number> {
  const r = await runner.inspect(image, { topK: runner.manifest.labels.length });
  const hit = r.top?.find((t) => t.label === label);
  if (!hit) throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `the model gave no probability for label ${label}`);
  return hit.score;
}

/** Computes the occlusion map of a classifier on one encoded image. */
export async function occlusionMap(runner: ModelRunner, image: Buffer, cells = OCCLUSION_CELLS): Promise<OcclusionMap> {
  if (runner.manifest.task !== 'classification') {
    throw new OspreyError('OSP_ERR_BAD_REQUEST', `occlusion maps are for classifiers; ${runner.id} is a ${runner.manifest.task} model`);
  }
  const first = await runner.inspect(image, { topK: runner.manifest.labels.length });
  const best = first.top?.[0];
  if (!best) throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `${runner.id} gave no label probabilities`);
  const px = await decodeForOcclusion(image);
  const cols = Math.min(cells, px.width);
  const rows = Math.min(cells, px.height);
  const drops: number[] = [];
  for (let cy = 0; cy < rows; cy++) {
    for (let cx = 0; cx < cols; cx++) {
      const variant = await greyedPng(px, cellRect(px.width, px.height, cols, rows, cx, cy));
      drops.push(best.score - (await labelScore(runner, variant, best.label)));
    }
  }
  return { label: best.label, score: best.score, cols, rows, width: px.width, height: px.height, drops };
}

/**
 * The map's values for the heatmap PNG: drops scaled so the cell that matters most is 1 (red)
 * and cells whose greying does not lower the score (or raises it) are 0 (blue).
 */
export function occlusionHeat(map: Pick<OcclusionMap, 'drops'>): Float32Array {
  const top = Math.max(0, ...map.drops);
  return Float32Array.from(map.drops, (d) => (top > 0 ? Math.max(0, d) / top : 0));
}
