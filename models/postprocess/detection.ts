/**
 * Detection post-processing: decoding the Ultralytics YOLOv8/11 raw head and the end-to-end
 * `[1, N, 6]` form, class-wise NMS and the verdict rules. Boxes go back to the original image
 * through geometry.ts (`boxToOriginal`), which knows every resize mode.
 */
import type { Detection } from '../../protocol/messages.js';

/** A candidate box in some pixel space, before labels are attached. */
export interface RawBox {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  classId: number;
}

export function iou(a: RawBox, b: RawBox): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  const union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
  return union <= 0 ? 0 : inter / union;
}

/**
 * Greedy NMS per class (as Ultralytics' default, agnostic=false): highest score first, drop
 * boxes of the same class overlapping a kept one by more than `iouThreshold`.
 */
export function nmsClasswise(boxes: RawBox[], iouThreshold: number, maxDetections = 300): RawBox[] {
  const sorted = [...boxes].sort((a, b) => b.score - a.score);
  const kept: RawBox[] = [];
  const suppressed = new Uint8Array(sorted.length);
  for (let i = 0; i < sorted.length && kept.length < maxDetections; i++) {
    if (suppressed[i]) continue;
    const a = sorted[i]!;
    kept.push(a);
    for (let j = i + 1; j < sorted.length; j++) {
      if (!suppressed[j] && sorted[j]!.classId === a.classId && iou(a, sorted[j]!) > iouThreshold) suppressed[j] = 1;
    }
  }
  return kept;
}

/**
 * Decodes the Ultralytics raw head `[1, 4+nc, N]`: rows cx, cy, w, h (input pixels), then one
 * score per class (no objectness). Keeps, per anchor, the best class at or above `confidence`.
 */
export function decodeYolov8(data: ArrayLike<number>, dims: readonly number[], confidence: number): RawBox[] {
  if (dims.length !== 3 || dims[0] !== 1 || dims[1]! < 5) {
    throw new RangeError(`expected a [1, 4+classes, anchors] output, got [${dims.join(', ')}]`);
  }
  const channels = dims[1]!;
  const n = dims[2]!;
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
    const cx = Number(data[i]);
    const cy = Number(data[n + i]);
    const w = Number(data[2 * n + i]);
    const h = Number(data[3 * n + i]);
    out.push({ x1: cx - w / 2, y1: cy - h / 2, x2: cx + w / 2, y2: cy + h / 2, score: best, classId: cls });
  }
  return out;
}

/** Decodes the end-to-end form `[1, N, 6]`: x1, y1, x2, y2, score, class (NMS already applied). */
export function decodeEnd2End(data: ArrayLike<number>, dims: readonly number[], confidence: number): RawBox[] {
  if (dims.length !== 3 || dims[0] !== 1 || dims[2] !== 6) {
    throw new RangeError(`expected a [1, N, 6] output, got [${dims.join(', ')}]`);
  }
  const out: RawBox[] = [];
  for (let i = 0; i < dims[1]!; i++) {
    const o = i * 6;
    const score = Number(data[o + 4]);
    if (score < confidence) continue;
    out.push({ x1: Number(data[o]), y1: Number(data[o + 1]), x2: Number(data[o + 2]), y2: Number(data[o + 3]), score, classId: Math.round(Number(data[o + 5])) });
  }
  return out;
}

/** Attaches labels and rounds coordinates to 0.01 px for stable JSON. */
export function labelBoxes(boxes: RawBox[], labels: readonly string[]): Detection[] {
  const r = (v: number) => Math.round(v * 100) / 100;
  return boxes.map((b) => ({
    label: labels[b.classId] ?? `class_${b.classId}`,
    score: Math.round(b.score * 10000) / 10000,
    box: [r(b.x1), r(b.y1), r(b.x2), r(b.y2)],
  }));
}

export interface ExpectedCount {
  label: string;
  /** Exactly this many (or use min/max). */
  count?: number;
  min?: number;
  max?: number;
  /** Detections below this confidence are not counted (default: the detection confidence). */
  minScore?: number;
}

export interface DetectionRules {
  defectLabels: readonly string[];
  /** Confidence above which a defect-label detection makes the part defective. */
  threshold: (label: string) => number;
  expected?: readonly ExpectedCount[];
}

/**
 * The verdict of a detection model: defect when any defect-label detection reaches its
 * threshold, or when an expected-count rule fails (a missing screw). The label names the cause.
 */
export function detectionVerdict(
  detections: readonly Detection[],
  rules: DetectionRules,
): { verdict: 'ok' | 'defect'; label: string; score: number; threshold: number } {
  let worst: { label: string; score: number; threshold: number } | undefined;
  for (const d of detections) {
    if (!rules.defectLabels.includes(d.label)) continue;
    const t = rules.threshold(d.label);
    if (d.score >= t && (!worst || d.score > worst.score)) worst = { label: d.label, score: d.score, threshold: t };
  }
  if (worst) return { verdict: 'defect', ...worst };
  for (const rule of rules.expected ?? []) {
    const minScore = rule.minScore ?? 0;
    const n = detections.filter((d) => d.label === rule.label && d.score >= minScore).length;
    const min = rule.count ?? rule.min ?? 0;
    const max = rule.count ?? rule.max ?? Infinity;
    if (n < min) return { verdict: 'defect', label: `missing:${rule.label}`, score: n, threshold: min };
    if (n > max) return { verdict: 'defect', label: `extra:${rule.label}`, score: n, threshold: max };
  }
  const best = detections.reduce<Detection | undefined>((a, d) => (!a || d.score > a.score ? d : a), undefined);
  return { verdict: 'ok', label: 'ok', score: best && rules.defectLabels.includes(best.label) ? best.score : 0, threshold: rules.threshold('') };
}
