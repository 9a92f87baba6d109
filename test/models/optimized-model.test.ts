import assert from 'node:assert/strict';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { ensureBenchModel } from '../../bench/models/bench-models.js';
import { createOptimizedModelCache, type OptimizedModelCacheOptions } from '../../models/optimized-model.js';
import { loadModelPackage } from '../../models/package.js';
import { isOspreyError } from '../../protocol/errors.js';
import type { Inspection, ModelRunner } from '../../models/types.js';
import { colourClassifier } from './fixtures.js';
import { solidPng, tempDir, writePackage } from './helpers.js';

/** Log lines of a cache, by message. */
function recordingLogger() {
  const lines: { msg: string; [k: string]: unknown }[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, messages: () => lines.map((l) => l.msg) };
}

/** A narrow ResNet-18 (convolutions, batch norms: what onnxruntime's 'all' level rewrites). */
async function convClassifier(t: TestContext): Promise<string> {
  return ensureBenchModel('resnet18', await tempDir(t), { size: 32, classes: 10, width: 0.125 });
}

async function frames(): Promise<Buffer[]> {
  return Promise.all([solidPng(40, 30, [200, 40, 40]), solidPng(32, 32, [20, 180, 90]), solidPng(64, 48, [90, 90, 250])]);
}

function sameJudgement(a: Inspection, b: Inspection): void {
  assert.equal(a.label, b.label);
  assert.equal(a.verdict, b.verdict);
  assert.ok(Math.abs(a.score - b.score) < 1e-5, `score ${a.score} vs ${b.score}`);
  assert.deepEqual(
    a.top?.map((x) => x.label),
    b.top?.map((x) => x.label),
  );
}

async function withRunner<T>(runner: ModelRunner, fn: (r: ModelRunner) => Promise<T>): Promise<T> {
  try {
    return await fn(runner);
  } finally {
    await runner.close();
  }
}

async function entries(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [] as string[])).sort();
}

function cacheFor(dir: string, extra: Partial<OptimizedModelCacheOptions> = {}) {
  const log = recordingLogger();
  return { cache: createOptimizedModelCache({ dir, minBytes: 0, logger: log.logger, ...extra }), messages: log.messages };
}

test('a model loads from its optimised graph: built once in a child, then reused, same answers', async (t) => {
  const pkg = await convClassifier(t);
  const cacheDir = join(await tempDir(t), 'ort');
  const { cache, messages } = cacheFor(cacheDir);
  const images = await frames();

  const plain = await withRunner(await loadModelPackage(pkg, { intraOpThreads: 1 }), (r) => Promise.all(images.map((i) => r.inspect(i))));
  const first = await withRunner(await loadModelPackage(pkg, { intraOpThreads: 1, optimizedCache: cache }), (r) =>
    Promise.all(images.map((i) => r.inspect(i))),
  );
  const built = await entries(cacheDir);
  assert.equal(built.length, 2, `an .onnx and its .json: ${built.join(', ')}`);
  assert.ok(built[0]!.endsWith('.json') && built[1]!.endsWith('.onnx'));
  assert.equal(messages().filter((m) => m === 'model optimised ahead').length, 1);

  const second = await withRunner(await loadModelPackage(pkg, { intraOpThreads: 1, optimizedCache: cache }), (r) =>
    Promise.all(images.map((i) => r.inspect(i))),
  );
  assert.equal(messages().filter((m) => m === 'model optimised ahead').length, 1, 'the second load reused the entry');
  for (let i = 0; i < images.length; i++) {
    sameJudgement(first[i]!, plain[i]!);
    sameJudgement(second[i]!, plain[i]!);
  }
  // The entry is onnxruntime's rewritten graph, not a copy of the model.
  const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8')) as { model: { sha256: string } };
  const sidecar = JSON.parse(await readFile(join(cacheDir, built[0]!), 'utf8')) as { source: string; sha256: string };
  assert.equal(sidecar.source, manifest.model.sha256);
  assert.notEqual(sidecar.sha256, manifest.model.sha256);
});

test('a damaged entry is rebuilt, never run; a model that fails its checksum is refused as before', async (t) => {
  const pkg = await convClassifier(t);
  const cacheDir = join(await tempDir(t), 'ort');
  const { cache, messages } = cacheFor(cacheDir);
  const [image] = await frames();
  const expected = await withRunner(await loadModelPackage(pkg, { intraOpThreads: 1, optimizedCache: cache }), (r) => r.inspect(image!));

  const onnx = join(cacheDir, (await entries(cacheDir)).find((f) => f.endsWith('.onnx'))!);
  const bytes = await readFile(onnx);
  bytes[bytes.length >> 1] ^= 0xff;
  await writeFile(onnx, bytes);
  const again = await withRunner(await loadModelPackage(pkg, { intraOpThreads: 1, optimizedCache: cache }), (r) => r.inspect(image!));
  sameJudgement(again, expected);
  assert.ok(messages().includes('optimised model damaged; rebuilding it'));
  assert.equal(messages().filter((m) => m === 'model optimised ahead').length, 2);

  const model = await readFile(join(pkg, 'model.onnx'));
  model[model.length - 1] ^= 0xff;
  await writeFile(join(pkg, 'model.onnx'), model);
  await assert.rejects(loadModelPackage(pkg, { optimizedCache: cache }), (err: unknown) => isOspreyError(err, 'OSP_ERR_MODEL_CHECKSUM'));
});

test('when nothing can be saved the model still loads the usual way; small models skip the cache', async (t) => {
  const pkg = await convClassifier(t);
  const root = await tempDir(t);
  // A file where the cache directory should be: every write fails.
  const blocked = join(root, 'not-a-dir');
  await writeFile(blocked, 'x');
  const { cache, messages } = cacheFor(blocked);
  const [image] = await frames();
  const runner = await loadModelPackage(pkg, { intraOpThreads: 1, optimizedCache: cache });
  await withRunner(runner, (r) => r.inspect(image!));
  assert.ok(messages().includes('optimised model not saved; onnxruntime optimises it in the agent'), messages().join(' | '));
  assert.equal((await stat(blocked)).isFile(), true);

  const small = await tempDir(t);
  const { model, manifest } = colourClassifier();
  await writePackage(small, manifest, model);
  const smallCacheDir = join(root, 'small');
  const smallCache = createOptimizedModelCache({ dir: smallCacheDir });
  await withRunner(await loadModelPackage(small, { optimizedCache: smallCache }), (r) => r.inspect(image!));
  assert.deepEqual(await entries(smallCacheDir), [], 'below minBytes: nothing built');
});

test('the cache keeps its most recently used entries', async (t) => {
  const root = await tempDir(t);
  const a = await ensureBenchModel('resnet18', root, { size: 32, classes: 10, width: 0.125 });
  const b = await ensureBenchModel('resnet18', root, { size: 32, classes: 4, width: 0.125 });
  const cacheDir = join(root, 'ort');
  const { cache } = cacheFor(cacheDir, { keep: 1 });
  await (await loadModelPackage(a, { intraOpThreads: 1, optimizedCache: cache })).close();
  await (await loadModelPackage(b, { intraOpThreads: 1, optimizedCache: cache })).close();
  const left = await entries(cacheDir);
  assert.equal(left.length, 2, left.join(', '));
  const manifestB = JSON.parse(await readFile(join(b, 'manifest.json'), 'utf8')) as { model: { sha256: string } };
  assert.ok(left.every((f) => f.startsWith(manifestB.model.sha256.slice(0, 32))), 'only the last model built is kept');
});
