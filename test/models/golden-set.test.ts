/**
 * The golden set a trained package carries (golden-set.ts): images copied in within bounds, each
 * with what the package itself answers through the edge's runtime, and the accuracy against the
 * training labels. Uses a real (tiny) model whose score is the brightest pixel.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'node:test';
import sharp from 'sharp';
import { GOLDEN_FILE, matchesTruth, spreadPick, writeGoldenSet, type GoldenCandidate } from '../../models/train/golden-set.js';
import { sha256Hex } from '../../models/package-reader.js';
import { writeModelPackage } from '../../models/package-writer.js';
import { tinyAnomalyModel } from '../../models/tiny-model.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const grey = (value: number, size = 8) => sharp({ create: { width: size, height: size, channels: 3, background: { r: value, g: value, b: value } } }).png().toBuffer();

test('spreadPick takes evenly spaced items, all of them when there are few', () => {
  assert.deepEqual(spreadPick([1, 2, 3], 5), [1, 2, 3]);
  assert.deepEqual(spreadPick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], 5), [1, 3, 5, 7, 9]);
  assert.deepEqual(spreadPick([0, 1, 2, 3], 1), [2]);
});

test('matchesTruth: a verdict for anomaly models, the top-1 label for classifiers', () => {
  assert.ok(matchesTruth({ verdict: 'ok', label: 'good' }, { verdict: 'ok' }));
  assert.ok(!matchesTruth({ verdict: 'defect', label: 'anomaly' }, { verdict: 'ok' }));
  assert.ok(matchesTruth({ verdict: 'defect', label: 'scratch', top: [{ label: 'scratch', score: 0.9 }] }, { label: 'scratch' }));
  assert.ok(!matchesTruth({ verdict: 'defect', label: 'scratch', top: [{ label: 'scratch', score: 0.9 }] }, { label: 'crazing' }));
});

test('writeGoldenSet: images within bounds, expected answers from the package, accuracy against the truth', async (t) => {
  const dir = await makeTempDir(t, 'osprey-golden-');
  await writeModelPackage(dir, {
    schemaVersion: 1,
    name: 'golden-demo',
    version: '1.0.0',
    task: 'anomaly',
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch', scale: 1 / 255 },
    outputs: { anomaly: { format: 'osprey', score: 'score' } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  }, tinyAnomalyModel());
  const candidates: GoldenCandidate[] = [
    { source: `good/dark.png`, bytes: await grey(20), truth: { verdict: 'ok' } },
    { source: `good/bright.png`, bytes: await grey(250), truth: { verdict: 'ok' } }, // the model calls it a defect
    { source: `good/huge.png`, bytes: await grey(10, 400), truth: { verdict: 'ok' } }, // over the per-image bound
    { source: `good/notes.txt`, bytes: Buffer.from('not an image'), truth: { verdict: 'ok' } },
    { source: `defects/white.png`, bytes: await grey(255), truth: { verdict: 'defect' } },
  ];
  const maxImageBytes = Math.max(candidates[0]!.bytes.length, candidates[1]!.bytes.length, candidates[4]!.bytes.length);
  assert.ok(candidates[2]!.bytes.length > maxImageBytes);
  const summary = await writeGoldenSet(dir, candidates, { maxImageBytes });
  assert.equal(summary.images, 3);
  assert.equal(summary.expectedAccuracy, 2 / 3);

  const golden = JSON.parse(await readFile(join(dir, GOLDEN_FILE), 'utf8'));
  assert.equal(golden.schema, 'osprey-golden-set/1');
  assert.deepEqual(golden.images.map((i: { source: string }) => i.source), ['good/dark.png', 'good/bright.png', 'defects/white.png']);
  const [dark, bright, white] = golden.images;
  assert.deepEqual([dark.expected.verdict, bright.expected.verdict, white.expected.verdict], ['ok', 'defect', 'defect']);
  assert.ok(Math.abs(dark.expected.score - 20 / 255) < 1e-3, `dark score ${dark.expected.score}`);
  assert.ok(Math.abs(white.expected.score - 1) < 1e-3, `white score ${white.expected.score}`);
  for (const [i, img] of golden.images.entries()) {
    const bytes = await readFile(join(dir, img.file));
    assert.equal(img.file, `golden-0${i}.png`);
    assert.equal(img.sha256, sha256Hex(bytes));
    assert.deepEqual(bytes, [candidates[0], candidates[1], candidates[4]][i]!.bytes);
  }

  await assert.rejects(writeGoldenSet(dir, [candidates[3]!]), /no training image fits the golden set's bounds/);
});
