/**
 * Safe image decoding with sharp. The header is read first, so an image that claims too many
 * pixels is refused before anything is allocated for its pixels; decoding then runs with
 * `failOn: 'error'`, so truncated or corrupt data is an error instead of a grey half-image.
 */
import sharp, { type KernelEnum, type Metadata } from 'sharp';
import { OspreyError } from '../protocol/errors.js';
import type { RawImage } from './tensor.js';

/** Default pixel limit: 50 megapixels, well above any line camera and far below a decompression bomb. */
export const DEFAULT_MAX_PIXELS = 50_000_000;

/** Formats accepted from cameras. SVG/PDF and friends are refused: they are programs, not photos. */
const ACCEPTED_FORMATS = new Set(['jpeg', 'png', 'webp', 'tiff', 'gif', 'heif', 'jp2', 'avif']);

export interface ImageHeader {
  format: string;
  width: number;
  height: number;
  /** Colour channels without alpha: 1 (gray) or 3. */
  channels: 1 | 3;
}

/**
 * Reads and checks an image header without decoding pixels. Throws OspreyError
 * OSP_ERR_IMAGE_EMPTY, OSP_ERR_IMAGE_DECODE or OSP_ERR_IMAGE_TOO_LARGE.
 */
export async function probeImage(bytes: Uint8Array, maxPixels = DEFAULT_MAX_PIXELS): Promise<ImageHeader> {
  if (bytes.length === 0) throw new OspreyError('OSP_ERR_IMAGE_EMPTY', 'image is empty (0 bytes)');
  let meta: Metadata;
  try {
    // limitInputPixels off here: only the header is read, and we want our own, clearer limit error.
    meta = await sharp(bytes, { limitInputPixels: false }).metadata();
  } catch (err) {
    throw new OspreyError('OSP_ERR_IMAGE_DECODE', `not a decodable image: ${firstLine(err)}`, { cause: err });
  }
  const { format, width, height } = meta;
  if (!format || !ACCEPTED_FORMATS.has(format)) {
    throw new OspreyError('OSP_ERR_IMAGE_DECODE', `unsupported image format ${format ?? 'unknown'}`);
  }
  if (!width || !height) throw new OspreyError('OSP_ERR_IMAGE_DECODE', `${format} image has no dimensions`);
  if (width * height > maxPixels) {
    throw new OspreyError(
      'OSP_ERR_IMAGE_TOO_LARGE',
      `image is ${width}×${height} (${(width * height / 1e6).toFixed(1)} MP), above the limit of ${(maxPixels / 1e6).toFixed(1)} MP`,
    );
  }
  const colour = (meta.channels ?? 3) - (meta.hasAlpha ? 1 : 0);
  return { format, width, height, channels: colour === 1 ? 1 : 3 };
}

export interface DecodeOptions {
  /** Resize to this size (stretch) while decoding; omit to keep the source size. */
  width?: number;
  height?: number;
  kernel?: keyof KernelEnum;
  maxPixels?: number;
}

/**
 * Decodes an image (already checked by probeImage) to 8-bit gray or RGB pixels, optionally
 * resized in the same pass. Throws OSP_ERR_IMAGE_DECODE when the pixel data is bad.
 */
export async function decodePixels(bytes: Uint8Array, header: ImageHeader, opts: DecodeOptions = {}): Promise<RawImage> {
  try {
    let img = sharp(bytes, {
      failOn: 'error',
      limitInputPixels: opts.maxPixels ?? DEFAULT_MAX_PIXELS,
      sequentialRead: true,
    });
    const w = opts.width ?? header.width;
    const h = opts.height ?? header.height;
    if (w !== header.width || h !== header.height) {
      img = img.resize(w, h, { fit: 'fill', kernel: opts.kernel ?? 'linear' });
    }
    // Gray sources stay one channel (the common industrial camera); everything else becomes sRGB.
    img = img.removeAlpha().toColourspace(header.channels === 1 ? 'b-w' : 'srgb');
    const { data, info } = await img.raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    if (info.width !== w || info.height !== h || (info.channels !== 1 && info.channels !== 3)) {
      throw new Error(`unexpected decode result ${info.width}×${info.height}×${info.channels}`);
    }
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
      channels: info.channels,
    };
  } catch (err) {
    if (err instanceof OspreyError) throw err;
    throw new OspreyError('OSP_ERR_IMAGE_DECODE', `cannot decode ${header.format} image: ${firstLine(err)}`, { cause: err });
  }
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.trim();
}
