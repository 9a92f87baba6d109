import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { loadModelPackage } from '../../models/package.js';
import type { OnnxModelBuilder } from '../../models/onnx-builder.js';
import type { ManifestDraft } from '../../models/package-writer.js';
import { isOspreyError } from '../../protocol/errors.js';
import { end2endDetector, ORIGINAL_BOXES, yoloDetector } from './fixtures-detection.js';
import { solidPng, tempDir, writePackage } from './helpers.js';
import {
  decodeEnd2End,
  decodeYolov8,
  detectionVerdict,
  iou,
  labelBoxes,
  nms,
  type RawBox,
} from '../../models/postprocess/detection.js';
import { boxToOriginal, planResize } from '../../models/geometry.js';

/** Builds a [1, 4+nc, N] tensor from per-anchor rows [cx, cy, w, h, s0, s1, ...]. */
function yoloTensor(anchors: number[][]): { data: Float32Array; dims: number[] } {
  const channels = anchors[0]!.length;
  const n = anchors.length;
  const data = new Float32Array(channels * n);
  anchors.forEach((row, i) => row.forEach((v, c) => (data[c * n + i] = v)));
  return { data, dims: [1, channels, n] };
}

test('iou of known boxes', () => {
  const a: RawBox = { x1: 0, y1: 0, x2: 10, y2: 10, score: 1, classId: 0 };
  const b: RawBox = { x1: 5, y1: 0, x2: 15, y2: 10, score: 1, classId: 0 };
  assert.equal(iou(a, b), 50 / 150);
  assert.equal(iou(a, { ...b, x1: 10 }), 0);
});

test('YOLOv8 raw head: centre boxes, best class, confidence filter', () => {
  const { data, dims } = yoloTensor([
    [100, 50, 20, 10, 0.1, 0.9],
    [30, 30, 10, 10, 0.2, 0.1], // below 0.25: dropped
    [200, 200, 40, 40, 0.6, 0.3],
  ]);
  const boxes = decodeYolov8(data, dims, 0.25);
  assert.equal(boxes.length, 2);
  assert.deepEqual(boxes[0], { x1: 90, y1: 45, x2: 110, y2: 55, score: data[5 * 3 + 0], classId: 1 });
  assert.deepEqual({ ...boxes[1]!, score: Math.round(boxes[1]!.score * 10) / 10 }, { x1: 180, y1: 180, x2: 220, y2: 220, score: 0.6, classId: 0 });
  assert.throws(() => decodeYolov8(data, [1, 6], 0.25), /expected a \[1, 4\+classes, anchors\]/);
});

/** The decode as first written: per anchor, the best class, kept when it reaches the confidence. */
function referenceDecode(data: ArrayLike<number>, channels: number, n: number, confidence: number): RawBox[] {
  const out: RawBox[] = [];
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    let cls = -1;
    for (let c = 4; c < channels; c++) {
      const s = Number(data[c * n + i]);
      if (s > best) {
        best = s;
        cls = c - 4;
      }
    }
    if (best < confidence) continue;
    const [cx, cy, w, h] = [data[i]!, data[n + i]!, data[2 * n + i]!, data[3 * n + i]!];
    out.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score: best, classId: cls });
  }
  return out;
}

test('YOLOv8 decode: the bit-pattern prefilter keeps exactly the anchors a plain scan keeps', () => {
  const channels = 4 + 7;
  const n = 3000;
  const data = new Float32Array(channels * n);
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  // Scores around the thresholds, negatives, NaN, ±0 and ±Infinity, and values exactly at them.
  const specials = [NaN, -0, 0, Infinity, -Infinity, -0.5, Math.fround(0.3), 0.25, 1];
  for (let i = 0; i < data.length; i++) data[i] = rand() < 0.02 ? specials[i % specials.length]! : rand() * 0.6 - 0.1;
  for (const confidence of [0.25, 0.3, Math.fround(0.3), 0.1, 1e-6, 0, -0.05]) {
    assert.deepEqual(decodeYolov8(data, [1, channels, n], confidence), referenceDecode(data, channels, n, confidence), `confidence ${confidence}`);
  }
  // Not float32 (a plug-in's or a test's plain numbers): the plain path, same answer.
  const plain = Array.from(data.subarray(0, channels * 50));
  assert.deepEqual(decodeYolov8(plain, [1, channels, 50], 0.3), referenceDecode(plain, channels, 50, 0.3));
});

test('class-wise NMS keeps overlapping boxes of different classes', () => {
  const boxes: RawBox[] = [
    { x1: 0, y1: 0, x2: 10, y2: 10, score: 0.9, classId: 0 },
    { x1: 1, y1: 0, x2: 11, y2: 10, score: 0.8, classId: 0 }, // IoU 9/11 with the first: suppressed
    { x1: 1, y1: 0, x2: 11, y2: 10, score: 0.7, classId: 1 }, // other class: kept
    { x1: 50, y1: 50, x2: 60, y2: 60, score: 0.5, classId: 0 },
  ];
  const kept = nms(boxes, 0.7);
  assert.deepEqual(kept.map((b) => b.score), [0.9, 0.7, 0.5]);
  assert.deepEqual(nms(boxes, 0.95).map((b) => b.score), [0.9, 0.8, 0.7, 0.5]);
  // Class-agnostic: the other class's box is suppressed too; maxDetections caps what is kept.
  assert.deepEqual(nms(boxes, 0.7, { agnostic: true }).map((b) => b.score), [0.9, 0.5]);
  assert.deepEqual(nms(boxes, 0.7, { maxDetections: 2 }).map((b) => b.score), [0.9, 0.7]);
  // IoU exactly at the threshold is kept (torchvision suppresses only above it).
  assert.equal(nms([boxes[0]!, { ...boxes[0]!, x1: 5, score: 0.1 }], 0.5).length, 2);
});

test('letterbox undo maps input pixels back to the original and clips', () => {
  // 1280×720 letterboxed into 640×640: scale 0.5, content 640×360, padY round(140 - 0.1) = 140.
  const plan = planResize(1280, 720, { width: 640, height: 640, resize: 'letterbox', cropFraction: 1 });
  assert.deepEqual(plan.letterbox, { scale: 0.5, padX: 0, padY: 140 });
  assert.deepEqual(boxToOriginal([100, 140, 200, 500], plan.transform, 1280, 720), [200, 0, 400, 720]);
  assert.deepEqual(boxToOriginal([-10, 100, 700, 600], plan.transform, 1280, 720), [0, 0, 1280, 720]);
});

test('end-to-end [1, N, 6] output', () => {
  const data = new Float32Array([10, 20, 30, 40, 0.9, 2, 0, 0, 1, 1, 0.1, 0]);
  const boxes = decodeEnd2End(data, [1, 2, 6], 0.25);
  assert.equal(boxes.length, 1);
  assert.deepEqual({ ...boxes[0]!, score: 0 }, { x1: 10, y1: 20, x2: 30, y2: 40, score: 0, classId: 2 });
  assert.deepEqual(labelBoxes(boxes, ['a', 'b', 'c']).map((d) => d.label), ['c']);
});

test('verdict rules: defect labels above their threshold, expected counts', () => {
  const det = (label: string, score: number) => ({ label, score, box: [0, 0, 1, 1] as [number, number, number, number] });
  const rules = {
    defectLabels: ['scratch', 'dent'],
    threshold: (label: string) => (label === 'dent' ? 0.8 : 0.5),
    defaultThreshold: 0.5,
    expected: [{ label: 'screw', count: 4, minScore: 0.4 }],
  };
  const screws = [det('screw', 0.9), det('screw', 0.9), det('screw', 0.8), det('screw', 0.7)];
  assert.deepEqual(detectionVerdict([...screws], rules), { verdict: 'ok', label: 'ok', score: 0, threshold: 0.5 });
  // A dent below its own threshold: ok, and the closest call is reported.
  assert.deepEqual(detectionVerdict([...screws, det('dent', 0.7)], rules), { verdict: 'ok', label: 'ok', score: 0.7, threshold: 0.8 });
  assert.deepEqual(detectionVerdict([...screws, det('dent', 0.85), det('scratch', 0.6)], rules), {
    verdict: 'defect', label: 'dent', score: 0.85, threshold: 0.8,
  });
  assert.deepEqual(detectionVerdict(screws.slice(0, 3).concat(det('screw', 0.3)), rules), {
    verdict: 'defect', label: 'missing:screw', score: 3, threshold: 4,
  });
  assert.equal(detectionVerdict([...screws, det('screw', 0.5)], rules).label, 'extra:screw');
});

// ---- Real ONNX detectors (fixtures-detection.ts) through loadModelPackage ----

const close = (a: number, b: number, eps = 1e-6) => assert.ok(Math.abs(a - b) <= eps, `${a} ≉ ${b}`);

/** A 128×64 solid-colour PNG: letterboxed into 64×64 at scale 0.5, padTop 16. */
const scene = (rgb: [number, number, number]) => solidPng(128, 64, rgb);
const GREY: [number, number, number] = [128, 128, 128];
const RED: [number, number, number] = [255, 0, 0];
const GREEN: [number, number, number] = [0, 255, 0];

async function runner(t: TestContext, fixture: { model: OnnxModelBuilder; manifest: ManifestDraft }, edit: (m: ManifestDraft) => void = () => {}) {
  const dir = await tempDir(t);
  const manifest = structuredClone(fixture.manifest);
  edit(manifest);
  await writePackage(dir, manifest, fixture.model);
  const r = await loadModelPackage(dir);
  t.after(() => r.close());
  return r;
}

test('YOLOv8 raw head: letterbox undone, class-wise NMS, defect labels and expected counts', async (t) => {
  const r = await runner(t, yoloDetector());

  const grey = await r.inspect(await scene(GREY));
  assert.deepEqual([grey.verdict, grey.label, grey.score, grey.threshold], ['ok', 'ok', 0, 0.5]);
  // A' is suppressed by A (same class, IoU 0.78 > 0.7); the rest, highest score first.
  assert.deepEqual(grey.detections!.map((d) => [d.label, d.box]), [
    ['screw', [...ORIGINAL_BOXES.A]],
    ['screw', [...ORIGINAL_BOXES.D]],
    ['screw', [...ORIGINAL_BOXES.B]],
    ['screw', [...ORIGINAL_BOXES.C]],
  ]);
  assert.deepEqual(grey.detections!.map((d) => d.score), [0.9, 0.85, 0.8, 0.7]);

  // Red: the scratch overlaps A exactly as A' did, but class-wise NMS keeps it.
  const red = await r.inspect(await scene(RED));
  assert.deepEqual([red.verdict, red.label, red.score, red.threshold], ['defect', 'scratch', 0.8, 0.5]);
  const scratch = red.detections!.find((d) => d.label === 'scratch')!;
  assert.deepEqual(scratch.box, [...ORIGINAL_BOXES.S]);
  assert.equal(red.detections!.length, 5);

  // Green: D fades below the confidence: three screws where four are expected.
  const green = await r.inspect(await scene(GREEN));
  assert.deepEqual([green.verdict, green.label, green.score, green.threshold], ['defect', 'missing:screw', 3, 4]);

  // Per-edge thresholds: the scratch judged at 0.9 no longer fires; the closest call is reported.
  const tuned = await r.inspect(await scene(RED), { thresholds: { perLabel: { scratch: 0.9 } } });
  assert.deepEqual([tuned.verdict, tuned.label, tuned.score, tuned.threshold], ['ok', 'ok', 0.8, 0.9]);
  // A per-label threshold on a counted part: only screws at ≥ 0.75 count (A, D, B) → missing.
  const strict = await r.inspect(await scene(GREY), { thresholds: { perLabel: { screw: 0.75 } } });
  assert.deepEqual([strict.label, strict.score], ['missing:screw', 3]);
});

test('class-agnostic NMS and an upper bound on a count', async (t) => {
  const r = await runner(t, yoloDetector(), (m) => {
    m.outputs.detection!.classAgnosticNms = true;
    m.outputs.detection!.expectedCounts = { screw: { max: 3 } };
  });
  const red = await r.inspect(await scene(RED));
  // The scratch (0.8) overlaps A (0.9) by 0.78: suppressed across classes.
  assert.equal(red.detections!.some((d) => d.label === 'scratch'), false);
  assert.deepEqual([red.verdict, red.label, red.score, red.threshold], ['defect', 'extra:screw', 4, 3]);
});

test('every input dtype and both output layouts give the same detections', async (t) => {
  const fixtures = [
    ['yolov8 float32', yoloDetector()],
    ['yolov8 float16 in and out', yoloDetector({ dtype: 'float16', halfOutput: true })],
    ['yolov8 uint8', yoloDetector({ dtype: 'uint8' })],
    ['end2end float32', end2endDetector()],
    ['end2end float16', end2endDetector({ dtype: 'float16', halfOutput: true })],
    ['end2end uint8', end2endDetector({ dtype: 'uint8' })],
  ] as const;
  const red = await scene(RED);
  const green = await scene(GREEN);
  for (const [what, fixture] of fixtures) {
    const r = await runner(t, fixture);
    const a = await r.inspect(red);
    const eps = what.includes('float16') ? 2e-3 : 1e-5;
    assert.deepEqual([a.verdict, a.label], ['defect', 'scratch'], what);
    close(a.score, 0.8, eps);
    const boxes = Object.fromEntries(a.detections!.map((d) => [`${d.label}@${d.box.join(',')}`, d.score]));
    assert.deepEqual(Object.keys(boxes).sort(), [
      ...(['A', 'B', 'C', 'D'] as const).map((k) => `screw@${ORIGINAL_BOXES[k].join(',')}`),
      `scratch@${ORIGINAL_BOXES.S.join(',')}`,
    ].sort(), what);
    assert.equal((await r.inspect(green)).label, 'missing:screw', what);
  }
});

test('detector outputs the manifest cannot read fail at load, with one line', async (t) => {
  const cases: [string, { model: OnnxModelBuilder; manifest: ManifestDraft }, (m: ManifestDraft) => void, RegExp][] = [
    ['a label too many', yoloDetector(), (m) => m.labels.push('nut'), /output0 has shape \[1,6,8\] but format yolov8 with 3 labels needs \[1,7,N\]/],
    ['end2end read as yolov8', end2endDetector(), (m) => (m.outputs.detection!.format = 'yolov8'), /has shape \[1,10,6\] but format yolov8/],
    ['yolov8 read as end2end', yoloDetector(), (m) => (m.outputs.detection!.format = 'end2end'), /has shape \[1,6,8\] but format end2end needs \[1,N,6\]/],
    ['a missing output', yoloDetector(), (m) => (m.outputs.detection!.output = 'output1'), /no output output1 .*its outputs: output0/],
  ];
  for (const [what, fixture, edit, pattern] of cases) {
    const dir = await tempDir(t);
    const manifest = structuredClone(fixture.manifest);
    edit(manifest);
    await writePackage(dir, manifest, fixture.model);
    await assert.rejects(loadModelPackage(dir), (err: unknown) => {
      assert.ok(isOspreyError(err, 'OSP_ERR_MODEL_OUTPUT'), `${what}: ${String(err)}`);
      assert.match((err as Error).message, pattern, what);
      assert.ok(!(err as Error).message.includes('\n'));
      return true;
    });
  }
  // An end2end class id beyond the labels is caught on the frame where it appears.
  const r = await runner(t, end2endDetector(), (m) => {
    m.labels = ['screw'];
    m.defectLabels = [];
  });
  await assert.rejects(r.inspect(await scene(RED)), (err: unknown) => isOspreyError(err, 'OSP_ERR_MODEL_OUTPUT') && /class 1 but the manifest has 1 labels/.test((err as Error).message));
});
