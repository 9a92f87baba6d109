/**
 * Encoded image → model input tensor, driven by the manifest: probe the header, plan the resize
 * (geometry.ts), decode and resize with sharp in one pass, then place, normalise and lay out the
 * pixels (tensor.ts).
 */
import { decodePixels, probeImage, type ImageHeader } from './decode.js';
import { planResize, type ResizePlan } from './geometry.js';
import type { ResolvedInput } from './manifest-check.js';
import { pixelsToTensor, type InputTensor, type TensorData } from './tensor.js';
import { grayThumbnail, type GrayThumbnail } from './thumbnail.js';

export interface Preprocessed {
  tensor: InputTensor;
  plan: ResizePlan;
  /** The source image's header: size for mapping boxes back. */
  source: ImageHeader;
  /** A gray thumbnail of the resized pixels, when `thumbnail` asked for one (image health, issue 17). */
  thumbnail?: GrayThumbnail;
}

/** Pre-processes one encoded image for a model input. Throws OSP_ERR_IMAGE_* on bad images. */
export async function preprocessImage(
  bytes: Uint8Array,
  input: ResolvedInput,
  opts: { maxPixels?: number; reuse?: () => TensorData | undefined; thumbnail?: number } = {},
): Promise<Preprocessed> {
  const source = await probeImage(bytes, opts.maxPixels);
  const plan = planResize(source.width, source.height, input);
  const pixels = await decodePixels(bytes, source, {
    width: plan.resizeWidth,
    height: plan.resizeHeight,
    kernel: input.interpolation,
    maxPixels: opts.maxPixels,
  });
  // Taken only now, after decoding: a frame that fails to decode never holds a pooled buffer.
  const pre: Preprocessed = { tensor: pixelsToTensor(pixels, plan, input, opts.reuse?.()), plan, source };
  if (opts.thumbnail) pre.thumbnail = grayThumbnail(pixels, opts.thumbnail);
  return pre;
}
