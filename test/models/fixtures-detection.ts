/**
 * Detector fixtures in the layouts Osprey reads, built in code with outputs known by hand.
 *
 * Both detectors see a 64×64 letterboxed input and output boxes at fixed places, with scores
 * driven by the image's colour through differences of channel means, so the letterbox's grey
 * padding (114 on every channel) cancels out. The tests use 128×64 solid-colour images: the
 * letterbox scale is 0.5 and the content is 64×32 at padTop = round(16 − 0.1) = 16, so it covers
 * half the input and a channel difference of 1 (255 vs 0) shows up as 0.5.
 *
 *   box (input px)        class    score                    after NMS (iou 0.7)
 *   A  [4, 20, 12, 28]    screw    0.9
 *   B  [20, 20, 28, 28]   screw    0.8
 *   C  [36, 36, 44, 44]   screw    0.7
 *   A' [5, 20, 13, 28]    screw    0.6                      suppressed by A (IoU 56/72 = 0.78)
 *   S  [5, 20, 13, 28]    scratch  1.6·(R̄ − Ḡ)              kept (other class) — red: 0.8
 *   D  [52, 36, 60, 44]   screw    0.85 − 1.6·(Ḡ − B̄)       green: 0.05, dropped (< 0.25)
 *
 * So: grey → 4 screws, ok; red → scratch 0.8, defect; green → 3 screws, missing:screw.
 * In a 128×64 image (x = xi / 0.5, y = (yi − 16) / 0.5) the boxes are
 * A [8, 8, 24, 24], B [40, 8, 56, 24], C [72, 40, 88, 56], D [104, 40, 120, 56], S [10, 8, 26, 24].
 */
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import type { ManifestDraft } from '../../models/package-writer.js';
import { colourHead, imageInput, inputScale, type InputDtype } from './fixtures.js';

export const DETECTOR_LABELS = ['screw', 'scratch'];

/** Expected detections in a 128×64 image, by fixture box name. */
export const ORIGINAL_BOXES = {
  A: [8, 8, 24, 24],
  B: [40, 8, 56, 24],
  C: [72, 40, 88, 56],
  D: [104, 40, 120, 56],
  S: [10, 8, 26, 24],
} as const;

type Term = readonly [number, number, number, number];
const c = (v: number): Term => [v, 0, 0, 0];
const RED_MINUS_GREEN: Term = [0, 1.6, -1.6, 0];
const D_SCORE: Term = [0.85, 0, -1.6, 1.6];

/** [x1, y1, x2, y2, class, score term] per anchor, in input pixels. */
const ANCHORS: [number, number, number, number, number, Term][] = [
  [4, 20, 12, 28, 0, c(0.9)],
  [20, 20, 28, 28, 0, c(0.8)],
  [36, 36, 44, 44, 0, c(0.7)],
  [5, 20, 13, 28, 0, c(0.6)],
  [5, 20, 13, 28, 1, RED_MINUS_GREEN],
  [52, 36, 60, 44, 0, D_SCORE],
  // Background anchors, as every real head has thousands of.
  [0, 0, 64, 64, 0, c(0.01)],
  [30, 30, 34, 34, 1, c(0.1)],
];

export interface DetectorOptions {
  dtype?: InputDtype;
  /** Output dtype float16 (as `half=True` exports), converted by the loader. */
  halfOutput?: boolean;
}

function ultralyticsMeta(b: OnnxModelBuilder, end2end: boolean): void {
  b.meta('description', 'Ultralytics YOLO11n model trained on screws.yaml')
    .meta('author', 'Ultralytics')
    .meta('version', '8.3.40')
    .meta('license', 'AGPL-3.0 License (https://ultralytics.com/license)')
    .meta('stride', '32')
    .meta('task', 'detect')
    .meta('batch', '1')
    .meta('imgsz', '[64, 64]')
    .meta('names', "{0: 'screw', 1: 'scratch'}")
    .meta('end2end', end2end ? 'True' : 'False');
}

function finish(b: OnnxModelBuilder, value: string, out: string, dims: number[], half: boolean): void {
  if (half) b.node('Cast', [value], [out], { to: 10 });
  else b.node('Identity', [value], [out]);
  b.output(out, half ? 'float16' : 'float32', dims);
}

function detectorManifest(name: string, dtype: InputDtype, detection: NonNullable<ManifestDraft['outputs']['detection']>): ManifestDraft {
  return {
    schemaVersion: 1,
    name,
    version: '1.0.0',
    task: 'detection',
    input: { name: 'images', layout: 'nchw', width: 64, height: 64, dtype, color: 'rgb', resize: 'letterbox', padValue: 114, ...inputScale(dtype) },
    outputs: { detection },
    labels: DETECTOR_LABELS,
    defectLabels: ['scratch'],
    thresholds: { default: 0.5 },
  };
}

/**
 * Ultralytics YOLOv8/11 raw head: output0 [1, 4+nc, N] (cx, cy, w, h, class scores), with the
 * metadata_props an Ultralytics export writes.
 */
export function yoloDetector(opts: DetectorOptions = {}): { model: OnnxModelBuilder; manifest: ManifestDraft } {
  const dtype = opts.dtype ?? 'float32';
  const b = new OnnxModelBuilder({ opset: 13, producerName: 'pytorch', producerVersion: '2.5.1' });
  const x = imageInput(b, 'images', dtype, [1, 3, 64, 64]);
  const n = ANCHORS.length;
  const rows = 4 + DETECTOR_LABELS.length;
  const terms: Term[] = new Array(rows * n).fill(c(0));
  ANCHORS.forEach(([x1, y1, x2, y2, cls, score], i) => {
    terms[0 * n + i] = c((x1 + x2) / 2);
    terms[1 * n + i] = c((y1 + y2) / 2);
    terms[2 * n + i] = c(x2 - x1);
    terms[3 * n + i] = c(y2 - y1);
    terms[(4 + cls) * n + i] = score;
  });
  colourHead(b, x, terms, 'head', [1, rows, n]);
  finish(b, 'head', 'output0', [1, rows, n], opts.halfOutput ?? false);
  ultralyticsMeta(b, false);
  return {
    model: b,
    manifest: detectorManifest('yolo-fixture', dtype, {
      format: 'yolov8',
      output: 'output0',
      iou: 0.7,
      confidence: 0.25,
      expectedCounts: { screw: { min: 4, max: 4 } },
    }),
  };
}

/**
 * End-to-end export (YOLOv10/YOLO26, or `nms=True`): output0 [1, N, 6] rows of
 * x1, y1, x2, y2, score, class, already NMS-ed (here: A' is simply absent), zero rows after.
 */
export function end2endDetector(opts: DetectorOptions = {}): { model: OnnxModelBuilder; manifest: ManifestDraft } {
  const dtype = opts.dtype ?? 'float32';
  const b = new OnnxModelBuilder({ opset: 13, producerName: 'pytorch', producerVersion: '2.5.1' });
  const x = imageInput(b, 'images', dtype, [1, 3, 64, 64]);
  const kept = ANCHORS.filter((_, i) => i !== 3 && i < 6);
  const rows = 10;
  const terms: Term[] = new Array(rows * 6).fill(c(0));
  kept.forEach(([x1, y1, x2, y2, cls, score], i) => {
    [x1, y1, x2, y2].forEach((v, k) => (terms[i * 6 + k] = c(v)));
    terms[i * 6 + 4] = score;
    terms[i * 6 + 5] = c(cls);
  });
  colourHead(b, x, terms, 'head', [1, rows, 6]);
  finish(b, 'head', 'output0', [1, rows, 6], opts.halfOutput ?? false);
  ultralyticsMeta(b, true);
  return {
    model: b,
    manifest: detectorManifest('e2e-fixture', dtype, {
      format: 'end2end',
      output: 'output0',
      confidence: 0.25,
      expectedCounts: { screw: { min: 4, max: 4 } },
    }),
  };
}
