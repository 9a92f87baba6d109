/**
 * Kept images at the edge (issue 5): the sampling policy, the bounded store (oldest first out,
 * crash-safe rebuild from disk), and uploads to a real fleet app over a proxy that cuts the link.
 */
import assert from 'node:assert/strict';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { openSqliteImageStore } from '../../fleet-manager/image-store.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { createImageSampler } from '../../edge-agent/image-sampling.js';
import { createImageStore, imageExtension } from '../../edge-agent/image-store.js';
import { createImageUploader } from '../../edge-agent/image-uploader.js';
import { fleetCredential } from '../../edge-agent/fleet-credential.js';
import { results } from '../fleet-manager/helpers.js';
import { startTcpProxy } from '../../simulator/tcp-proxy.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir, testLogger } from './fixtures.js';

const jpeg = (n: number, size = 100) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(size - 3, n)]);

test('sampling keeps defects, scores near the threshold and every Nth good part; the fleet policy overrides', () => {
  const s = createImageSampler();
  assert.equal(s.decide('defect', 0.9, 0.5), 'defect');
  assert.equal(s.decide('ok', 0.47, 0.5), 'uncertain');
  assert.equal(s.decide('ok', 0.1, 0.5), null, 'good parts are not kept by default');
  s.update({ keepDefectImages: false, uncertainBand: 0, keepGoodEvery: 3 });
  assert.equal(s.decide('defect', 0.9, 0.5), null);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => s.decide('ok', 0.1, 0.5)), [null, null, 'sample', null, null, 'sample']);
  s.update(undefined);
  assert.deepEqual(s.policy, { keepDefectImages: true, uncertainBand: 0.05, keepGoodEvery: 0 }, 'no fleet policy: the local one');
});

test('the image store is bounded: uploaded images go first, then the oldest pending ones, counted', async (t) => {
  const dir = await tempDir(t);
  const evicted: number[] = [];
  const store = createImageStore({ dir, maxBytes: 500, logger: testLogger(), onEvicted: (img) => evicted.push(img.seq) });
  await store.start();
  for (let seq = 1; seq <= 4; seq++) await store.keep('storeAAAAAAAAAAA', seq, jpeg(seq));
  assert.equal(store.nextPending()?.seq, 1);
  await store.markSent(store.nextPending()!);
  await store.markSent(store.nextPending()!);
  assert.deepEqual(store.stats(), { images: 4, bytes: 400, pending: 2, evicted: 0, skipped: 0 });
  await store.keep('storeAAAAAAAAAAA', 5, jpeg(5));
  await store.keep('storeAAAAAAAAAAA', 6, jpeg(6));
  assert.deepEqual(evicted, [], 'room came from uploaded images');
  assert.deepEqual(store.stats(), { images: 5, bytes: 500, pending: 4, evicted: 0, skipped: 0 });
  await store.keep('storeAAAAAAAAAAA', 7, jpeg(7));
  assert.deepEqual(evicted, [], 'the second uploaded one');
  assert.deepEqual(store.alarms(), []);
  await store.keep('storeAAAAAAAAAAA', 8, jpeg(8));
  assert.deepEqual(evicted, [3], 'then the oldest pending one');
  assert.deepEqual(store.alarms(), ['image-quota']);
  assert.equal(store.nextPending()?.seq, 4);
  assert.equal(imageExtension(jpeg(1)), 'jpg');
});

test('an image being written counts as pending, so "nothing pending" never holds before it is on disk', async (t) => {
  const dir = await tempDir(t);
  const store = createImageStore({ dir, maxBytes: 10_000, logger: testLogger() });
  await store.start();
  const writing = store.keep('storeAAAAAAAAAAA', 1, jpeg(1));
  // keep() has not finished its write yet (it awaits the file system): the image is still pending.
  assert.equal(store.stats().pending, 1, 'an image on its way to pending/ is pending');
  assert.equal(store.nextPending(), undefined, 'but not uploadable before it is on disk');
  await writing;
  assert.equal(store.stats().pending, 1);
  assert.equal(store.nextPending()?.seq, 1);
  await store.markSent(store.nextPending()!);
  assert.equal(store.stats().pending, 0);
});

test('a restart rebuilds the store from disk and drops partial writes', async (t) => {
  const dir = await tempDir(t);
  const first = createImageStore({ dir, maxBytes: 10_000, logger: testLogger() });
  await first.start();
  await first.keep(undefined, 1, jpeg(1));
  await first.keep(undefined, 2, jpeg(2));
  await first.markSent(first.nextPending()!);
  first.close();
  // A crash in the middle of a write leaves a .tmp file behind.
  await writeFile(path.join(dir, 'legacy', 'pending', '3.jpg.123.0.tmp'), 'half');
  const second = createImageStore({ dir, maxBytes: 10_000, logger: testLogger() });
  await second.start();
  assert.deepEqual(second.stats(), { images: 2, bytes: 200, pending: 1, evicted: 0, skipped: 0 });
  assert.equal(second.nextPending()?.seq, 2);
  assert.equal(second.nextPending()?.storeId, undefined);
  assert.deepEqual(await readdir(path.join(dir, 'legacy', 'pending')), ['2.jpg']);
});

test('a crash between moving a sent image and its heatmap is finished at the next start: nothing is left in pending', async (t) => {
  const dir = await tempDir(t);
  // What kill -9 between markSent's two renames leaves: the image in sent/, its heatmap still in pending/.
  await mkdir(path.join(dir, 'store-a', 'sent'), { recursive: true });
  await mkdir(path.join(dir, 'store-a', 'pending'), { recursive: true });
  await writeFile(path.join(dir, 'store-a', 'sent', '7.jpg'), jpeg(7));
  await writeFile(path.join(dir, 'store-a', 'pending', '7.heatmap.png'), Buffer.alloc(50, 1));
  const store = createImageStore({ dir, maxBytes: 10_000, logger: testLogger() });
  await store.start();
  t.after(() => store.close());
  assert.deepEqual(await readdir(path.join(dir, 'store-a', 'pending')), [], 'the heatmap followed its image');
  assert.deepEqual((await readdir(path.join(dir, 'store-a', 'sent'))).sort(), ['7.heatmap.png', '7.jpg']);
  assert.deepEqual(store.stats(), { images: 1, bytes: 150, pending: 0, evicted: 0, skipped: 0 });
});

test('uploads survive a cut link and a stalled one: each image arrives once, in order, resumed after the outage; one ahead of its result waits for it', async (t) => {
  const dir = await tempDir(t);
  const logger = pino({ level: 'silent' });
  await mkdir(path.join(dir, 'fleet'));
  const file = path.join(dir, 'fleet', 'fleet.db');
  const fleetStore = openSqliteStore({ file, logger });
  const fleetImages = openSqliteImageStore({ file, dir: path.join(dir, 'fleet', 'images'), logger });
  const identity = openTestIdentity(t, file);
  const app = await buildApp({ store: fleetStore, identity: identity.identity, logger, images: { images: fleetImages, maxImageBytes: 1 << 20 } });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const proxy = await startTcpProxy((app.server.address() as AddressInfo).port);
  t.after(async () => {
    await proxy.close();
    await app.close();
    await fleetImages.close();
    await fleetStore.close();
  });

  const STORE = 'storeAAAAAAAAAAA';
  // The edge is enrolled, and the fleet has its results 1..6 (uploads are for results it produced).
  const baseUrl = `http://127.0.0.1:${proxy.port}`;
  const credential = fleetCredential(await identity.enrollEdge('e1'), baseUrl);
  await fleetStore.ingestResults('e1', results(1, 6), { receivedAt: Date.now() }, STORE);

  const images = createImageStore({ dir: path.join(dir, 'edge'), maxBytes: 1 << 20, logger: testLogger() });
  await images.start();
  const uploader = createImageUploader({
    edgeId: 'e1',
    baseUrl,
    authHeaders: credential.headersFor,
    images,
    logger: testLogger(),
    retryBaseMs: 20,
    retryMaxMs: 100,
    timeoutMs: 500,
  });
  t.after(() => uploader.close());

  proxy.cut();
  uploader.start();
  for (let seq = 1; seq <= 5; seq++) await images.keep(STORE, seq, jpeg(seq));
  await waitFor(() => uploader.stats().failures >= 2, 'failed attempts while cut');
  assert.equal(images.stats().pending, 5);

  proxy.restore();
  uploader.poke();
  await waitFor(() => images.stats().pending === 0, 'uploads after the cut');

  // A stalled link: the attempt times out, and the image goes once the link moves again.
  proxy.stall();
  await images.keep(STORE, 6, jpeg(6));
  await waitFor(() => uploader.stats().failures >= 3, 'a timed-out attempt');
  proxy.restore();
  await waitFor(() => images.stats().pending === 0, 'upload after the stall');

  for (let seq = 1; seq <= 6; seq++) {
    const img = await fleetImages.get({ edgeId: 'e1', storeId: STORE, seq });
    assert.ok(img, `image ${seq} at the fleet`);
    assert.equal(img.bytes, 100);
  }
  assert.equal(uploader.stats().refused, 0);

  // An image that overtakes its result (7 is not at the fleet yet) is answered "retry later",
  // kept and retried, never dropped; it goes once the result has arrived.
  const failures = uploader.stats().failures;
  await images.keep(STORE, 7, jpeg(7));
  await waitFor(() => uploader.stats().failures >= failures + 2, 'image 7 answered retry later');
  assert.equal(images.stats().pending, 1);
  assert.equal(await fleetImages.get({ edgeId: 'e1', storeId: STORE, seq: 7 }), null);
  await fleetStore.ingestResults('e1', results(7, 7), { receivedAt: Date.now() }, STORE);
  uploader.poke();
  await waitFor(() => images.stats().pending === 0, 'image 7 once its result is at the fleet');
  assert.ok(await fleetImages.get({ edgeId: 'e1', storeId: STORE, seq: 7 }));
  assert.equal(uploader.stats().refused, 0, 'no image of the edge was ever refused for good');
});
