/**
 * Shadow mode in the pipeline: the candidate runs beside the active model on the same bytes, its
 * outcome is stored with the result, and it never decides a verdict nor holds the line past
 * shadowWaitMs.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { createPipeline, type InspectOutcome, type PipelineOptions } from '../../edge-agent/pipeline.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import { loadModelPackage } from '../../models/runtime.js';
import { generatePartImage } from '../../models/fixtures.js';
import type { ModelRunner } from '../../models/types.js';
import { OspreyError } from '../../protocol/errors.js';
import { useDemoModel } from './demo-model.js';
import { tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();

/** The real model under another id, optionally held at a gate or failing: a candidate version. */
function candidate(real: ModelRunner, id: string, behaviour: { gate?: Promise<void>; fail?: boolean; seen?: Buffer[] } = {}): ModelRunner {
  return {
    manifest: real.manifest,
    id,
    async inspect(image, options) {
      behaviour.seen?.push(image);
      if (behaviour.gate) await behaviour.gate;
      if (behaviour.fail) throw new OspreyError('OSP_ERR_INFERENCE', 'candidate broke');
      return real.inspect(image, options);
    },
    close: async () => undefined,
  };
}

async function setup(t: TestContext, opts: Partial<PipelineOptions> = {}) {
  const reported: InspectOutcome[] = [];
  const waiters: (() => void)[] = [];
  /** The next onResult call: with a shadow candidate, it comes once the shadow outcome is stored. */
  const nextReport = () => new Promise<InspectOutcome>((resolve) => waiters.push(() => resolve(reported.at(-1)!)));
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
    onResult: (o) => {
      reported.push(o);
      waiters.shift()?.();
    },
    ...opts,
  });
  return { dir, store, model, pipeline, failures, reported, nextReport };
}

test('the shadow candidate judges the same bytes after the answer; its outcome is stored with the row, the verdict is the active one', async (t) => {
  const { store, model, pipeline, nextReport } = await setup(t);
  const seen: Buffer[] = [];
  const image = await generatePartImage({ seed: 601, defect: 'spot', format: 'jpeg' });
  // Stricter thresholds make the candidate's verdict differ from the active one's.
  const strict = candidate(model, 'candidate@2', { seen });
  const strictRunner: ModelRunner = { ...strict, inspect: (img, o) => strict.inspect(img, { ...o, thresholds: { default: 1e9 } }) };
  assert.equal(pipeline.setShadow(strictRunner), undefined);
  const reportedOnce = nextReport();
  const answer = await pipeline.submit(image, { camera: 'cam1', source: 'http' });
  assert.equal(answer.record.shadow, undefined, 'the answer does not wait for the shadow');
  const { record } = await reportedOnce;
  assert.equal(seen[0], image, 'the very same buffer');
  assert.equal(record.seq, answer.record.seq);
  assert.equal(record.model, model.id);
  assert.equal(record.verdict, 'defect');
  assert.equal(record.shadow?.model, 'candidate@2');
  assert.equal(record.shadow?.verdict, 'ok');
  assert.equal(typeof record.shadow?.score, 'number');
  assert.ok(record.shadow!.latencyMs! > 0);
  assert.deepEqual(store.pendingAfter(0, 1)[0], record, 'stored and read back with its shadow');
  assert.equal(pipeline.setShadow(undefined), strictRunner);
  const plain = await pipeline.submit(image, { camera: 'cam1', source: 'http' });
  assert.equal(plain.record.shadow, undefined);
});

test('a failing candidate is recorded as such and never fails the frame', async (t) => {
  const { model, pipeline, failures, nextReport } = await setup(t);
  pipeline.setShadow(candidate(model, 'candidate@broken', { fail: true }));
  const reportedOnce = nextReport();
  await pipeline.submit(await generatePartImage({ seed: 602, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
  const { record } = await reportedOnce;
  assert.equal(record.verdict, 'ok');
  assert.deepEqual({ model: record.shadow?.model, error: record.shadow?.error }, { model: 'candidate@broken', error: 'OSP_ERR_INFERENCE' });
  assert.deepEqual(failures, []);
});

test('a slow candidate never holds the verdict; its row waits for it at most shadowWaitMs, and frames skip it while it is busy', async (t) => {
  const { store, model, pipeline, reported } = await setup(t, { shadowWaitMs: 40 });
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  pipeline.setShadow(candidate(model, 'candidate@slow', { gate }));
  const image = await generatePartImage({ seed: 603, format: 'jpeg' });
  const meta = { camera: 'cam1', source: 'http' } as const;
  // Two frames occupy both shadow slots (concurrency 2); both are answered at once.
  const [a, b] = await Promise.all([pipeline.submit(image, meta), pipeline.submit(image, meta)]);
  assert.equal(reported.length, 0, 'rows wait for their shadow outcome');
  assert.deepEqual(store.pendingAfter(0, 10), [], 'held rows are not synced yet');
  // A third frame while the candidate is busy: no shadow, and its row waits behind the held ones.
  const c = await pipeline.submit(image, meta);
  assert.deepEqual(store.pendingAfter(0, 10), []);
  await pipeline.drain(); // resolves once the held rows were released (after shadowWaitMs)
  const rows = store.pendingAfter(0, 10);
  assert.deepEqual(rows.map((r) => r.seq), [a.record.seq, b.record.seq, c.record.seq].sort((x, y) => x - y));
  for (const row of rows.filter((r) => r.seq !== c.record.seq)) {
    assert.deepEqual(row.shadow, { model: 'candidate@slow', error: 'OSP_ERR_SHADOW_TIMEOUT' });
  }
  assert.equal(rows.find((r) => r.seq === c.record.seq)!.shadow, undefined);
  for (const o of [a, b, c]) assert.ok(o.record.latencyMs < 1000, `answered after ${o.record.latencyMs} ms`);
  open();
});

test('line latency with and without a shadow candidate (reported, not asserted)', async (t) => {
  const { model, pipeline, nextReport } = await setup(t);
  const images = await Promise.all(Array.from({ length: 24 }, (_, i) => generatePartImage({ seed: 700 + i, format: 'jpeg' })));
  const stats = (ms: number[]) => {
    ms.sort((x, y) => x - y);
    return `p50 ${ms[ms.length >> 1]!.toFixed(2)} ms, mean ${(ms.reduce((s, v) => s + v, 0) / ms.length).toFixed(2)} ms`;
  };
  /** `spaced`: the next frame comes once the previous row is complete (a camera slower than the model). */
  const run = async (spaced: boolean) => {
    const ms: number[] = [];
    for (const img of images) {
      const reported = nextReport();
      ms.push((await pipeline.submit(img, { camera: 'cam1', source: 'http' })).record.latencyMs);
      if (spaced) await reported;
    }
    await pipeline.drain();
    return stats(ms);
  };
  await run(true); // warm
  const alone = await run(true);
  const aloneBackToBack = await run(false);
  pipeline.setShadow(candidate(model, 'candidate@same'));
  await run(true); // warm the wrapper path
  const shadowed = await run(true);
  const shadowedBackToBack = await run(false);
  t.diagnostic(`demo model as active and as shadow (the shadow runs after the answer), one frame at a time:`);
  t.diagnostic(`  frames spaced:       alone ${alone}; with shadow ${shadowed}`);
  t.diagnostic(`  frames back to back: alone ${aloneBackToBack}; with shadow ${shadowedBackToBack} (the shadow of frame n competes with frame n+1)`);
});

test('a results.db from before shadow mode gains the column on open', async (t) => {
  const dir = await tempDir(t);
  const old = new Database(path.join(dir, 'results.db'));
  old.exec(`CREATE TABLE results (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, camera TEXT NOT NULL,
    source TEXT NOT NULL, frame TEXT, model TEXT NOT NULL, verdict TEXT NOT NULL, label TEXT NOT NULL, score REAL NOT NULL,
    latency_ms REAL NOT NULL, detections TEXT)`);
  old.prepare(`INSERT INTO results (ts, camera, source, model, verdict, label, score, latency_ms) VALUES (1, 'cam1', 'http', 'm@1', 'ok', 'good', 0.1, 2)`).run();
  old.close();
  const store = openResultStore(dir);
  t.after(() => store.close());
  const shadow = { model: 'm@2', verdict: 'defect' as const, label: 'anomaly', score: 0.7, latencyMs: 1.5 };
  const seq = store.append({ ts: 2, camera: 'cam1', source: 'http', model: 'm@1', verdict: 'ok', label: 'good', score: 0.2, latencyMs: 2, shadow });
  const rows = store.pendingAfter(0, 10);
  assert.equal(rows[0]!.shadow, undefined);
  assert.deepEqual(rows.find((r) => r.seq === seq)!.shadow, shadow);
});
