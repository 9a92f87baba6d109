/**
 * Compatibility with real public models (../shared/data/models, or $OSPREY_DATA/models): packed
 * with `osprey model pack` and run with `osprey infer`, exactly as an operator would.
 *
 * - SqueezeNet 1.0 (Windows ML, float16): a Caffe model fed as Windows ML binds images — BGR,
 *   0..255, no mean/std (ImageNet mean/std gives "mosquito net" for everything).
 * - Yolo-FastestV2 through its plug-in, checked against a reference decode written here from
 *   the README's description of the output, on an independent pre-processing path.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { OSPREY_BIN } from '../helpers/osprey-process.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { tempDir } from './helpers.js';

const exec = promisify(execFile);
const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const MODELS = path.join(ospreyDataDir(), 'models');
const skip = dataSkip('models');
const PLUGIN = path.join(repoRoot, 'dist/models/plugins/yolo-fastestv2.js');

async function osprey(...args: string[]): Promise<Record<string, any>[]> {
  const { stdout } = await exec(process.execPath, [OSPREY_BIN, ...args]).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`osprey ${args.join(' ')} failed: ${err.stderr || err.message}`);
  });
  return stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
}

test('SqueezeNet 1.0 fp16 packed with osprey model pack classifies the bird photo as a junco', { skip }, async (t) => {
  const dir = await tempDir(t);
  const src = path.join(MODELS, 'squeezenet-fp16');
  const pkg = path.join(dir, 'squeezenet');
  const [packed] = await osprey(
    'model', 'pack', path.join(src, 'model.onnx'), '--name', 'squeezenet', '--out', pkg,
    '--labels', path.join(src, 'labels.txt'), '--color', 'bgr', '--scale', '1', '--mean', '0', '--std', '1', '--crop-fraction', '1',
  );
  // Recognised from the graph: Softmax at the end, float16 input, 1000 classes from "index,name" lines.
  assert.deepEqual([packed!.task, packed!.input, packed!.labels], ['classification', 'float16[nchw] 224x224 bgr center-crop', 1000]);
  const manifest = JSON.parse(await readFile(path.join(pkg, 'manifest.json'), 'utf8'));
  assert.equal(manifest.outputs.classification.activation, 'none');
  assert.equal(manifest.labels[13], 'junco, snowbird');

  const [line] = await osprey('infer', '--model', pkg, path.join(MODELS, 'yolo-fastestv2/images/000148.jpg'));
  t.diagnostic(`SqueezeNet top-1: ${line!.top[0].label} ${line!.top[0].score}`);
  assert.equal(line!.label, 'junco, snowbird');
  assert.ok(line!.top[0].score > 0.9, `junco with ${line!.top[0].score}`);
});

// ---- Yolo-FastestV2 reference decode, from ../shared/data/README.md ----

interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  label: string;
}

const ANCHORS = { 16: [12.64, 19.39, 37.88, 51.48, 55.71, 138.31], 32: [126.91, 78.23, 131.57, 214.55, 279.92, 258.87] };

/** Reference: class score × objectness, best class per anchor, ≥ 0.3, agnostic NMS at IoU 0.4. */
function referenceDecode(data: Float32Array, names: string[], width: number, height: number): Box[] {
  const cols = 95;
  const found: Box[] = [];
  let row = 0;
  for (const stride of [16, 32] as const) {
    const cells = 352 / stride;
    for (let gy = 0; gy < cells; gy++) {
      for (let gx = 0; gx < cells; gx++, row++) {
        const r = data.subarray(row * cols, row * cols + cols);
        for (let a = 0; a < 3; a++) {
          let score = 0;
          let cls = 0;
          for (let c = 0; c < 80; c++) {
            const s = r[15 + c]! * r[12 + a]!;
            if (s > score) [score, cls] = [s, c];
          }
          if (score < 0.3) continue;
          const [x, y, w, h] = [r[a * 4]!, r[a * 4 + 1]!, r[a * 4 + 2]!, r[a * 4 + 3]!];
          const cx = (2 * x - 0.5 + gx) * stride;
          const cy = (2 * y - 0.5 + gy) * stride;
          const bw = (2 * w) ** 2 * ANCHORS[stride][a * 2]!;
          const bh = (2 * h) ** 2 * ANCHORS[stride][a * 2 + 1]!;
          // Straight to original pixels: a plain resize scales each axis on its own.
          const sx = width / 352;
          const sy = height / 352;
          const clip = (v: number, hi: number) => Math.min(hi, Math.max(0, v));
          found.push({
            x1: clip((cx - bw / 2) * sx, width),
            y1: clip((cy - bh / 2) * sy, height),
            x2: clip((cx + bw / 2) * sx, width),
            y2: clip((cy + bh / 2) * sy, height),
            score,
            label: names[cls]!,
          });
        }
      }
    }
  }
  const area = (b: Box) => (b.x2 - b.x1) * (b.y2 - b.y1);
  const overlap = (a: Box, b: Box) => {
    const w = Math.max(0, Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1));
    const h = Math.max(0, Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1));
    return (w * h) / (area(a) + area(b) - w * h);
  };
  const kept: Box[] = [];
  for (const b of found.sort((p, q) => q.score - p.score)) if (kept.every((k) => overlap(k, b) <= 0.4)) kept.push(b);
  return kept;
}

test('Yolo-FastestV2 through its plug-in finds the objects in its sample photos, as the reference decode does', { skip }, async (t) => {
  const dir = await tempDir(t);
  const src = path.join(MODELS, 'yolo-fastestv2');
  const pkg = path.join(dir, 'yolo-fastestv2');
  const [packed] = await osprey(
    'model', 'pack', path.join(src, 'model.onnx'), '--task', 'detection', '--name', 'yolo-fastestv2', '--out', pkg,
    '--labels', path.join(src, 'coco.names'), '--color', 'bgr', '--resize', 'stretch', '--postprocess', PLUGIN,
    '--confidence', '0.3', '--iou', '0.4', '--agnostic-nms',
  );
  assert.deepEqual([packed!.format, packed!.postprocess, packed!.labels], ['plugin', 'yolo-fastestv2.mjs', 80]);

  const images = (await readdir(path.join(src, 'images'))).filter((f) => f.endsWith('.jpg')).sort();
  const lines = await osprey('infer', '--model', pkg, ...images.map((f) => path.join(src, 'images', f)));
  const names = (await readFile(path.join(src, 'coco.names'), 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean);
  const session = await ort.InferenceSession.create(path.join(src, 'model.onnx'));
  t.after(() => session.release());

  const seen: Record<string, string[]> = {};
  for (const [i, file] of images.entries()) {
    // Independent pre-processing as the reference (OpenCV) does it: bilinear resize, BGR, /255.
    const img = sharp(await readFile(path.join(src, 'images', file)), { failOn: 'error' });
    const { width, height } = await img.metadata();
    const rgb = await img.removeAlpha().resize(352, 352, { fit: 'fill', kernel: 'linear', fastShrinkOnLoad: false }).raw().toBuffer();
    const x = new Float32Array(3 * 352 * 352);
    for (let p = 0; p < 352 * 352; p++) for (let c = 0; c < 3; c++) x[c * 352 * 352 + p] = rgb[p * 3 + (2 - c)]! / 255;
    const out = await session.run({ [session.inputNames[0]!]: new ort.Tensor('float32', x, [1, 3, 352, 352]) });
    const reference = referenceDecode(out[session.outputNames[0]!]!.data as Float32Array, names, width!, height!);

    const got = lines[i]!.detections as { label: string; score: number; box: number[] }[];
    seen[file] = got.map((d) => d.label);
    t.diagnostic(`${file}: ${got.map((d) => `${d.label} ${d.score.toFixed(2)} [${d.box.map(Math.round).join(',')}]`).join('; ')}`);
    assert.equal(got.length, reference.length, `${file}: ${got.length} detections, reference ${reference.length}`);
    for (const ref of reference) {
      // Each reference box has its counterpart: same label, within 2 px and 0.02 in score.
      const match = got.find((d) => d.label === ref.label && [ref.x1, ref.y1, ref.x2, ref.y2].every((v, k) => Math.abs(v - d.box[k]!) <= 2));
      assert.ok(match, `${file}: no match for ${ref.label} [${[ref.x1, ref.y1, ref.x2, ref.y2].map(Math.round)}]`);
      assert.ok(Math.abs(match.score - ref.score) <= 0.02, `${file}: ${ref.label} score ${match.score} vs ${ref.score}`);
    }
  }
  // What the photos show: a street of cars, a person on a bicycle, a bird.
  assert.ok(seen['000004.jpg']!.filter((l) => l === 'car').length >= 5);
  assert.ok(seen['000139.jpg']!.includes('person') && seen['000139.jpg']!.includes('bicycle'));
  assert.deepEqual(seen['000148.jpg'], ['bird']);
});
