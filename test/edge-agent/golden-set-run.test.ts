/**
 * One golden-set run (edge-agent/golden-set-run.ts) against a real tiny package whose score is the
 * brightest pixel: the pass rule at the tolerance's edge, a replaced image, a golden.json that
 * does not parse or fit, and the time limit.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import sharp from 'sharp';
import { readGoldenSet, runGoldenSet, type GoldenFile } from '../../edge-agent/golden-set-run.js';
import { loadModelPackage } from '../../models/package.js';
import { writeModelPackage } from '../../models/package-writer.js';
import { tinyAnomalyModel } from '../../models/tiny-model.js';
import { writeGoldenSet } from '../../models/train/golden-set.js';
import type { ModelRunner } from '../../models/types.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const grey = (value: number) => sharp({ create: { width: 8, height: 8, channels: 3, background: { r: value, g: value, b: value } } }).png().toBuffer();

async function tinyPackage(t: TestContext): Promise<{ dir: string; runner: ModelRunner; golden: GoldenFile }> {
  const dir = await makeTempDir(t, 'osprey-golden-run-');
  await writeModelPackage(dir, {
    schemaVersion: 1, name: 'golden-tiny', version: '1.0.0', task: 'anomaly',
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch', scale: 1 / 255 },
    outputs: { anomaly: { format: 'osprey', score: 'score' } }, labels: [], defectLabels: ['anomaly'], thresholds: { default: 0.5 },
  }, tinyAnomalyModel());
  await writeGoldenSet(dir, [
    { source: 'good/dark.png', bytes: await grey(20), truth: { verdict: 'ok' } },
    { source: 'good/bright.png', bytes: await grey(250), truth: { verdict: 'ok' } }, // the model calls it a defect
    { source: 'defects/white.png', bytes: await grey(255), truth: { verdict: 'defect' } },
  ]);
  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  const read = await readGoldenSet(dir);
  assert.equal(read.kind, 'set');
  return { dir, runner, golden: (read as { golden: GoldenFile }).golden };
}

/** The runner with every score moved by `delta`. */
const shifted = (runner: ModelRunner, delta: number): ModelRunner => ({
  ...runner,
  inspect: async (img, o) => {
    const r = await runner.inspect(img, o);
    return { ...r, score: r.score + delta };
  },
});

test('pass rule: expected verdicts and scores within tolerance pass; the accuracy is reported beside it', async (t) => {
  const { dir, runner, golden } = await tinyPackage(t);
  const r = await runGoldenSet(runner, dir, golden, { timeoutMs: 10_000 });
  assert.deepEqual([r.passed, r.images, r.mismatches, r.accuracy, r.expectedAccuracy], [true, 3, 0, 2 / 3, 2 / 3]);
  assert.deepEqual(r.outcomes.map((o) => [o.truth, o.got?.verdict, o.match, o.correct]), [['ok', 'ok', true, true], ['ok', 'defect', true, false], ['defect', 'defect', true, true]]);
  // Within the tolerance (1e-3) still passes; beyond it fails, though no verdict changed.
  assert.equal((await runGoldenSet(shifted(runner, 0.0009), dir, golden, { timeoutMs: 10_000 })).passed, true);
  const off = await runGoldenSet(shifted(runner, 0.002), dir, golden, { timeoutMs: 10_000 });
  assert.deepEqual([off.passed, off.mismatches], [false, 3]);
  assert.match(off.reason ?? '', /^3 of 3 images off their expected answer \(first: golden-00\.png: ok\/good score 0\.080431, expected ok\/good score 0\.078431 ± 0\.001\)$/);
});

test('a replaced image, a broken golden.json, the time limit and a stop fail the run with the reason', async (t) => {
  const { dir, runner, golden } = await tinyPackage(t);
  await writeFile(join(dir, 'golden-01.png'), await grey(21));
  const replaced = await runGoldenSet(runner, dir, golden, { timeoutMs: 10_000 });
  assert.deepEqual([replaced.passed, replaced.mismatches], [false, 1]);
  assert.match(replaced.outcomes[1]!.error ?? '', /golden-01\.png is not the image golden\.json describes \(sha256 differs\)/);
  assert.equal(replaced.outcomes[1]!.got, null);

  const stuck: ModelRunner = { ...runner, inspect: () => new Promise(() => undefined) };
  const late = await runGoldenSet(stuck, dir, { ...golden, images: golden.images.filter((i) => i.file !== 'golden-01.png') }, { timeoutMs: 50 });
  assert.deepEqual([late.passed, late.mismatches], [false, 2]);
  assert.match(late.reason ?? '', /^time limit of 50 ms reached; 2 of 2 images off/);
  assert.ok(late.outcomes.every((o) => o.error === 'not run: time limit reached'));

  // Stopped (the agent closing): no image is inspected after the signal.
  const stopped = await runGoldenSet(runner, dir, golden, { timeoutMs: 10_000, signal: AbortSignal.abort() });
  assert.deepEqual([stopped.passed, stopped.mismatches], [false, 3]);
  assert.ok(stopped.outcomes.every((o) => o.got === null && o.error === 'not run: stopped'));

  assert.deepEqual(await readGoldenSet(join(dir, 'nowhere')), { kind: 'none' });
  await writeFile(join(dir, 'golden.json'), '{ not json');
  assert.match((await readGoldenSet(dir) as { reason: string }).reason, /^golden\.json is not JSON: /);
  await writeFile(join(dir, 'golden.json'), JSON.stringify({ ...golden, tolerance: -1 }));
  assert.match((await readGoldenSet(dir) as { reason: string }).reason, /^golden\.json: .*tolerance must be >= 0/);
});
