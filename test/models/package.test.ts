import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseManifest } from '../../models/manifest-check.js';
import { loadModelPackage } from '../../models/package.js';
import { verifyModelPackage } from '../../models/package-reader.js';
import { writeModelPackage } from '../../models/package-writer.js';
import { isOspreyError, type ErrorCode } from '../../protocol/errors.js';
import { colourClassifier } from './fixtures.js';
import { pngClaiming, solidPng, tempDir, writePackage } from './helpers.js';

function expectCode(code: ErrorCode, pattern?: RegExp) {
  return (err: unknown) => {
    assert.ok(isOspreyError(err, code), `expected ${code}, got ${String(err)}`);
    assert.ok(!(err as Error).message.includes('\n'), 'one-line message');
    if (pattern) assert.match((err as Error).message, pattern);
    return true;
  };
}

async function validPackage(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t);
  const { model, manifest } = colourClassifier();
  await writePackage(dir, manifest, model);
  return dir;
}

async function editManifest(dir: string, edit: (m: Record<string, any>) => void): Promise<void> {
  const file = join(dir, 'manifest.json');
  const m = JSON.parse(await readFile(file, 'utf8'));
  edit(m);
  await writeFile(file, JSON.stringify(m));
}

test('a written package verifies; a changed model.onnx fails its checksum', async (t) => {
  const dir = await validPackage(t);
  const { manifest } = await verifyModelPackage(dir);
  assert.match(manifest.model.sha256, /^[0-9a-f]{64}$/);
  const model = await readFile(join(dir, 'model.onnx'));
  model[model.length - 1] ^= 0xff;
  await writeFile(join(dir, 'model.onnx'), model);
  await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_CHECKSUM', /sha256/));
});

test('invalid manifests name the field', async (t) => {
  const cases: [string, (m: Record<string, any>) => void, RegExp][] = [
    ['missing width', (m) => delete m.input.width, /missing field input\.width/],
    ['bad layout', (m) => (m.input.layout = 'nhcw'), /input\.layout must be one of nchw, nhwc/],
    ['unknown field', (m) => (m.input.colour = 'rgb'), /unknown field input\.colour/],
    ['bad task', (m) => (m.task = 'segmentation'), /task must be one of/],
    ['schema version', (m) => (m.schemaVersion = 2), /schemaVersion must be 1/],
    ['bad sha', (m) => (m.model.sha256 = 'abc'), /model\.sha256/],
    ['escaping file', (m) => (m.model.file = '../model.onnx'), /model\.file/],
    ['defect label', (m) => (m.defectLabels = ['crack']), /defectLabels\.0 "crack" is not one of labels/],
    ['per-label key', (m) => (m.thresholds.perLabel = { crack: 0.2 }), /thresholds\.perLabel\.crack/],
    ['mean length', (m) => (m.input.mean = [0.1, 0.2]), /input\.mean must have 1 or 3 values/],
    ['task outputs', (m) => delete m.outputs.classification, /missing field outputs\.classification/],
    ['uint8 scale', (m) => (m.input.dtype = 'uint8'), /input\.scale\/mean\/std must be 1\/0\/1 for dtype uint8/],
    ['negative threshold', (m) => (m.thresholds.default = -1), /thresholds\.default must be >= 0/],
  ];
  const dir = await validPackage(t);
  const original = await readFile(join(dir, 'manifest.json'), 'utf8');
  for (const [what, edit, pattern] of cases) {
    await writeFile(join(dir, 'manifest.json'), original);
    await editManifest(dir, edit);
    await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_MANIFEST', pattern), what);
  }
  await writeFile(join(dir, 'manifest.json'), '{ not json');
  await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_MANIFEST', /not JSON/));
  await assert.rejects(loadModelPackage(join(dir, 'nowhere')), expectCode('OSP_ERR_MODEL_MANIFEST', /not found/));
  assert.throws(() => parseManifest({}), expectCode('OSP_ERR_MODEL_MANIFEST', /missing field/));
});

test('a manifest that contradicts the model input is refused at load', async (t) => {
  const dir = await validPackage(t);
  const original = await readFile(join(dir, 'manifest.json'), 'utf8');
  const cases: [(m: Record<string, any>) => void, RegExp][] = [
    [(m) => (m.input.width = 4), /model input x is float32\[batch,3,2,2\] but the manifest says float32\[1,3,2,4\]/],
    [(m) => (m.input.dtype = 'float16'), /is float32.*manifest says float16/],
    [(m) => (m.input.color = 'gray'), /manifest says float32\[1,1,2,2\]/],
    [(m) => (m.input.layout = 'nhwc'), /\[1,2,2,3\]/],
    [(m) => (m.input.name = 'images'), /model has no input images \(its inputs: x\)/],
  ];
  for (const [edit, pattern] of cases) {
    await writeFile(join(dir, 'manifest.json'), original);
    await editManifest(dir, edit);
    await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_INPUT', pattern));
  }
});

test('outputs the task cannot read are refused at load', async (t) => {
  const { model, manifest } = colourClassifier();
  const dir1 = await tempDir(t);
  await writePackage(dir1, { ...manifest, outputs: { classification: { output: 'scores', activation: 'softmax' } } }, model);
  await assert.rejects(loadModelPackage(dir1), expectCode('OSP_ERR_MODEL_OUTPUT', /no output scores.*its outputs: logits/));
  // Four labels for three values: caught by the warm-up run, not on the first frame.
  const dir2 = await tempDir(t);
  await writePackage(dir2, { ...manifest, labels: ['good', 'scratch', 'dent', 'crack'] }, model);
  await assert.rejects(loadModelPackage(dir2), expectCode('OSP_ERR_MODEL_OUTPUT', /3 values \[1,3\] but the manifest has 4 labels/));
});

test('a model file that is not ONNX, or is truncated → OSP_ERR_MODEL_LOAD', async (t) => {
  const { model, manifest } = colourClassifier();
  const bytes = model.toBytes();
  for (const data of [new TextEncoder().encode('this is not a model'), bytes.subarray(0, bytes.length - 20)]) {
    const dir = await tempDir(t);
    // Checksummed as written: the package is consistent, the model inside it is not.
    await writeModelPackage(dir, manifest, data);
    await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_LOAD', /^onnxruntime cannot load model\.onnx: /));
  }
});

test('a postprocess module is refused unless the format is plugin', async (t) => {
  const dir = await validPackage(t);
  await editManifest(dir, (m) => (m.postprocess = { module: 'p.mjs', sha256: '0'.repeat(64) }));
  await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_MANIFEST', /postprocess is only used by format plugin/));
  await editManifest(dir, (m) => (m.postprocess = { module: 'p.js', sha256: '0'.repeat(64) }));
  await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_MANIFEST', /postprocess\.module must match pattern/));
});

test('bad images are clear errors and the runner keeps working; closed runners refuse', async (t) => {
  const dir = await validPackage(t);
  const runner = await loadModelPackage(dir, { maxPixels: 1_000_000 });
  await assert.rejects(runner.inspect(Buffer.alloc(0)), expectCode('OSP_ERR_IMAGE_EMPTY'));
  await assert.rejects(runner.inspect(Buffer.from('not an image')), expectCode('OSP_ERR_IMAGE_DECODE'));
  await assert.rejects(runner.inspect(pngClaiming(30000, 30000)), expectCode('OSP_ERR_IMAGE_TOO_LARGE'));
  await assert.rejects(runner.inspect(pngClaiming(1001, 1000)), expectCode('OSP_ERR_IMAGE_TOO_LARGE'));
  const ok = await Promise.all(Array.from({ length: 8 }, async () => runner.inspect(await solidPng(2, 2, [255, 0, 0]))));
  assert.ok(ok.every((r) => r.label === 'good'));
  await runner.close();
  await runner.close(); // idempotent
  await assert.rejects(runner.inspect(await solidPng(2, 2, [0, 0, 0])), expectCode('OSP_ERR_MODEL_CLOSED'));
});
