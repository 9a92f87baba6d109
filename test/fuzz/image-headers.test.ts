/**
 * Fuzzes the image sniffing and decoding every frame goes through (models/decode.ts): random
 * JPEG and PNG headers (any marker, length, dimension, colour type), real images cut short and
 * with bytes overwritten, and other formats' signatures. readHeader never throws; probeImage and
 * decodePixels answer pixels or an OSP_ERR_IMAGE_* error in one line; a header claiming
 * billions of pixels allocates nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodePixels, probeImage, readHeader } from '../../models/decode.js';
import { generatePartImage } from '../../models/fixtures.js';
import { assertBoundedMemory, assertClearError, fuzz, imageBytes, jpegHeader, pngHeader } from './arbitraries.js';

const MB = 1024 * 1024;
const IMAGE_CODES = ['OSP_ERR_IMAGE_EMPTY', 'OSP_ERR_IMAGE_DECODE', 'OSP_ERR_IMAGE_TOO_LARGE'] as const;
/** Small, so a fuzzed header within it decodes fast; anything claiming more is refused from the header. */
const MAX_PIXELS = 256 * 256;

test('readHeader never throws and reports only what the bytes say', async () => {
  await fuzz(
    'readHeader',
    fc.property(fc.oneof(jpegHeader, pngHeader, fc.uint8Array({ maxLength: 64 })), (bytes) => {
      const h = readHeader(bytes);
      if (!h) return;
      assert.ok(h.width > 0 && h.height > 0 && (h.channels === 1 || h.channels === 3));
      assert.ok(h.format === 'jpeg' || h.format === 'png');
    }),
    20,
  );
});

test('probeImage and decodePixels answer pixels or one OSP_ERR_IMAGE_* line, in bounded memory', async () => {
  const real = [await generatePartImage({ seed: 3, format: 'jpeg' }), await generatePartImage({ seed: 4, format: 'png' })];
  await assertBoundedMemory(96 * MB, 'images', () =>
    fuzz(
      'probeImage+decodePixels',
      fc.asyncProperty(imageBytes(real), async (bytes) => {
        try {
          const header = await probeImage(bytes, MAX_PIXELS);
          assert.ok(header.width * header.height <= MAX_PIXELS);
          const pixels = await decodePixels(bytes, header, { maxPixels: MAX_PIXELS, width: 16, height: 16 });
          assert.equal(pixels.data.length, 16 * 16 * pixels.channels);
        } catch (err) {
          assertClearError(err, IMAGE_CODES, 'probe/decode');
        }
      }),
      2,
    ),
  );
});
