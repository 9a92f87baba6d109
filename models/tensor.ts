/**
 * Raw pixels → model input tensor, as a pure function so every value can be checked by hand:
 * placement (crop/pad), channel order, value = (pixel·scale − mean[c]) / std[c], layout and dtype.
 */
import { float32ArrayToFloat16 } from './float16.js';
import type { ResolvedInput } from './manifest-check.js';
import type { ResizePlan } from './geometry.js';

/** 8-bit interleaved pixels: 1 channel (gray) or 3 (R, G, B). */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

export type TensorData = Float32Array | Uint16Array | Uint8Array;

export interface InputTensor {
  dtype: ResolvedInput['dtype'];
  data: TensorData;
  /** [1, C, H, W] (nchw) or [1, H, W, C] (nhwc). */
  dims: [number, number, number, number];
}

/** ITU-R BT.601 luma, rounded, as OpenCV's cvtColor and Pillow's convert('L') compute it. */
export function luma(r: number, g: number, b: number): number {
  return Math.round(0.299 * r + 0.587 * g + 0.114 * b);
}

/**
 * Writes `image` (already resized to plan.resizeWidth×plan.resizeHeight) into a tensor of
 * plan.width×plan.height: pixel (x, y) of the input takes resized pixel
 * (x − padLeft + cropLeft, y − padTop + cropTop), or padValue outside the image.
 */
export function pixelsToTensor(
  image: RawImage,
  plan: Pick<ResizePlan, 'width' | 'height' | 'cropLeft' | 'cropTop' | 'padLeft' | 'padTop'>,
  input: Pick<ResolvedInput, 'layout' | 'dtype' | 'color' | 'channels' | 'padValue' | 'scale' | 'mean' | 'std'>,
  /** A buffer to write into instead of allocating one; used when its type and length fit. Every value is overwritten. */
  reuse?: TensorData,
): InputTensor {
  const { width: W, height: H } = plan;
  const C = input.channels;
  const n = W * H * C;
  // One 256-entry lookup table per channel, already in the output dtype: a load per value
  // instead of a multiply-add (and a float16 rounding) per value.
  let data: TensorData;
  let lut: TensorData;
  const fits = (type: typeof Float32Array | typeof Uint16Array | typeof Uint8Array) => reuse instanceof type && reuse.length === n;
  if (input.dtype === 'uint8') {
    data = fits(Uint8Array) ? reuse! : new Uint8Array(n);
    lut = new Uint8Array(256 * C);
    for (let c = 0; c < C; c++) for (let v = 0; v < 256; v++) lut[c * 256 + v] = v;
  } else {
    const values = new Float32Array(256 * C);
    for (let c = 0; c < C; c++) {
      for (let v = 0; v < 256; v++) values[c * 256 + v] = (v * input.scale - input.mean[c]) / input.std[c];
    }
    if (input.dtype === 'float16') {
      data = fits(Uint16Array) ? reuse! : new Uint16Array(n);
      lut = float32ArrayToFloat16(values);
    } else {
      data = fits(Float32Array) ? reuse! : new Float32Array(n);
      lut = values;
    }
  }

  const nchw = input.layout === 'nchw';
  const plane = W * H;
  const src = image.data;
  const sc = image.channels;
  const iw = image.width;
  // Source channel feeding each model channel (bgr reverses rgb).
  const bgr = input.color === 'bgr';
  // Per-value strides so one loop serves both layouts.
  const pixelStride = nchw ? 1 : C;
  const channelStride = nchw ? plane : 1;
  // Row by row: the padding of a row (letterbox) is filled in runs, and the inner loop over the
  // image's pixels has no bounds test (a 640×640 letterbox is 1.2 M values per frame).
  const x0 = Math.min(W, Math.max(0, plan.padLeft - plan.cropLeft));
  const x1 = Math.max(x0, Math.min(W, iw + plan.padLeft - plan.cropLeft));
  const dx = plan.cropLeft - plan.padLeft;
  const lut0 = lut.subarray(0, 256);
  const lut1 = C === 3 ? lut.subarray(256, 512) : lut0;
  const lut2 = C === 3 ? lut.subarray(512, 768) : lut0;
  const pad = input.padValue;
  const padValues = [lut0[pad]!, lut1[pad]!, lut2[pad]!];
  const fillPad = (from: number, to: number, y: number) => {
    if (from >= to) return;
    for (let c = 0; c < C; c++) {
      const v = padValues[c]!;
      if (nchw) data.fill(v, c * plane + y * W + from, c * plane + y * W + to);
      else for (let x = from; x < to; x++) data[(y * W + x) * C + c] = v;
    }
  };
  for (let y = 0; y < H; y++) {
    const sy = y - plan.padTop + plan.cropTop;
    if (sy < 0 || sy >= image.height || x0 >= x1) {
      fillPad(0, W, y);
      continue;
    }
    fillPad(0, x0, y);
    fillPad(x1, W, y);
    let o = (y * W + x0) * pixelStride;
    let s = (sy * iw + x0 + dx) * sc;
    if (C === 1) {
      if (sc === 1) for (let x = x0; x < x1; x++, o += pixelStride, s++) data[o] = lut0[src[s]!]!;
      else for (let x = x0; x < x1; x++, o += pixelStride, s += 3) data[o] = lut0[luma(src[s]!, src[s + 1]!, src[s + 2]!)]!;
    } else if (sc === 1) {
      for (let x = x0; x < x1; x++, o += pixelStride, s++) {
        const v = src[s]!;
        data[o] = lut0[v]!;
        data[o + channelStride] = lut1[v]!;
        data[o + 2 * channelStride] = lut2[v]!;
      }
    } else {
      const r = bgr ? 2 : 0;
      const b = bgr ? 0 : 2;
      for (let x = x0; x < x1; x++, o += pixelStride, s += 3) {
        data[o] = lut0[src[s + r]!]!;
        data[o + channelStride] = lut1[src[s + 1]!]!;
        data[o + 2 * channelStride] = lut2[src[s + b]!]!;
      }
    }
  }
  const dims: [number, number, number, number] = nchw ? [1, C, H, W] : [1, H, W, C];
  return { dtype: input.dtype, data, dims };
}
