import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodePixels, probeImage } from '../../models/decode.js';
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
