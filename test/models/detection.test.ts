import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeEnd2End,
  decodeYolov8,
  detectionVerdict,
  iou,
  labelBoxes,
  nmsClasswise,
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

test('class-wise NMS keeps overlapping boxes of different classes', () => {
  const boxes: RawBox[] = [
    { x1: 0, y1: 0, x2: 10, y2: 10, score: 0.9, classId: 0 },
    { x1: 1, y1: 0, x2: 11, y2: 10, score: 0.8, classId: 0 }, // IoU 9/11 with the first: suppressed
    { x1: 1, y1: 0, x2: 11, y2: 10, score: 0.7, classId: 1 }, // other class: kept
    { x1: 50, y1: 50, x2: 60, y2: 60, score: 0.5, classId: 0 },
  ];
  const kept = nmsClasswise(boxes, 0.7);
  assert.deepEqual(kept.map((b) => b.score), [0.9, 0.7, 0.5]);
  assert.deepEqual(nmsClasswise(boxes, 0.95).map((b) => b.score), [0.9, 0.8, 0.7, 0.5]);
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
    expected: [{ label: 'screw', count: 4, minScore: 0.4 }],
  };
  const screws = [det('screw', 0.9), det('screw', 0.9), det('screw', 0.8), det('screw', 0.7)];
  assert.deepEqual(detectionVerdict([...screws], rules), { verdict: 'ok', label: 'ok', score: 0, threshold: 0.5 });
  assert.equal(detectionVerdict([...screws, det('dent', 0.7)], rules).verdict, 'ok');
  assert.deepEqual(detectionVerdict([...screws, det('dent', 0.85), det('scratch', 0.6)], rules), {
    verdict: 'defect', label: 'dent', score: 0.85, threshold: 0.8,
  });
  assert.deepEqual(detectionVerdict(screws.slice(0, 3).concat(det('screw', 0.3)), rules), {
    verdict: 'defect', label: 'missing:screw', score: 3, threshold: 4,
  });
  assert.equal(detectionVerdict([...screws, det('screw', 0.5)], rules).label, 'extra:screw');
});
