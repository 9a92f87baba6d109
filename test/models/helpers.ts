/** Shared helpers for the models tests: temp dirs, tiny images from raw pixels, packages. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import sharp from 'sharp';
import { writeModelPackage, type ManifestDraft } from '../../models/authoring.js';
import type { OnnxModelBuilder } from '../../models/onnx-builder.js';

/** A fresh temp directory, removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'osprey-models-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A lossless PNG from interleaved 8-bit pixels (1 or 3 channels). */
export function pngFromPixels(pixels: number[], width: number, height: number, channels: 1 | 3): Promise<Buffer> {
  const img = sharp(Buffer.from(pixels), { raw: { width, height, channels } });
  // Without b-w, sharp writes one-channel raw input as an RGB PNG.
  return (channels === 1 ? img.toColourspace('b-w') : img).png().toBuffer();
}

/** A PNG of one solid RGB colour. */
export function solidPng(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  const px: number[] = [];
  for (let i = 0; i < width * height; i++) px.push(...rgb);
  return pngFromPixels(px, width, height, 3);
}

/** Writes a package for a builder's model under `dir`. */
export function writePackage(dir: string, draft: ManifestDraft, model: OnnxModelBuilder): Promise<unknown> {
  return writeModelPackage(dir, draft, model.toBytes());
}

/** CRC-32 (PNG chunk checksums), so tests can craft PNG headers. */
export function crc32(bytes: Uint8Array): number {
  let c = ~0;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * A PNG whose IHDR claims width×height RGB pixels but carries only a few bytes of image data:
 * a decompression bomb's header, without the bomb.
 */
export function pngClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01])),
    chunk('IEND', new Uint8Array(0)),
  ]);
}
