/**
 * Storage alarms with hysteresis (issue 13: a storage alarm once sent 341 alert events in 40 s).
 * A level driven around its threshold raises once and clears once, after the hold time. Real
 * SQLite store and real image store in a temp dir; the disk's free bytes and the clock are driven
 * by the test, since a real disk cannot be made to hover on a byte.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { OspreyError } from '../../protocol/errors.js';
import { createEdgeStorage, DISK_LOW_ALARM } from '../../edge-agent/edge-storage.js';
import { createHysteresisAlarm } from '../../edge-agent/hysteresis-alarm.js';
import { createImageStore } from '../../edge-agent/image-store.js';
import { openResultStore, type NewResult, type ResultStore } from '../../edge-agent/result-store.js';
import { createRetention, STORE_ERROR_ALARM } from '../../edge-agent/retention.js';
import { goodResult, tempDir, testLogger } from './fixtures.js';

test('the hysteresis alarm raises at once, and clears only past the low mark after the hold time', () => {
  let t = 0;
  const changes: boolean[] = [];
  const alarm = createHysteresisAlarm({ holdMs: 1000, now: () => t, onChange: (r) => changes.push(r) });
  for (let i = 0; i < 100; i++, t += 10) alarm.update(i % 2 === 0, i % 2 === 1);
  assert.deepEqual(changes, [true], 'hovering around the mark: one raise');
  t += 500;
  assert.equal(alarm.update(false, false), false, 'not past the low mark: stays');
  t += 600;
  assert.equal(alarm.update(false, true), true);
  assert.deepEqual(changes, [true, false]);
});

test('a disk that refuses every other result write raises result-store-error once, not once per frame', async (t) => {
  const dir = await tempDir(t);
  const raw = openResultStore(dir);
  t.after(() => raw.close());
  let fail = false;
  // The disk's answer is injected around the real store: SQLITE_FULL exactly as result-store.ts wraps it.
  const flaky = Object.create(raw, {
    append: {
      value: (r: NewResult) => {
        if (fail) {
          throw new OspreyError('OSP_ERR_STORE', `cannot write result to ${raw.file}: database or disk is full`, {
            cause: Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }),
          });
        }
        return raw.append(r);
      },
    },
  }) as ResultStore;
  let now = 0;
  const events: boolean[] = [];
  const retention = createRetention({
    store: flaky,
    config: { ackedMaxAgeMs: 3_600_000, maxBytes: 1 << 30, maxRows: 0, intervalMs: 60_000 },
    logger: testLogger(),
    now: () => now,
    alarmHoldMs: 30_000,
    onQuota: (full, f) => {
      assert.equal(f.reason, STORE_ERROR_ALARM);
      events.push(full);
    },
  });
  t.after(() => retention.close());
  // 40 s of frames at 10 per second, every other write refused: the case that sent 341 events.
  let stored = 0;
  for (let i = 0; i < 400; i++, now += 100) {
    fail = i % 2 === 1;
    if (retention.store.append(goodResult(i)) > 0) stored++;
  }
  assert.equal(stored, 200);
  assert.equal(retention.stats().notStored, 200, 'every refused write counted; the line got its verdict');
  assert.deepEqual(events, [true], 'one raise in 40 s');
  assert.deepEqual(retention.alarms(), [STORE_ERROR_ALARM]);
  // Writes work again: the alarm stays for the hold time, then clears once.
  fail = false;
  for (let i = 0; i < 290; i++, now += 100) retention.store.append(goodResult(1000 + i));
  assert.deepEqual(events, [true], 'still within the hold time');
  now += 1000;
  retention.store.append(goodResult(2000));
  assert.deepEqual(events, [true, false]);
  assert.deepEqual(retention.alarms(), []);
});

test('disk-low: free space hovering on the floor raises one alarm; images go (uploaded first) until the resume mark; one clear after the hold', async (t) => {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  t.after(() => store.close());
  const MiB = 1 << 20;
  let free = 100 * MiB;
  let now = 0;
  const events: { level: string; data: Record<string, unknown> | undefined }[] = [];
  const storage = createEdgeStorage({
    edgeId: 'e1',
    dataDir: dir,
    store,
    images: { maxBytes: 1 << 30, upload: false, sampling: { keepDefectImages: true, uncertainBand: 0, keepGoodEvery: 1 }, retryBaseMs: 10, retryMaxMs: 10, timeoutMs: 100 },
    disk: { minFreeBytes: 10 * MiB, resumeFreeBytes: 20 * MiB, checkIntervalMs: 3_600_000, alarmHoldMs: 30_000 },
    // Each kept image "uses" 1 MiB of the driven disk; deleting one gives it back.
    freeBytes: () => free,
    now: () => now,
    logger: testLogger(),
    publishEvent: (kind, level, _message, data) => {
      if (kind === 'alert' && data?.alarm === DISK_LOW_ALARM) events.push({ level, data });
    },
  });
  t.after(() => storage.close());
  await storage.start();
  const images = storage.images!;
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(97)]);
  for (let seq = 1; seq <= 6; seq++) await images.keep(store.storeId, seq, jpeg);
  await images.markSent(images.nextPending()!);
  await images.markSent(images.nextPending()!);
  assert.deepEqual(images.stats(), { images: 6, bytes: 600, pending: 4, evicted: 0, skipped: 0 });

  // The disk hovers around the floor for 40 s of checks (the images are gone after the first low reading).
  for (let i = 0; i < 400; i++, now += 100) {
    free = i % 2 === 0 ? 10 * MiB - 1 : 10 * MiB + 1;
    await storage.checkDisk();
  }
  assert.equal(events.length, 1, `one alarm event in 40 s, not ${events.length}`);
  assert.equal(events[0]!.level, 'error');
  assert.deepEqual(storage.alarms(), ['image-quota', DISK_LOW_ALARM], 'unsent images were lost: image-quota says so too');
  // Nothing it could free raised the disk to the resume mark, so every image went: uploaded ones
  // first (they are not counted as evicted), then the 4 unsent ones (counted).
  assert.deepEqual(images.stats(), { images: 0, bytes: 0, pending: 0, evicted: 4, skipped: 0 });
  assert.deepEqual(await readdir(path.join(dir, 'images', store.storeId!, 'sent')), []);

  free = 30 * MiB;
  for (let i = 0; i < 100; i++, now += 100) await storage.checkDisk();
  assert.equal(events.length, 1, 'above the resume mark but within the hold time: still raised');
  now += 30_000;
  await storage.checkDisk();
  assert.equal(events.length, 2);
  assert.equal(events[1]!.data?.cleared, true);
  assert.deepEqual(storage.alarms(), ['image-quota'], 'disk-low cleared (image-quota stays until the unsent backlog is gone)');
});

test('sent images are deleted for disk space before any unsent one', async (t) => {
  const dir = await tempDir(t);
  let free = 10_000;
  const images = createImageStore({
    dir: path.join(dir, 'images'),
    maxBytes: 1 << 30,
    minFreeBytes: 1000,
    // A driven disk: each image held takes 100 bytes.
    freeBytes: () => free - images.stats().bytes,
    logger: testLogger(),
  });
  await images.start();
  const jpeg = (n: number) => Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(97, n)]);
  for (let seq = 1; seq <= 6; seq++) await images.keep('storeAAAAAAAAAAA', seq, jpeg(seq));
  await images.markSent(images.nextPending()!); // 1
  await images.markSent(images.nextPending()!); // 2
  free = 1000 + 600; // room for exactly one more image above the floor once one is gone
  await images.keep('storeAAAAAAAAAAA', 7, jpeg(7));
  assert.deepEqual(images.stats(), { images: 6, bytes: 600, pending: 5, evicted: 0, skipped: 0 }, 'sent image 1 made room');
  free = 1000 + 500;
  await images.keep('storeAAAAAAAAAAA', 8, jpeg(8));
  assert.equal(images.stats().evicted, 1, 'sent image 2 first, then the oldest unsent (3)');
  assert.equal(images.nextPending()?.seq, 4);
  images.close();
});
