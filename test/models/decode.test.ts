import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodePixels, probeImage, readHeader } from '../../models/decode.js';
import { generatePartImage } from '../../models/synthetic.js';
import { isOspreyError, type ErrorCode } from '../../protocol/errors.js';
import { pngClaiming } from './helpers.js';

async function rejects(p: Promise<unknown>, code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isOspreyError(err, code), `expected ${code}, got ${String(err)}`);
    assert.ok(!(err as Error).message.includes('\n'), 'one-line message');
    return true;
  });
}

async function decode(bytes: Uint8Array, maxPixels?: number) {
  const header = await probeImage(bytes, maxPixels);
  return decodePixels(bytes, header, { maxPixels });
}

test('zero bytes → OSP_ERR_IMAGE_EMPTY', async () => {
  await rejects(decode(Buffer.alloc(0)), 'OSP_ERR_IMAGE_EMPTY');
});

test('a text file and random bytes → OSP_ERR_IMAGE_DECODE', async () => {
  await rejects(decode(Buffer.from('timestamp,station,part\n2024-01-01,3,A-17\n')), 'OSP_ERR_IMAGE_DECODE');
  const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24));
  await rejects(decode(garbage), 'OSP_ERR_IMAGE_DECODE');
});

test('SVG is refused even though sharp could render it', async () => {
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>');
  await rejects(decode(svg), 'OSP_ERR_IMAGE_DECODE');
});

test('truncated JPEG → OSP_ERR_IMAGE_DECODE (not a half-grey image)', async () => {
  const jpeg = await generatePartImage({ seed: 7 });
  assert.ok((await decode(jpeg)).width === 256);
  for (const fraction of [0.6, 0.95]) {
    await rejects(decode(jpeg.subarray(0, Math.floor(jpeg.length * fraction))), 'OSP_ERR_IMAGE_DECODE');
  }
  // Cut inside the header: nothing to probe.
  await rejects(decode(jpeg.subarray(0, 20)), 'OSP_ERR_IMAGE_DECODE');
});

test('a PNG whose header claims 30000×30000 is refused before decoding', async () => {
  const bomb = pngClaiming(30000, 30000);
  assert.ok(bomb.length < 100);
  const started = process.hrtime.bigint();
  const rss = process.memoryUsage().rss;
  await rejects(decode(bomb), 'OSP_ERR_IMAGE_TOO_LARGE');
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.ok(ms < 500, `took ${ms} ms`);
  // 30000² RGB would be 2.7 GB; nothing near that may have been allocated.
  assert.ok(process.memoryUsage().rss - rss < 200e6);
  const header = await probeImage(pngClaiming(300, 200), 50_000_000);
  assert.deepEqual([header.format, header.width, header.height], ['png', 300, 200]);
});

test('the pixel limit is configurable', async () => {
  const jpeg = await generatePartImage({ seed: 7, width: 200, height: 100 });
  await rejects(decode(jpeg, 19_999), 'OSP_ERR_IMAGE_TOO_LARGE');
  assert.equal((await decode(jpeg, 20_000)).height, 100);
});

test('the JavaScript header reader agrees with sharp for every JPEG and PNG kind it answers, and leaves the rest to sharp', async () => {
  const sharp = (await import('sharp')).default;
  const rgb = await sharp(await generatePartImage({ seed: 11, width: 97, height: 61 })).raw().toBuffer({ resolveWithObject: true });
  const base = () => sharp(rgb.data, { raw: { width: rgb.info.width, height: rgb.info.height, channels: rgb.info.channels } });
  const images: [string, Buffer][] = [
    ['jpeg rgb', await base().jpeg().toBuffer()],
    ['jpeg progressive', await base().jpeg({ progressive: true }).toBuffer()],
    ['jpeg gray', await base().toColourspace('b-w').jpeg().toBuffer()],
    ['jpeg cmyk', await base().toColourspace('cmyk').jpeg().toBuffer()],
    ['jpeg with exif', await base().withMetadata({ exif: { IFD0: { Copyright: 'osprey' } } }).jpeg().toBuffer()],
    ['png rgb', await base().png().toBuffer()],
    ['png rgba', await base().ensureAlpha().png().toBuffer()],
    ['png gray', await base().toColourspace('b-w').png().toBuffer()],
    ['png gray 16-bit', await base().toColourspace('grey16').png().toBuffer()],
    ['png gray + alpha', await base().toColourspace('b-w').ensureAlpha().png().toBuffer()],
    ['png palette', await base().png({ palette: true }).toBuffer()],
    ['webp', await base().webp().toBuffer()],
  ];
  for (const [what, bytes] of images) {
    const meta = await sharp(bytes).metadata();
    const colour = meta.channels! - (meta.hasAlpha ? 1 : 0);
    const fromSharp = { format: meta.format, width: meta.width, height: meta.height, channels: colour === 1 ? 1 : 3 };
    const quick = readHeader(bytes);
    if (what === 'png palette' || what === 'webp') assert.equal(quick, undefined, `${what} goes to sharp`);
    else assert.deepEqual(quick, fromSharp, what);
    assert.deepEqual(await probeImage(bytes), fromSharp, `${what} through probeImage`);
  }
  // Cut short anywhere in the header: not answered (sharp then refuses it).
  const jpeg = images[0]![1];
  for (let n = 0; n < 40; n++) {
    const h = readHeader(jpeg.subarray(0, n));
    assert.ok(h === undefined || h.width === 97, `cut at ${n}`);
  }
  assert.equal(readHeader(Buffer.from([0xff, 0xd8, 0xff, 0xda, 0, 2])), undefined, 'scan before any frame header');
});
