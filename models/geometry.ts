/**
 * Where the source image lands in the model input, per resize mode. Pure arithmetic, so the
 * definitions can be checked by hand and boxes can be mapped back to the original image.
 *
 * - stretch: resize to exactly width×height (aspect ratio not kept).
 * - letterbox: Ultralytics `LetterBox(auto=False, scaleup=True, center=True)`:
 *   r = min(W/w, H/h); the image is resized to round(w·r)×round(h·r) and centred, padding
 *   left = round(dw − 0.1), top = round(dh − 0.1) with dw, dh half the leftover; the rest is
 *   filled with padValue (114 by default).
 * - center-crop: torchvision `Resize(s)` + `CenterCrop` (timm's `crop_pct` is cropFraction):
 *   the side that needs the larger factor is resized to s = floor(T/cropFraction) (T its target),
 *   the other to floor(dim·s/side); then the centre width×height is cut at
 *   round((resized − target)/2). For a square target this is exactly torchvision's shorter-side
 *   resize.
 *
 * Python's round() (half to even) is used where the frameworks use it.
 */
import type { ResolvedInput } from './manifest-check.js';

/** Maps original image coordinates to model input coordinates: xi = xo·scaleX + offsetX. */
export interface InputTransform {
  scaleX: number;
  scaleY: number;
  offsetX: number;
  offsetY: number;
}

export interface ResizePlan {
  /** Size the decoded image is resized to (equal to the source size when no resize is needed). */
  resizeWidth: number;
  resizeHeight: number;
  /** Top-left of the region taken from the resized image (center-crop; 0 otherwise). */
  cropLeft: number;
  cropTop: number;
  /** Where that region goes in the model input (letterbox padding; 0 otherwise). */
  padLeft: number;
  padTop: number;
  /** Model input width and height. */
  width: number;
  height: number;
  transform: InputTransform;
  /** Ultralytics-style letterbox parameters (letterbox mode only), for un-doing boxes. */
  letterbox?: { scale: number; padX: number; padY: number };
}

/** Python 3 round(): half to even. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  // `+ 0` turns −0 (Math.round(−0.1)) into 0.
  return (Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r) + 0;
}

/** Plans the resize of a srcWidth×srcHeight image into the model input described by `input`. */
export function planResize(
  srcWidth: number,
  srcHeight: number,
  input: Pick<ResolvedInput, 'width' | 'height' | 'resize' | 'cropFraction'>,
): ResizePlan {
  const W = input.width;
  const H = input.height;
  const base = { cropLeft: 0, cropTop: 0, padLeft: 0, padTop: 0, width: W, height: H };
  switch (input.resize) {
    case 'stretch':
      return {
        ...base,
        resizeWidth: W,
        resizeHeight: H,
        transform: { scaleX: W / srcWidth, scaleY: H / srcHeight, offsetX: 0, offsetY: 0 },
      };
    case 'letterbox': {
      const r = Math.min(W / srcWidth, H / srcHeight);
      const newW = Math.min(W, Math.max(1, roundHalfEven(srcWidth * r)));
      const newH = Math.min(H, Math.max(1, roundHalfEven(srcHeight * r)));
      const padLeft = roundHalfEven((W - newW) / 2 - 0.1);
      const padTop = roundHalfEven((H - newH) / 2 - 0.1);
      return {
        ...base,
        resizeWidth: newW,
        resizeHeight: newH,
        padLeft,
        padTop,
        transform: { scaleX: r, scaleY: r, offsetX: padLeft, offsetY: padTop },
        letterbox: { scale: r, padX: padLeft, padY: padTop },
      };
    }
    case 'center-crop': {
      const f = input.cropFraction;
      const sW = Math.floor(W / f);
      const sH = Math.floor(H / f);
      // The side needing the larger factor is fitted exactly; the other follows (floored, as torchvision).
      let rw: number;
      let rh: number;
      if (sW / srcWidth >= sH / srcHeight) {
        rw = sW;
        rh = Math.max(sH, Math.floor((srcHeight * sW) / srcWidth));
      } else {
        rh = sH;
        rw = Math.max(sW, Math.floor((srcWidth * sH) / srcHeight));
      }
      const cropLeft = roundHalfEven((rw - W) / 2);
      const cropTop = roundHalfEven((rh - H) / 2);
      return {
        ...base,
        resizeWidth: rw,
        resizeHeight: rh,
        cropLeft,
        cropTop,
        transform: { scaleX: rw / srcWidth, scaleY: rh / srcHeight, offsetX: -cropLeft, offsetY: -cropTop },
      };
    }
  }
}

/** Maps a box in model input pixels back to original image pixels (clipped to the image). */
export function boxToOriginal(
  box: readonly [number, number, number, number],
  t: InputTransform,
  srcWidth: number,
  srcHeight: number,
): [number, number, number, number] {
  const clip = (v: number, hi: number) => Math.min(Math.max(v, 0), hi);
  return [
    clip((box[0] - t.offsetX) / t.scaleX, srcWidth),
    clip((box[1] - t.offsetY) / t.scaleY, srcHeight),
    clip((box[2] - t.offsetX) / t.scaleX, srcWidth),
    clip((box[3] - t.offsetY) / t.scaleY, srcHeight),
  ];
}
