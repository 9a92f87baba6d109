import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPipeline, type PipelineOptions } from '../../edge-agent/pipeline.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import { loadModelPackage } from '../../models/runtime.js';
import { generatePartImage } from '../../models/fixtures.js';
import type { ModelRunner } from '../../models/types.js';
import { isOspreyError, type OspreyError } from '../../protocol/errors.js';
import { useDemoModel } from './demo-model.js';
import { tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();

async function setup(t: import('node:test').TestContext, opts: Partial<PipelineOptions> = {}) {
  const dir = await tempDir(t);
  const store = openResultStore(dir);
  t.after(() => store.close());
  const model = await loadModelPackage(await modelDir, { intraOpThreads: 1 });
  t.after(() => model.close());
  const failures: string[] = [];
  const pipeline = createPipeline({
    store,
    model,
    concurrency: 2,
    maxDepth: 64,
    maxBytes: 64 * 1024 * 1024,
    logger: testLogger(),
    onFailure: (err) => failures.push(err.code),
    ...opts,
  });
  return { store, model, pipeline, failures };
}

test('frames are inspected, persisted with the next seq, and resolved with their record', async (t) => {
  const { store, model, pipeline } = await setup(t);
  const good = await generatePartImage({ seed: 1, format: 'jpeg' });
  const bad = await generatePartImage({ seed: 2, defect: 'scratch', format: 'png' });
  const [a, b] = await Promise.all([
    pipeline.submit(good, { camera: 'cam1', source: 'http', frame: 'f-1' }),
    pipeline.submit(bad, { camera: 'cam2', source: 'folder' }),
  ]);
  assert.deepEqual([a.record.seq, b.record.seq].sort(), [1, 2]);
  assert.equal(a.record.verdict, 'ok');
  assert.equal(b.record.verdict, 'defect');
  assert.equal(a.record.model, model.id);
  assert.equal(a.record.frame, 'f-1');
  assert.equal(b.record.camera, 'cam2');
  assert.ok(a.record.latencyMs > 0);
  assert.deepEqual(store.pendingAfter(0, 10).find((r) => r.seq === a.record.seq), a.record);
  assert.equal(pipeline.depth, 0);
});

test('a full queue refuses at once with OSP_ERR_QUEUE_FULL and takes frames again when it drains', async (t) => {
  const { store, pipeline, failures } = await setup(t, { concurrency: 1, maxDepth: 3 });
  const img = await generatePartImage({ seed: 3, format: 'jpeg' });
  const submitted = Array.from({ length: 5 }, () => pipeline.submit(img, { camera: 'cam1', source: 'http' }));
  assert.equal(pipeline.depth, 3);
  assert.equal(pipeline.capacity, 0);
  const settled = await Promise.allSettled(submitted);
  const refused = settled.filter((s) => s.status === 'rejected');
  assert.equal(refused.length, 2);
  for (const r of refused) assert.ok(isOspreyError((r as PromiseRejectedResult).reason, 'OSP_ERR_QUEUE_FULL'));
  // Accepted frames ran in order, one at a time.
  assert.deepEqual(
    settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.record.seq] : [])),
    [1, 2, 3],
  );
  assert.deepEqual(failures, ['OSP_ERR_QUEUE_FULL', 'OSP_ERR_QUEUE_FULL']);
  assert.equal(pipeline.capacity, 3);
  assert.equal((await pipeline.submit(img, { camera: 'cam1', source: 'http' })).record.seq, 4);
  assert.equal(store.lastSeq, 4);
});

test('the byte budget bounds memory as well as the frame count', async (t) => {
  const img = await generatePartImage({ seed: 4, format: 'png' });
  const { pipeline } = await setup(t, { concurrency: 1, maxBytes: img.length * 2 });
  const results = await Promise.allSettled([1, 2, 3].map(() => pipeline.submit(img, { camera: 'cam1', source: 'http' })));
  assert.deepEqual(
    results.map((r) => r.status),
    ['fulfilled', 'fulfilled', 'rejected'],
  );
});

test('bad frames reject with their code, are counted, store nothing, and the pipeline carries on', async (t) => {
  const { store, pipeline, failures } = await setup(t);
  const good = await generatePartImage({ seed: 5, format: 'jpeg' });
  const codes: string[] = [];
  for (const bytes of [Buffer.alloc(0), good.subarray(0, good.length >> 1), Buffer.from('not an image')]) {
    await pipeline.submit(bytes, { camera: 'cam1', source: 'folder' }).then(
      () => assert.fail('accepted a bad frame'),
      (err: OspreyError) => codes.push(err.code),
    );
  }
  assert.deepEqual(codes, ['OSP_ERR_IMAGE_EMPTY', 'OSP_ERR_IMAGE_DECODE', 'OSP_ERR_IMAGE_DECODE']);
  assert.deepEqual(failures, codes);
  assert.equal(store.lastSeq, 0);
  assert.equal((await pipeline.submit(good, { camera: 'cam1', source: 'http' })).record.seq, 1);
});

test('setModel switches for frames not yet started; each result names the model that produced it', async (t) => {
  const { pipeline, model } = await setup(t, { concurrency: 1 });
  // A second "version": the same session under another id, so attribution is visible.
  const v2: ModelRunner = { manifest: model.manifest, id: 'osprey-demo-anomaly@2.0.0', inspect: (i, o) => model.inspect(i, o), close: async () => {} };
  const img = await generatePartImage({ seed: 6, format: 'jpeg' });
  const first = pipeline.submit(img, { camera: 'cam1', source: 'http' }); // starts at once on v1
  const second = pipeline.submit(img, { camera: 'cam1', source: 'http' }); // queued
  assert.equal(pipeline.setModel(v2), model);
  const third = pipeline.submit(img, { camera: 'cam1', source: 'http' });
  const models = (await Promise.all([first, second, third])).map((o) => o.record.model);
  assert.deepEqual(models, [model.id, 'osprey-demo-anomaly@2.0.0', 'osprey-demo-anomaly@2.0.0']);
});

test('edge thresholds decide the verdict and can be changed at run time', async (t) => {
  const { pipeline } = await setup(t);
  const img = await generatePartImage({ seed: 7, format: 'jpeg' });
  const base = await pipeline.submit(img, { camera: 'cam1', source: 'http' });
  assert.equal(base.record.verdict, 'ok');
  pipeline.setThresholds({ default: base.record.score / 2 });
  const strict = await pipeline.submit(img, { camera: 'cam1', source: 'http' });
  assert.equal(strict.record.verdict, 'defect');
  assert.equal(strict.inspection.threshold, base.record.score / 2);
});

test('stop() refuses new frames while queued ones finish; drain() waits for them', async (t) => {
  const { store, pipeline, failures } = await setup(t, { concurrency: 1 });
  const img = await generatePartImage({ seed: 8, format: 'jpeg' });
  const queued = [1, 2, 3].map(() => pipeline.submit(img, { camera: 'cam1', source: 'http' }));
  pipeline.stop();
  await assert.rejects(pipeline.submit(img, { camera: 'cam1', source: 'http' }), (err) => isOspreyError(err, 'OSP_ERR_SHUTTING_DOWN'));
  await pipeline.drain();
  assert.equal(pipeline.depth, 0);
  assert.equal(store.lastSeq, 3);
  assert.equal((await Promise.all(queued)).length, 3);
  assert.deepEqual(failures, ['OSP_ERR_SHUTTING_DOWN']);
});

test('frames finishing together share commits (group commit): every frame answered with its own stored row; a failed batch falls back to one commit each', async (t) => {
  const images = await Promise.all(Array.from({ length: 4 }, (_, i) => generatePartImage({ seed: 20 + i, format: 'jpeg' })));
  for (const failBatches of [false, true]) {
    const dir = await tempDir(t);
    const raw = openResultStore(dir);
    t.after(() => raw.close());
    let batches = 0;
    let batched = 0;
    // The store the pipeline sees: counts group commits, or refuses every one of them.
    const store = Object.create(raw, {
      batch: {
        value: <T>(fn: () => T): T => {
          batches++;
          if (failBatches) return raw.batch(() => { fn(); throw new Error('batch refused'); });
          const out = raw.batch(fn);
          batched += (out as unknown[]).length;
          return out;
        },
      },
    }) as typeof raw;
    const model = await loadModelPackage(await modelDir, { intraOpThreads: 1 });
    t.after(() => model.close());
    const pipeline = createPipeline({ store, model, concurrency: 4, maxDepth: 64, maxBytes: 64 << 20, logger: testLogger() });
    const outcomes = await Promise.all(
      Array.from({ length: 24 }, (_, i) => pipeline.submit(images[i % 4]!, { camera: 'cam1', source: 'http', frame: `f-${i}` })),
    );
    const seqs = outcomes.map((o) => o.record.seq).sort((a, b) => a - b);
    assert.deepEqual(seqs, Array.from({ length: 24 }, (_, i) => i + 1), 'each frame its own seq, no gap');
    const stored = new Map(raw.pendingAfter(0, 100).map((r) => [r.seq, r]));
    for (const o of outcomes) assert.deepEqual(stored.get(o.record.seq), o.record, 'the answer is the stored row');
    assert.equal(raw.lastSeq, 24);
    assert.equal(pipeline.depth, 0);
    if (!failBatches) t.diagnostic(`24 frames, 4 in flight: ${batches} group commits of ${batched} frames, ${24 - batched} lone commits`);
  }
});
