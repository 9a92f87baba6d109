import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { loadModelPackage } from '../../models/package.js';
import { writeModelPackage, type ManifestDraft } from '../../models/package-writer.js';
import { isOspreyError, type ErrorCode } from '../../protocol/errors.js';
import { anomalibModel, redSpotPixels } from './fixtures-anomaly.js';
import { ORIGINAL_BOXES, yoloDetector } from './fixtures-detection.js';
import { pngFromPixels, solidPng, tempDir } from './helpers.js';

/**
 * A detection plug-in for the YOLO fixture, written against the plug-in contract: it decodes
 * output0 itself and returns every anchor (Osprey filters by confidence and runs NMS).
 * `context.options.mode` makes it misbehave in the ways a real plug-in can.
 */
const DECODER = `
export default function decode(outputs, ctx) {
  const mode = ctx.options.mode;
  if (mode === 'throw') throw new Error('boom\\nsecond line');
  if (mode === 'garbage') return ctx.options.value;
  if (ctx.inputWidth !== 64 || ctx.inputHeight !== 64 || ctx.labels.join() !== 'screw,scratch' || ctx.confidence !== 0.25) {
    throw new Error('unexpected context ' + JSON.stringify(ctx));
  }
  const out = outputs.output0;
  const [, rows, n] = out.dims;
  const boxes = [];
  for (let i = 0; i < n; i++) {
    let best = -1, cls = 0;
    for (let c = 4; c < rows; c++) if (out.data[c * n + i] > best) { best = out.data[c * n + i]; cls = c - 4; }
    if (mode === 'throw-on-scratch' && cls === 1 && best > 0.5) throw new TypeError('cannot handle scratches');
    const cx = out.data[i], cy = out.data[n + i], w = out.data[2 * n + i], h = out.data[3 * n + i];
    boxes.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score: Math.min(1, Math.max(0, best)), classId: cls });
  }
  if (mode === 'async') return new Promise((resolve) => setImmediate(() => resolve({ boxes })));
  if (mode === 'hang-on-scratch' && boxes.some((b) => b.classId === 1 && b.score > 0.5)) return new Promise(() => {});
  return { boxes };
}
`;

function expectCode(code: ErrorCode, pattern: RegExp) {
  return (err: unknown) => {
    assert.ok(isOspreyError(err, code), `expected ${code}, got ${String(err)}`);
    assert.match((err as Error).message, pattern);
    assert.ok(!(err as Error).message.includes('\n'), 'one line');
    return true;
  };
}

function pluginDraft(options: Record<string, unknown> = {}, module = 'decode.mjs'): ManifestDraft {
  const { manifest } = yoloDetector();
  return {
    ...manifest,
    outputs: { detection: { format: 'plugin', iou: 0.7, confidence: 0.25, expectedCounts: { screw: { min: 4, max: 4 } } } },
    postprocess: { module, options },
  };
}

async function pluginPackage(t: TestContext, source: string, options: Record<string, unknown> = {}, dir?: string): Promise<string> {
  const target = dir ?? (await tempDir(t));
  await writeModelPackage(target, pluginDraft(options), yoloDetector().model.toBytes(), { plugin: Buffer.from(source) });
  return target;
}

const red = () => solidPng(128, 64, [255, 0, 0]);
const grey = () => solidPng(128, 64, [128, 128, 128]);

test('a detection plug-in decodes; Osprey filters, runs NMS, undoes the letterbox and judges', async (t) => {
  for (const mode of ['sync', 'async']) {
    const runner = await loadModelPackage(await pluginPackage(t, DECODER, { mode }));
    t.after(() => runner.close());
    const r = await runner.inspect(await red());
    assert.deepEqual([r.verdict, r.label, r.score], ['defect', 'scratch', 0.8], mode);
    assert.deepEqual(
      r.detections!.map((d) => d.box).sort(),
      [ORIGINAL_BOXES.A, ORIGINAL_BOXES.B, ORIGINAL_BOXES.C, ORIGINAL_BOXES.D, ORIGINAL_BOXES.S].map((b) => [...b]).sort(),
      mode,
    );
    assert.equal((await runner.inspect(await grey())).verdict, 'ok');
  }
});

test('a plug-in that throws or returns garbage fails the load with OSP_ERR_MODEL_PLUGIN', async (t) => {
  await assert.rejects(loadModelPackage(await pluginPackage(t, DECODER, { mode: 'throw' })), expectCode('OSP_ERR_MODEL_PLUGIN', /^plug-in decode\.mjs failed: boom$/));
  const garbage: [unknown, RegExp][] = [
    [null, /returned null instead of \{ boxes: \[\.\.\.\] \}/],
    [{ boxes: 'many' }, /returned an object instead of \{ boxes/],
    [[1, 2], /returned an array instead of/],
    [{ boxes: [{ x1: 0, y1: 0, x2: 1, y2: 1, score: 0.5 }] }, /boxes\[0\]\.classId = undefined, not a label index 0\.\.1/],
    [{ boxes: [{ x1: 0, y1: 0, x2: 1, y2: 1, score: 0.5, classId: 2 }] }, /boxes\[0\]\.classId = 2/],
    [{ boxes: [{ x1: 0, y1: 0, x2: 1, y2: 'a', score: 0.5, classId: 0 }] }, /boxes\[0\]\.y2 = "a", not a finite number/],
    [{ boxes: [{ x1: 5, y1: 0, x2: 1, y2: 1, score: 0.5, classId: 0 }] }, /x2 < x1/],
    [{ boxes: [{ x1: 0, y1: 0, x2: 1, y2: 1, score: 7, classId: 0 }] }, /score = 7, outside \[0, 1\]/],
  ];
  for (const [value, pattern] of garbage) {
    await assert.rejects(loadModelPackage(await pluginPackage(t, DECODER, { mode: 'garbage', value })), expectCode('OSP_ERR_MODEL_PLUGIN', pattern));
  }
});

test('a plug-in that fails on one frame fails that frame only; the runner keeps working', async (t) => {
  const runner = await loadModelPackage(await pluginPackage(t, DECODER, { mode: 'throw-on-scratch' }));
  t.after(() => runner.close());
  await assert.rejects(runner.inspect(await red()), expectCode('OSP_ERR_MODEL_PLUGIN', /^plug-in decode\.mjs failed: TypeError: cannot handle scratches$/));
  assert.equal((await runner.inspect(await grey())).detections!.length, 4);

  const hanging = await loadModelPackage(await pluginPackage(t, DECODER, { mode: 'hang-on-scratch' }), { pluginTimeoutMs: 50 });
  t.after(() => hanging.close());
  await assert.rejects(hanging.inspect(await red()), expectCode('OSP_ERR_MODEL_PLUGIN', /did not return within 50 ms/));
  assert.equal((await hanging.inspect(await grey())).verdict, 'ok');
});

test('modules that do not load, or were changed after packing, are refused', async (t) => {
  await assert.rejects(loadModelPackage(await pluginPackage(t, 'export default function (o {')), expectCode('OSP_ERR_MODEL_PLUGIN', /^plug-in decode\.mjs cannot be loaded: SyntaxError/));
  await assert.rejects(loadModelPackage(await pluginPackage(t, 'export const decode = () => ({ boxes: [] });')), expectCode('OSP_ERR_MODEL_PLUGIN', /has no default export function \(it exports undefined\)/));
  await assert.rejects(loadModelPackage(await pluginPackage(t, 'throw new Error("at import");')), expectCode('OSP_ERR_MODEL_PLUGIN', /cannot be loaded: at import/));
  const dir = await pluginPackage(t, DECODER);
  await writeFile(join(dir, 'decode.mjs'), `${DECODER}\n// tampered`);
  await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_CHECKSUM', /decode\.mjs has sha256 [0-9a-f]{64} but the manifest says/));
  await rm(join(dir, 'decode.mjs'));
  await assert.rejects(loadModelPackage(dir), expectCode('OSP_ERR_MODEL_PLUGIN', /cannot read plug-in .*decode\.mjs: not found/));
});

test('each package (and each version of one) gets its own module instance', async (t) => {
  // Same file name, different code, loaded side by side in one process.
  const constant = (classId: number) => `let calls = 0;
export default () => ({ boxes: [{ x1: 4, y1: 20, x2: 12, y2: 28, score: 0.9, classId: ${classId} }], calls: ++calls });`;
  const a = await loadModelPackage(await pluginPackage(t, constant(0)));
  const b = await loadModelPackage(await pluginPackage(t, constant(1)));
  t.after(() => a.close());
  t.after(() => b.close());
  const image = await grey();
  assert.equal((await a.inspect(image)).detections![0]!.label, 'screw');
  assert.equal((await b.inspect(image)).detections![0]!.label, 'scratch');
  // A new version written over the same directory is imported afresh, not served from the cache.
  const dir = await pluginPackage(t, constant(0));
  const v1 = await loadModelPackage(dir);
  assert.equal((await v1.inspect(image)).detections![0]!.label, 'screw');
  await v1.close();
  await pluginPackage(t, constant(1), {}, dir);
  const v2 = await loadModelPackage(dir);
  t.after(() => v2.close());
  assert.equal((await v2.inspect(image)).detections![0]!.label, 'scratch');
});

test('an anomaly plug-in returns { score, map }, normalised per the manifest', async (t) => {
  const dir = await tempDir(t);
  const { model, manifest } = anomalibModel({ raw: true });
  // Mean of the raw map (×10 red) instead of its max; map passed through.
  const source = `export default function (outputs) {
  const m = outputs.anomaly_map;
  const score = m.data.reduce((a, b) => a + b, 0) / m.data.length;
  return { score, map: { data: m.data, width: m.dims[3], height: m.dims[2] } };
}`;
  await writeModelPackage(
    dir,
    { ...manifest, outputs: { anomaly: { format: 'plugin', normalization: { min: 0, max: 10, threshold: 4 } } }, postprocess: { module: 'mean.mjs' } },
    model.toBytes(),
    { plugin: Buffer.from(source) },
  );
  const runner = await loadModelPackage(dir);
  t.after(() => runner.close());
  // Red 102 → raw map 4 everywhere → mean 4 → (4 − 4)/10 + 0.5 = 0.5: at the threshold.
  const edge = await runner.inspect(await pngFromPixels(redSpotPixels(102), 4, 4, 3), { heatmap: true });
  assert.deepEqual([edge.verdict, edge.score], ['defect', 0.5]);
  assert.deepEqual([edge.anomalyMap!.width, edge.anomalyMap!.height], [4, 4]);
  // Red 51 with one 204 → raw mean (15·2 + 8)/16 = 2.375 → 0.3375.
  const good = await runner.inspect(await pngFromPixels(redSpotPixels(51, 204), 4, 4, 3));
  assert.equal(good.verdict, 'ok');
  assert.ok(Math.abs(good.score - 0.3375) < 1e-6, String(good.score));
});
