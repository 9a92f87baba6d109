/**
 * A small gray thumbnail of a frame's decoded pixels (issue 17: image health at the edge), made
 * by area averaging in one pass over the pixels the model's pre-processing has already decoded and
 * resized, so asking for it never decodes the image a second time.
 */
import type { RawImage } from './tensor.js';

/**
 * Gray levels 0..255, row by row: the model input's own bytes where it already fits (a view, no
 * copy), otherwise block means (not rounded).
 */
export interface GrayThumbnail {
  width: number;
  height: number;
  data: Float32Array | Uint8Array;
}

/** Pixel reads per thumbnail at most: a 640×640 RGB input costs 16 k reads at 128, not all 1.2 M. */
const MAX_READS = 16_384;

/**
 * Averages `image` over square blocks of b×b pixels, b the smallest integer that brings the
 * longer side to at most `maxSide` (pixels past the last whole block are left out); RGB becomes
 * gray as the mean of the three channels. Where averaging every pixel would take more than 16 k
 * reads, each block is averaged over evenly spaced samples (one, for a 640×640 RGB input at 128),
 * which bounds the cost for large model inputs: the statistics taken from the thumbnail need
 * the same method on every frame, not every pixel. One allocation, none for a gray input that fits.
 */
export function grayThumbnail(image: RawImage, maxSide: number): GrayThumbnail {
  const { width: w, height: h, channels: c, data } = image;
  const b = Math.max(1, Math.ceil(Math.max(w, h) / Math.max(1, Math.floor(maxSide))));
  const tw = Math.max(1, Math.floor(w / b));
  const th = Math.max(1, Math.floor(h / b));
  if (b === 1 && c === 1) {
    // The model's input already fits: the thumbnail is its pixels, viewed (tw = w here). No copy:
    // at hundreds of frames a second a 64 KB copy per frame cost more in garbage collection
    // than every check together.
    return { width: tw, height: th, data: data.subarray(0, tw * th) };
  }
  const out = new Float32Array(tw * th);
  const perSide = Math.max(1, Math.floor(Math.sqrt(MAX_READS / (tw * th * c))));
  const step = Math.max(1, Math.ceil(Math.min(b, w, h) / perSide));
  const n = Math.ceil(Math.min(b, w) / step);
  const m = Math.ceil(Math.min(b, h) / step);
  const scale = 1 / (n * m * c);
  const rowStride = w * c;
  for (let ty = 0; ty < th; ty++) {
    for (let tx = 0; tx < tw; tx++) {
      let s = 0;
      for (let j = 0; j < m; j++) {
        let i = (ty * b + j * step) * rowStride + tx * b * c;
        for (let k = 0; k < n; k++, i += step * c) for (let ch = 0; ch < c; ch++) s += data[i + ch]!;
      }
      out[ty * tw + tx] = s * scale;
    }
  }
  return { width: tw, height: th, data: out };
}
