/**
 * `osprey model inspect|pack|validate` and `osprey infer` as an operator runs them (child
 * processes), on fixture models built in code for every task, layout and input dtype.
 */
import assert from 'node:assert/strict';
import { cp, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { runOsprey } from '../helpers/osprey-process.js';
import { anomalibModel, redSpotPixels } from '../models/fixtures-anomaly.js';
import { end2endDetector, ORIGINAL_BOXES, yoloDetector } from '../models/fixtures-detection.js';
import { colourClassifier, rawGrayClassifier, scoresBoxesDetector } from '../models/fixtures.js';
import { pngFromPixels, solidPng, tempDir } from '../models/helpers.js';

const osprey = runOsprey;

/** Runs a command that must succeed; returns its stdout as JSON lines. */
async function ok(...args: string[]): Promise<Record<string, any>[]> {
  const r = await osprey(...args);
  assert.equal(r.code, 0, `osprey ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim().startsWith('{\n') ? [JSON.parse(r.stdout)] : r.stdout.trim().split('\n').map((l) => JSON.parse(l));
}

/** Runs a command that must fail with one line on stderr matching `pattern`. */
async function fails(pattern: RegExp, ...args: string[]): Promise<void> {
  const r = await osprey(...args);
  assert.notEqual(r.code, 0, `osprey ${args.join(' ')} should fail`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr.trim(), pattern);
}

async function writeModel(dir: string, name: string, model: OnnxModelBuilder): Promise<string> {
  const file = join(dir, name);
  await writeFile(file, model.toBytes());
  return file;
}

test('model inspect recognises each export convention and proposes a manifest', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-model-');
  const files = await Promise.all([
    writeModel(dir, 'yolo.onnx', yoloDetector().model),
    writeModel(dir, 'e2e.onnx', end2endDetector({ dtype: 'float16', halfOutput: true }).model),
    writeModel(dir, 'anomalib.onnx', anomalibModel().model),
    writeModel(dir, 'raw.onnx', anomalibModel({ raw: true }).model),
    writeModel(dir, 'softmax.onnx', colourClassifier({ softmax: true, dtype: 'float16' }).model),
    writeModel(dir, 'logits.onnx', colourClassifier({ dtype: 'uint8' }).model),
  ]);
  const [yolo, e2e, v2, raw, softmax, logits] = (await Promise.all(files.map((f) => ok('model', 'inspect', f)))).map((l) => l[0]!);
  assert.equal(yolo.convention, 'ultralytics');
  assert.deepEqual(yolo.outputs, [{ name: 'output0', dtype: 'float32', shape: [1, 6, 8] }]);
  assert.equal(yolo.metadata.names, "{0: 'screw', 1: 'scratch'}");
  assert.deepEqual([yolo.proposedManifest.input.resize, yolo.proposedManifest.outputs.detection.format], ['letterbox', 'yolov8']);
  assert.deepEqual([e2e.convention, e2e.inputs[0].dtype, e2e.proposedManifest.outputs.detection.format], ['ultralytics', 'float16', 'end2end']);
  assert.deepEqual([v2.convention, v2.proposedManifest.outputs.anomaly.format], ['anomalib-v2', 'anomalib-v2']);
  assert.equal(raw.convention, 'anomalib-raw');
  assert.equal(raw.proposedManifest, null);
  assert.match(raw.proposalError, /need --normalization/);
  assert.deepEqual([softmax.convention, softmax.proposedManifest.outputs.classification.activation], ['classifier-softmax', 'none']);
  assert.deepEqual([logits.convention, logits.proposedManifest.outputs.classification.activation], ['classifier-logits', 'softmax']);
});

test('model pack + infer: each task, layout and input dtype, exactly', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-model-');
  const [yolo, e2e, v2, raw, cls] = await Promise.all([
    writeModel(dir, 'yolo16.onnx', yoloDetector({ dtype: 'float16', halfOutput: true }).model),
    writeModel(dir, 'e2e8.onnx', end2endDetector({ dtype: 'uint8' }).model),
    writeModel(dir, 'anomalib16.onnx', anomalibModel({ dtype: 'float16' }).model),
    writeModel(dir, 'raw8.onnx', anomalibModel({ dtype: 'uint8', raw: true }).model),
    writeModel(dir, 'cls.onnx', colourClassifier().model),
  ]);
  const pkg = (name: string) => join(dir, 'packages', name);
  const packed = await Promise.all([
    ok('model', 'pack', yolo, '--out', pkg('yolo'), '--defect-labels', 'scratch', '--expect', 'screw=4'),
    ok('model', 'pack', e2e, '--out', pkg('e2e'), '--defect-labels', 'scratch', '--expect', 'screw=4..4'),
    ok('model', 'pack', v2, '--out', pkg('v2')),
    ok('model', 'pack', raw, '--out', pkg('raw'), '--normalization', '0,10,6'),
    // The fixture classifier takes plain 0..1 values: ImageNet defaults declared away.
    ok('model', 'pack', cls, '--out', pkg('cls'), '--labels', 'good,scratch,dent', '--defect-labels', 'scratch,dent', '--resize', 'stretch', '--mean', '0', '--std', '1'),
  ]);
  assert.deepEqual(packed.map((p) => p[0]!.format), ['yolov8', 'end2end', 'anomalib-v2', 'raw', undefined]);
  assert.equal(packed[0]![0]!.input, 'float16[nchw] 64x64 rgb letterbox');
  assert.deepEqual(await readdir(pkg('yolo')), ['manifest.json', 'model.onnx']);

  const write = async (name: string, png: Promise<Buffer>) => {
    await writeFile(join(dir, name), await png);
    return join(dir, name);
  };
  const [grey, red, green, calm, spot] = await Promise.all([
    write('grey.png', solidPng(128, 64, [128, 128, 128])),
    write('red.png', solidPng(128, 64, [255, 0, 0])),
    write('green.png', solidPng(128, 64, [0, 255, 0])),
    write('calm.png', pngFromPixels(redSpotPixels(102), 4, 4, 3)),
    write('spot.png', pngFromPixels(redSpotPixels(51, 204), 4, 4, 3)),
  ]);
  const [yl, el, vl, rl, cl] = await Promise.all([
    ok('infer', '--model', pkg('yolo'), grey, red, green),
    ok('infer', '--model', pkg('e2e'), grey, red, green),
    ok('infer', '--model', pkg('v2'), '--heatmaps', join(dir, 'heat'), calm, spot),
    ok('infer', '--model', pkg('raw'), calm, spot),
    ok('infer', '--model', pkg('cls'), red, green),
  ]);
  const box = (k: keyof typeof ORIGINAL_BOXES) => [...ORIGINAL_BOXES[k]];
  for (const [what, lines] of [['yolov8 float16', yl], ['end2end uint8', el]] as const) {
    assert.deepEqual(lines.map((l) => [l.file, l.verdict, l.label]), [
      [grey, 'ok', 'ok'],
      [red, 'defect', 'scratch'],
      [green, 'defect', 'missing:screw'],
    ], what);
    assert.deepEqual(lines[0]!.detections.map((d: { box: number[] }) => d.box), [box('A'), box('D'), box('B'), box('C')], what);
    assert.deepEqual(lines[1]!.detections.find((d: { label: string }) => d.label === 'scratch').box, box('S'), what);
    assert.equal(typeof lines[0]!.latencyMs, 'number');
  }
  const near = (a: number, b: number, eps: number) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);
  assert.deepEqual(vl.map((l) => [l.verdict, l.label]), [['ok', 'good'], ['defect', 'anomaly']]);
  near(vl[0]!.score, 0.4, 1e-3); // anomalib v2 fp16: the exported score, untouched
  near(vl[1]!.score, 0.8, 1e-3);
  // The anomaly map is kept as a small heatmap, for the defect image only.
  assert.equal(vl[0]!.heatmap, undefined);
  assert.equal(vl[1]!.heatmap, join(dir, 'heat', 'spot.png.heatmap.png'));
  assert.deepEqual((await readFile(vl[1]!.heatmap)).subarray(1, 4).toString(), 'PNG');
  assert.deepEqual(rl.map((l) => l.verdict), ['ok', 'defect']);
  near(rl[0]!.score, 0.3, 1e-6); // (4 − 6)/10 + 0.5
  near(rl[1]!.score, 0.7, 1e-6);
  // Logits (1, 0, 0) → softmax; green is a scratch.
  assert.deepEqual(cl.map((l) => [l.verdict, l.label]), [['ok', 'good'], ['defect', 'scratch']]);
  near(cl[0]!.top[0].score, Math.E / (Math.E + 2), 1e-6);

  const valid = await ok('model', 'validate', pkg('yolo'));
  assert.deepEqual([valid[0]!.valid, valid[0]!.task, valid[0]!.format], [true, 'detection', 'yolov8']);
});

test('model pack --postprocess copies the plug-in (as .mjs) and infer runs it', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-model-');
  const model = await writeModel(dir, 'yolo.onnx', yoloDetector().model);
  // A .js file in a directory without package.json: Node would read it as CommonJS. Packed as .mjs.
  await writeFile(
    join(dir, 'decode.js'),
    `export default function (outputs, ctx) {
  const out = outputs.output0, n = out.dims[2], boxes = [];
  for (let i = 0; i < n; i++) {
    const s0 = out.data[4 * n + i], s1 = out.data[5 * n + i], cls = s1 > s0 ? 1 : 0;
    const cx = out.data[i], cy = out.data[n + i], w = out.data[2 * n + i], h = out.data[3 * n + i];
    boxes.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score: Math.min(1, Math.max(s0, s1)), classId: cls });
  }
  return { boxes };
}
//# sourceMappingURL=decode.js.map
`,
  );
  await writeFile(join(dir, 'boom.js'), 'export default function () { throw new Error("boom"); }\n');
  const pkg = join(dir, 'pkg');
  const [packed] = await ok('model', 'pack', model, '--postprocess', join(dir, 'decode.js'), '--out', pkg, '--defect-labels', 'scratch', '--expect', 'screw=4');
  assert.deepEqual([packed!.format, packed!.postprocess], ['plugin', 'decode.mjs']);
  const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8'));
  assert.match(manifest.postprocess.sha256, /^[0-9a-f]{64}$/);
  assert.doesNotMatch(await readFile(join(pkg, 'decode.mjs'), 'utf8'), /sourceMappingURL/);

  const red = join(dir, 'red.png');
  await writeFile(red, await solidPng(128, 64, [255, 0, 0]));
  const [line] = await ok('infer', '--model', pkg, red);
  assert.deepEqual([line!.verdict, line!.label, line!.score], ['defect', 'scratch', 0.8]);
  assert.equal(line!.detections.length, 5);

  // A plug-in that throws: the smoke test fails, with one line, and nothing appears at --out.
  await fails(/^osprey: plug-in boom\.mjs failed: boom \[OSP_ERR_MODEL_PLUGIN\]$/, 'model', 'pack', model, '--postprocess', join(dir, 'boom.js'), '--out', join(dir, 'bad'));
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('bad')), []);
  // An existing package is not replaced without --force.
  await fails(/--out .*pkg exists and is not empty; add --force/, 'model', 'pack', model, '--out', pkg);
});

test('bad models and bad declarations are one-line errors with a non-zero exit', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-model-');
  const yolo = await writeModel(dir, 'yolo.onnx', yoloDetector().model);
  const bytes = yoloDetector().model.toBytes();
  const truncated = join(dir, 'truncated.onnx');
  await writeFile(truncated, bytes.subarray(0, bytes.length >> 1));
  const text = join(dir, 'notes.onnx');
  await writeFile(text, 'this is not a model');
  const out = join(dir, 'out');
  // A package whose manifest contradicts its model input.
  const pkg = join(dir, 'pkg');
  await ok('model', 'pack', yolo, '--out', pkg);
  // A copy whose model was changed after packing.
  const tampered = join(dir, 'tampered');
  await cp(pkg, tampered, { recursive: true });
  await writeFile(join(tampered, 'model.onnx'), bytes.subarray(0, bytes.length - 1));
  const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8'));
  manifest.input.width = 640;
  await writeFile(join(pkg, 'manifest.json'), JSON.stringify(manifest));

  await Promise.all([
    fails(/not an ONNX model .*\[OSP_ERR_MODEL_LOAD\]$/, 'model', 'inspect', text),
    fails(/notes\.onnx: not an ONNX model/, 'model', 'pack', text, '--out', out),
    fails(/truncated\.onnx: not an ONNX model or truncated/, 'model', 'pack', truncated, '--out', out),
    fails(/cannot read .*missing\.onnx: ENOENT/, 'model', 'inspect', join(dir, 'missing.onnx')),
    fails(/--size 320x320 contradicts the model input images, fixed at 64x64 \[OSP_ERR_MODEL_MANIFEST\]/, 'model', 'pack', yolo, '--size', '320x320', '--out', out),
    fails(/--task classification contradicts the model/, 'model', 'pack', yolo, '--task', 'classification', '--out', out),
    fails(/--task must be one of classification\|anomaly\|detection/, 'model', 'pack', yolo, '--task', 'segment', '--out', out),
    fails(/--expect needs LABEL=N or LABEL=MIN\.\.MAX, got "screw=many"/, 'model', 'pack', yolo, '--expect', 'screw=many', '--out', out),
    fails(/model pack needs --out DIR/, 'model', 'pack', yolo),
    fails(/cannot read --labels file .*nope\.txt/, 'model', 'pack', yolo, '--labels', join(dir, 'nope.txt'), '--out', out),
    fails(/model input images is float32\[1,3,64,64\] but the manifest says float32\[1,3,64,640\].*\[OSP_ERR_MODEL_INPUT\]/, 'infer', '--model', pkg, yolo),
    fails(/model\.onnx has sha256 .* but the manifest says .*\[OSP_ERR_MODEL_CHECKSUM\]/, 'model', 'validate', tampered),
  ]);
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('out')), [], 'nothing written for a refused pack');
});

test('bring your own model: metadata honoured, named after the file, scored by its top-1; an unknown detector layout refused', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-byom-');
  const mnist = await writeModel(dir, 'mnist-8.onnx', rawGrayClassifier());
  const face = await writeModel(dir, 'face.onnx', scoresBoxesDetector());
  const [inspected] = await ok('model', 'inspect', mnist);
  assert.equal(inspected!.proposedManifest.name, 'mnist-8');
  assert.deepEqual([inspected!.proposedManifest.input.scale, inspected!.proposedManifest.input.mean], [1, [0]]);

  const pkg = join(dir, 'pkg');
  const [packed] = await ok('model', 'pack', mnist, '--labels', 'bright,dark', '--out', pkg);
  assert.equal(packed!.name, 'mnist-8');
  const white = join(dir, 'white.png');
  const black = join(dir, 'black.png');
  await writeFile(white, await solidPng(8, 8, [255, 255, 255]));
  await writeFile(black, await solidPng(8, 8, [0, 0, 0]));
  // Raw 0..255 as the metadata says: white (mean 255) is bright, black dark, each with probability ~1.
  const lines = await ok('infer', '--model', pkg, white, black);
  assert.deepEqual(lines.map((l) => [l.verdict, l.label]), [['ok', 'bright'], ['ok', 'dark']]);
  for (const l of lines) {
    assert.equal(l.score, l.top[0].score, 'score is the top-1 probability when no label is a defect');
    assert.ok(l.score > 0.99, String(l.score));
  }

  await fails(
    /detector outputs scores \[1, 4420, 2\], boxes \[1, 4420, 4\] fit no layout Osprey decodes .*--postprocess plug-in \[OSP_ERR_MODEL_MANIFEST\]$/,
    'model', 'pack', face, '--task', 'detection', '--out', join(dir, 'face-pkg'),
  );
  assert.deepEqual((await readdir(dir)).filter((f) => f.startsWith('face-pkg')), [], 'nothing written for a refused pack');
});
