/**
 * Anomaly heatmaps kept and uploaded with defect images (issue 16): the image store bounds them
 * like images (one quota, one disk floor, deleted with their image, rebuilt at start), and a real
 * edge agent with the built-in anomaly model sends a defect frame's heatmap to a real fleet while
 * an ok frame has none.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { pino } from 'pino';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createImageStore } from '../../edge-agent/image-store.js';
import { createImageUploader } from '../../edge-agent/image-uploader.js';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { renderHeatmap } from '../../models/postprocess/heatmap.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir, testLogger } from './fixtures.js';

const jpeg = (n: number, size = 100) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(size - 3, n)]);
const png = (n: number, size = 50) => Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.alloc(size - 8, n)]);
const STORE = 'storeAAAAAAAAAAA';

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const side of ['pending', 'sent']) {
    const names = await readdir(path.join(dir, STORE, side)).catch(() => [] as string[]);
    out.push(...names.map((n) => `${side}/${n}`));
  }
  return out.sort();
}

test('a heatmap counts toward the image quota, moves and is deleted with its image, and never costs an image', async (t) => {
  const dir = await tempDir(t);
  const store = createImageStore({ dir, maxBytes: 400, logger: testLogger() });
  await store.start();
  await store.keep(STORE, 1, jpeg(1), png(1));
  assert.deepEqual(store.stats(), { images: 1, bytes: 150, pending: 1, evicted: 0, skipped: 0 }, 'image and heatmap bytes together');
  assert.deepEqual(await files(dir), ['pending/1.heatmap.png', 'pending/1.jpg']);
  assert.equal(store.nextPending()?.heatmap?.bytes, 50);

  await store.markSent(store.nextPending()!);
  assert.deepEqual(await files(dir), ['sent/1.heatmap.png', 'sent/1.jpg'], 'moved with its image');

  // An image and heatmap larger than the whole quota: the image alone is kept.
  await store.keep(STORE, 2, jpeg(2, 380), png(2, 50));
  assert.equal(store.nextPending()?.seq, 2);
  assert.equal(store.nextPending()?.heatmap, undefined);
  assert.deepEqual(await files(dir), ['pending/2.jpg'], 'seq 1 (sent) evicted with its heatmap to make room');
  assert.equal(store.stats().bytes, 380);

  // Over quota: the oldest goes with its heatmap, and bytes never pass maxBytes.
  const big = createImageStore({ dir: await tempDir(t), maxBytes: 300, logger: testLogger() });
  await big.start();
  for (let seq = 1; seq <= 4; seq++) {
    await big.keep(STORE, seq, jpeg(seq), png(seq));
    assert.ok(big.stats().bytes <= 300, `after seq ${seq}: ${big.stats().bytes} bytes`);
  }
  assert.deepEqual(big.stats(), { images: 2, bytes: 300, pending: 2, evicted: 2, skipped: 0 });
});

test('an anomaly map handed to the store is rendered there (after the answer) and kept as the same PNG renderHeatmap makes', async (t) => {
  const dir = await tempDir(t);
  const store = createImageStore({ dir, maxBytes: 100_000, logger: testLogger() });
  await store.start();
  const values = new Float32Array(16).map((_, i) => i / 15);
  await store.keep(STORE, 7, jpeg(7), { width: 4, height: 4, values });
  const kept = store.nextPending()!;
  assert.ok(kept.heatmap, 'the map became a heatmap file');
  const bytes = await readFile(kept.heatmap.file);
  assert.deepEqual(bytes, await renderHeatmap(values, 4, 4));
  assert.equal(kept.heatmap.bytes, bytes.length);
  assert.equal(store.stats().bytes, 100 + bytes.length, 'the rendered PNG counts toward the quota');
  // A map that cannot be rendered costs only the heatmap, never the image.
  await store.keep(STORE, 8, jpeg(8), { width: 4, height: 0, values: new Float32Array(0) });
  assert.deepEqual(await files(dir), ['pending/7.heatmap.png', 'pending/7.jpg', 'pending/8.jpg']);
});

test("images stay in the order they were kept though a defect's image waits for its heatmap's write", async (t) => {
  const store = createImageStore({ dir: await tempDir(t), maxBytes: 1 << 20, logger: testLogger() });
  await store.start();
  // Seq 1 (a defect, two writes) and seq 2 (one write) at once, as consecutive frames are.
  await Promise.all([store.keep(STORE, 1, jpeg(1), png(1)), store.keep(STORE, 2, jpeg(2))]);
  assert.equal(store.nextPending()?.seq, 1, 'the oldest first: uploaded first, evicted first');
});

test('the disk floor: a heatmap is dropped before the image when only the image fits; the start-up scan re-attaches heatmaps and deletes orphans', async (t) => {
  const dir = await tempDir(t);
  let free = 10_000 + 100 + 20; // room above the floor for the image, not for its heatmap too
  const store = createImageStore({ dir, maxBytes: 1 << 20, minFreeBytes: 10_000, freeBytes: () => free, logger: testLogger() });
  await store.start();
  await store.keep(STORE, 1, jpeg(1), png(1));
  assert.deepEqual(await files(dir), ['pending/1.jpg']);
  assert.equal(store.stats().skipped, 0, 'the image was kept');
  free = 1 << 20;
  await store.keep(STORE, 2, jpeg(2), png(2));
  await store.markSent(store.nextPending()!); // seq 1
  assert.deepEqual(await files(dir), ['pending/2.heatmap.png', 'pending/2.jpg', 'sent/1.jpg']);

  // Crashes: before an image's rename (an orphan heatmap), mid-write (a temp file), and between the
  // two renames of markSent (a pair split across the sides).
  await writeFile(path.join(dir, STORE, 'pending', '7.heatmap.png'), png(7));
  await writeFile(path.join(dir, STORE, 'sent', '8.heatmap.png.123.0.tmp'), png(8));
  await rename(path.join(dir, STORE, 'pending', '2.heatmap.png'), path.join(dir, STORE, 'sent', '2.heatmap.png'));
  const again = createImageStore({ dir, maxBytes: 1 << 20, logger: testLogger() });
  await again.start();
  assert.deepEqual(await files(dir), ['pending/2.jpg', 'sent/1.jpg', 'sent/2.heatmap.png'], 'the orphan and the temp file are gone');
  assert.equal(again.nextPending()?.heatmap?.bytes, 50, 'the heatmap is found with its image');
  await again.markSent(again.nextPending()!);
  assert.deepEqual(await files(dir), ['sent/1.jpg', 'sent/2.heatmap.png', 'sent/2.jpg'], 'together again');
  assert.equal(again.stats().bytes, 250);
  await again.freeDisk(Number.MAX_SAFE_INTEGER); // the disk is never enough: everything goes
  assert.deepEqual(await files(dir), [], 'deleted with their images');
  assert.equal(again.stats().bytes, 0);
});

test('the uploader sends the heatmap after its image: a failure retries the heatmap alone, a refusal (an older fleet) never holds the image back', async (t) => {
  const seen: string[] = [];
  // A real HTTP server: the first heatmap PUT answers 503, seq 2's heatmap 404 (a fleet without the route).
  let failHeatmapOnce = true;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push(`${req.method} ${req.url} ${req.headers['content-type']}`);
      const heatmap = req.url!.includes('/heatmap');
      const status = !heatmap ? 201 : req.url!.includes('/2/') ? 404 : failHeatmapOnce ? ((failHeatmapOnce = false), 503) : 201;
      res.writeHead(status, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const images = createImageStore({ dir: await tempDir(t), maxBytes: 1 << 20, logger: testLogger() });
  await images.start();
  await images.keep(STORE, 1, jpeg(1), png(1));
  await images.keep(STORE, 2, jpeg(2), png(2));
  await images.keep(STORE, 3, jpeg(3));
  const uploader = createImageUploader({
    edgeId: 'e1',
    baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    images,
    logger: testLogger(),
    retryBaseMs: 5,
    retryMaxMs: 20,
    timeoutMs: 5000,
  });
  uploader.start();
  t.after(() => uploader.close());
  await waitFor(() => images.stats().pending === 0, 'all uploaded');
  const q = `?store=${STORE}`;
  assert.deepEqual(seen, [
    `PUT /api/results/e1/1/image${q} image/jpeg`,
    `PUT /api/results/e1/1/heatmap${q} image/png`,
    `PUT /api/results/e1/1/heatmap${q} image/png`,
    `PUT /api/results/e1/2/image${q} image/jpeg`,
    `PUT /api/results/e1/2/heatmap${q} image/png`,
    `PUT /api/results/e1/3/image${q} image/jpeg`,
  ], 'the image once, its heatmap retried; a refused heatmap does not stop the queue');
  assert.deepEqual(uploader.stats(), { uploaded: 3, failures: 1, refused: 0, heatmaps: 1 });
});

test("a real agent's defect frame sends its heatmap to a real fleet; an ok frame renders none and has none at the fleet", { timeout: 120_000 }, async (t) => {
  const fleet = await startFleet(t);
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;
  const dataDir = path.join(fleet.dataDir, 'press-9');
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: 'press-9',
      line: 'line-H',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, 'press-9', path.join(dataDir, 'fleet.credential')) },
      model: { dir: await ensureDemoModel(path.join(fleet.dataDir, 'models')) },
      // Keep every 2nd good part too: an ok frame's image is kept and uploaded, without a heatmap.
      images: { sampling: { keepGoodEvery: 2 } },
      sync: { batchSize: 10, intervalMs: 100 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  // Seeds outside the demo model's training seeds (1–40).
  const outcomes = [];
  for (const [seed, defect] of [[300, 'scratch'], [301, null], [302, null], [303, 'spot'], [304, null]] as const) {
    outcomes.push(await agent.inspect(await generatePartImage({ seed, defect, format: 'jpeg' }), { camera: 'cam1', source: 'http' }));
  }
  const defects = outcomes.filter((o) => o.record.verdict === 'defect');
  const oks = outcomes.filter((o) => o.record.verdict === 'ok');
  assert.ok(defects.length >= 1 && oks.length >= 2, `the model calls defects and ok parts: ${outcomes.map((o) => o.record.verdict).join(',')}`);
  // The answer carries the raw map, never a PNG: encoding happens after the answer, in the image store.
  for (const o of defects) assert.ok(o.inspection.anomalyMap?.values instanceof Float32Array, `defect #${o.record.seq} returned its anomaly map`);
  for (const o of outcomes) assert.equal((o.inspection as { heatmapPng?: unknown }).heatmapPng, undefined, `#${o.record.seq} answered without a rendered PNG`);
  for (const o of oks) assert.equal(o.inspection.anomalyMap, undefined, `ok #${o.record.seq} returned none`);

  type Row = { seq: number; storeId?: string; verdict: string; hasImage: boolean; hasHeatmap?: boolean };
  const stored = async () => (await fleet.api('GET', '/api/results?edge=press-9&limit=100')).body.items as Row[];
  const okSeqs = new Set(oks.map((o) => o.record.seq));
  await waitFor(async () => {
    const rows = await stored();
    return defects.every((d) => rows.some((r) => r.seq === d.record.seq && r.hasHeatmap)) && rows.some((r) => okSeqs.has(r.seq) && r.hasImage);
  }, 'defect heatmaps and a sampled ok image uploaded');
  const rows = await stored();
  const okKept = rows.find((r) => okSeqs.has(r.seq) && r.hasImage)!.seq;
  assert.deepEqual(
    rows.filter((r) => r.hasHeatmap).map((r) => r.seq).sort(),
    defects.map((d) => d.record.seq).sort(),
    'only the defect frames have a heatmap',
  );
  assert.equal(rows.find((r) => r.seq === okKept)?.hasImage, true);
  assert.equal(rows.find((r) => r.seq === okKept)?.hasHeatmap, undefined, 'a kept ok image has no heatmap');

  const storeId = rows[0]!.storeId!;
  const reader = await fleet.creds.headers('inspector');
  const d = defects[0]!;
  const res = await fetch(`${fleet.httpUrl}/api/results/press-9/${d.record.seq}/heatmap?store=${storeId}`, { headers: reader });
  assert.equal(res.status, 200);
  const bytes = Buffer.from(await res.arrayBuffer());
  const m = d.inspection.anomalyMap!;
  assert.deepEqual(bytes, await renderHeatmap(m.values, m.width, m.height), 'the fleet serves the heatmap of the map the model returned');
  const meta = await sharp(bytes).metadata();
  assert.equal(meta.format, 'png');
  assert.equal(meta.width, 64);
  const none = await fetch(`${fleet.httpUrl}/api/results/press-9/${okKept}/heatmap?store=${storeId}`, { headers: reader });
  assert.equal(none.status, 404);
  await none.body?.cancel();
});
