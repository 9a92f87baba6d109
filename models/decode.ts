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
  const quick = readHeader(bytes);
  if (quick) return checkSize(quick, maxPixels);
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
  const colour = (meta.channels ?? 3) - (meta.hasAlpha ? 1 : 0);
  return checkSize({ format, width, height, channels: colour === 1 ? 1 : 3 }, maxPixels);
}

function checkSize(header: ImageHeader, maxPixels: number): ImageHeader {
  const { width, height } = header;
  if (width * height > maxPixels) {
    throw new OspreyError(
      'OSP_ERR_IMAGE_TOO_LARGE',
      `image is ${width}×${height} (${(width * height / 1e6).toFixed(1)} MP), above the limit of ${(maxPixels / 1e6).toFixed(1)} MP`,
    );
  }
  return header;
}

/** JPEG start-of-frame markers (SOF0–SOF15 without DHT C4, JPG C8 and DAC CC). */
const JPEG_SOF = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/**
 * The header of the two formats cameras send, read in JavaScript: a JPEG's first start-of-frame
 * segment or a PNG's IHDR, giving what sharp's metadata() would (same format, size and colour
 * channels) without a round trip through libvips' thread pool (~0.7 ms of every frame's latency).
 * Anything else or anything unusual (palette PNG, a JPEG with 2 components or height 0, a header
 * cut short) returns undefined and goes to sharp. Never a verdict on validity: decodePixels still
 * decodes with failOn 'error' and the pixel limit.
 */
export function readHeader(b: Uint8Array): ImageHeader | undefined {
  if (b.length >= 26 && PNG_SIGNATURE.every((v, i) => b[i] === v)) {
    // Chunk 1 must be IHDR (length 13): width, height (uint32 BE), bit depth, colour type.
    if (be32(b, 8) !== 13 || b[12] !== 0x49 || b[13] !== 0x48 || b[14] !== 0x44 || b[15] !== 0x52) return undefined;
    const width = be32(b, 16);
    const height = be32(b, 20);
    const colourType = b[25];
    // 0 gray, 4 gray + alpha: one colour channel; 2 RGB, 6 RGBA: three. 3 (palette): ask sharp.
    const channels = colourType === 0 || colourType === 4 ? 1 : colourType === 2 || colourType === 6 ? 3 : 0;
    if (!width || !height || !channels) return undefined;
    return { format: 'png', width, height, channels };
  }
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let i = 2;
  while (i + 4 <= b.length) {
    if (b[i] !== 0xff) return undefined;
    const marker = b[i + 1]!;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    // Markers without a length: TEM, RST0–7. SOS or EOI before any frame header: not for us.
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    if (marker === 0xda || marker === 0xd9 || marker === 0xd8) return undefined;
    const length = (b[i + 2]! << 8) | b[i + 3]!;
    if (length < 2) return undefined;
    if (JPEG_SOF.has(marker)) {
      if (length < 8 || i + 10 > b.length) return undefined;
      const height = (b[i + 5]! << 8) | b[i + 6]!;
      const width = (b[i + 7]! << 8) | b[i + 8]!;
      const components = b[i + 9];
      // 1: gray; 3: YCbCr/RGB; 4: CMYK/YCCK, which is decoded to sRGB. Height 0 (DNL): ask sharp.
      const channels = components === 1 ? 1 : components === 3 || components === 4 ? 3 : 0;
      if (!width || !height || !channels) return undefined;
      return { format: 'jpeg', width, height, channels };
    }
    i += 2 + length;
  }
  return undefined;
}

function be32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
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
