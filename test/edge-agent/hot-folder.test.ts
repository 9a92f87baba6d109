import assert from 'node:assert/strict';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { createHotFolder, readCapped, type HotFolderEvent } from '../../edge-agent/hot-folder.js';
import { createPipeline } from '../../edge-agent/pipeline.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import { loadModelPackage } from '../../models/runtime.js';
import { generatePartImage } from '../../models/fixtures.js';
import { useDemoModel } from './demo-model.js';
import { pngClaiming, tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();

/** A hot folder over a real pipeline; `next(n)` resolves with the next n moved files. */
async function setup(
  t: TestContext,
  opts: { maxDepth?: number; inFlight?: number; maxFileBytes?: number; prefill?: (dir: string) => Promise<void> } = {},
) {
  const root = await tempDir(t);
  const inbox = path.join(root, 'inbox');
  await mkdir(inbox);
  await opts.prefill?.(inbox);
  const store = openResultStore(path.join(root, 'data'));
  t.after(() => store.close());
  const model = await loadModelPackage(await modelDir, { intraOpThreads: 1 });
  t.after(() => model.close());
  const failures: string[] = [];
  const events: HotFolderEvent[] = [];
  const waiters: { n: number; resolve: (e: HotFolderEvent[]) => void }[] = [];
  const pipeline = createPipeline({
    store,
    model,
    concurrency: 2,
    maxDepth: opts.maxDepth ?? 64,
    maxBytes: 1 << 28,
    logger: testLogger(),
    onFailure: (err) => failures.push(err.code),
    onSlotFree: () => folder.poke(),
  });
  const folder = createHotFolder({
    dir: inbox,
    pipeline,
    camera: 'cam1',
    settleMs: 20,
    rescanMs: 150,
    inFlight: opts.inFlight ?? 4,
    maxFileBytes: opts.maxFileBytes ?? 1 << 24,
    logger: testLogger(),
    onFailure: (err) => failures.push(err.code),
    onFile: (e) => {
      events.push(e);
      for (const w of [...waiters]) {
        if (events.length >= w.n) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(events.slice(0, w.n));
        }
      }
    },
  });
  t.after(() => folder.close());
  /** Resolves once `n` files in total have been moved. */
  const moved = (n: number, timeoutMs = 15_000) =>
    new Promise<HotFolderEvent[]>((resolve, reject) => {
      if (events.length >= n) return resolve(events.slice(0, n));
      const timer = setTimeout(() => reject(new Error(`only ${events.length}/${n} files moved`)), timeoutMs);
      waiters.push({
        n,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  return { inbox, store, pipeline, folder, failures, events, moved };
}

/** Writes as camera software should: a dot file, then an atomic rename. */
async function drop(dir: string, name: string, bytes: Buffer): Promise<void> {
  const tmp = path.join(dir, `.${name}.part`);
  await writeFile(tmp, bytes);
  await rename(tmp, path.join(dir, name));
}

test('files present at start and files dropped later are inspected once and moved', async (t) => {
  const good = await generatePartImage({ seed: 10, format: 'jpeg' });
  const defect = await generatePartImage({ seed: 11, defect: 'spot', format: 'png' });
  const { inbox, store, folder, failures, moved } = await setup(t, {
    prefill: async (dir) => {
      await writeFile(path.join(dir, 'early-1.jpg'), good);
      await writeFile(path.join(dir, 'early-2.png'), defect);
      await writeFile(path.join(dir, 'notes.txt'), 'this is not an image\n');
    },
  });
  await folder.start();
  const first = await moved(3);
  assert.deepEqual(first.map((e) => [e.file, e.outcome]).sort(), [
    ['early-1.jpg', 'done'],
    ['early-2.png', 'done'],
    ['notes.txt', 'failed'],
  ]);
  assert.equal(first.find((e) => e.file === 'notes.txt')!.error?.code, 'OSP_ERR_IMAGE_DECODE');

  // Later files: atomically renamed ones, a directly written one, a dot file that stays.
  await drop(inbox, 'late-1.jpg', good);
  await drop(inbox, 'late-2.jpg', await generatePartImage({ seed: 12, defect: 'dent', format: 'jpeg' }));
  await writeFile(path.join(inbox, 'late-3.png'), defect);
  await writeFile(path.join(inbox, '.still-writing.jpg'), good.subarray(0, 100));
  const all = await moved(6);
  assert.deepEqual(all.slice(3).map((e) => e.outcome), ['done', 'done', 'done']);

  // Exactly once: one result per good file, each file in done/ once, nothing left behind.
  const records = store.pendingAfter(0, 100);
  assert.equal(records.length, 5);
  assert.deepEqual(records.map((r) => r.frame).sort(), ['early-1.jpg', 'early-2.png', 'late-1.jpg', 'late-2.jpg', 'late-3.png']);
  assert.ok(records.every((r) => r.source === 'folder' && r.camera === 'cam1'));
  assert.deepEqual(
    Object.fromEntries(records.map((r) => [r.frame, r.verdict])),
    { 'early-1.jpg': 'ok', 'early-2.png': 'defect', 'late-1.jpg': 'ok', 'late-2.jpg': 'defect', 'late-3.png': 'defect' },
  );
  assert.deepEqual((await readdir(path.join(inbox, 'done'))).sort(), ['early-1.jpg', 'early-2.png', 'late-1.jpg', 'late-2.jpg', 'late-3.png']);
  assert.deepEqual(await readdir(path.join(inbox, 'failed')), ['notes.txt']);
  assert.deepEqual((await readdir(inbox)).sort(), ['.still-writing.jpg', 'done', 'failed']);
  assert.deepEqual(failures, ['OSP_ERR_IMAGE_DECODE']);
  assert.equal(folder.backlog, 0);
});

test('bad files go to failed/ with their reason; names already taken there are not overwritten', async (t) => {
  const good = await generatePartImage({ seed: 13, format: 'jpeg' });
  const { inbox, folder, failures, moved } = await setup(t);
  await folder.start();
  await drop(inbox, 'frame.jpg', good);
  await drop(inbox, 'empty.jpg', Buffer.alloc(0));
  await drop(inbox, 'truncated.jpg', good.subarray(0, good.length >> 1));
  await drop(inbox, 'huge.png', pngClaiming(30000, 30000));
  const events = await moved(4);
  assert.deepEqual(
    Object.fromEntries(events.map((e) => [e.file, e.error?.code ?? e.outcome])),
    {
      'frame.jpg': 'done',
      'empty.jpg': 'OSP_ERR_IMAGE_EMPTY',
      'truncated.jpg': 'OSP_ERR_IMAGE_DECODE',
      'huge.png': 'OSP_ERR_IMAGE_TOO_LARGE',
    },
  );
  assert.deepEqual(failures.sort(), ['OSP_ERR_IMAGE_DECODE', 'OSP_ERR_IMAGE_EMPTY', 'OSP_ERR_IMAGE_TOO_LARGE']);

  // The same names again: done/frame.jpg and failed/empty.jpg exist, so the new ones get -1.
  await drop(inbox, 'frame.jpg', good);
  await drop(inbox, 'empty.jpg', Buffer.alloc(0));
  const again = await moved(6);
  assert.deepEqual(again.slice(4).map((e) => path.relative(inbox, e.movedTo!)).sort(), ['done/frame-1.jpg', 'failed/empty-1.jpg']);
  assert.deepEqual((await readdir(path.join(inbox, 'done'))).sort(), ['frame-1.jpg', 'frame.jpg']);
});

test('a file over the size limit goes to failed/ unread; one at the limit is inspected', async (t) => {
  const good = await generatePartImage({ seed: 14, format: 'jpeg' });
  const { inbox, folder, failures, moved } = await setup(t, { maxFileBytes: good.length });
  await folder.start();
  await drop(inbox, 'at-limit.jpg', good);
  await drop(inbox, 'over-limit.jpg', Buffer.concat([good, Buffer.alloc(1)]));
  const events = await moved(2);
  assert.deepEqual(Object.fromEntries(events.map((e) => [e.file, e.error?.code ?? e.outcome])), {
    'at-limit.jpg': 'done',
    'over-limit.jpg': 'OSP_ERR_IMAGE_TOO_LARGE',
  });
  assert.deepEqual(failures, ['OSP_ERR_IMAGE_TOO_LARGE']);
});

test('readCapped reads whole files whatever size the scan saw, and refuses one past the limit', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'f.bin');
  const bytes = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
  await writeFile(file, bytes);
  // As seen (one read), grown since the scan (the buffer grows), shrunk since the scan.
  for (const expected of [10_000, 0, 100, 9_999, 50_000]) assert.deepEqual(await readCapped(file, expected, 10_000), bytes, `expected ${expected}`);
  for (const expected of [0, 100, 10_000]) assert.equal(await readCapped(file, expected, 9_999), null, `capped, expected ${expected}`);
  await writeFile(file, Buffer.alloc(0));
  assert.equal((await readCapped(file, 0, 10))?.length, 0);
});

test('a backlog larger than the queue is taken at the pace the queue accepts', async (t) => {
  const count = 12;
  const imgs = await Promise.all(Array.from({ length: count }, (_, i) => generatePartImage({ seed: 100 + i, format: 'jpeg' })));
  const { store, folder, failures, moved } = await setup(t, {
    maxDepth: 2,
    inFlight: 8,
    prefill: async (dir) => {
      for (let i = 0; i < count; i++) await writeFile(path.join(dir, `b-${String(i).padStart(2, '0')}.jpg`), imgs[i]!);
    },
  });
  await folder.start();
  const events = await moved(count);
  assert.ok(events.every((e) => e.outcome === 'done'));
  assert.deepEqual(failures, [], 'never refused by the queue: the folder waited for room');
  assert.equal(store.lastSeq, count);
});
