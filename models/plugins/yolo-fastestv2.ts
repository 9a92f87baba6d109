/**
 * Example post-processing plug-in: the Yolo-FastestV2 decoder (COCO, 352×352, output [605, 95]).
 * Written from the layout in ../shared/data/README.md. A plug-in is copied into the model package
 * and loaded for that package only, so this file imports nothing.
 *
 * Contract (docs/models.md "Plug-in post-processing"): `default(outputs, context)` returns
 * `{ boxes }` in model-input pixels; Osprey maps them back to the original image and applies the
 * verdict rules. Packed with:
 *
 *   osprey model pack model.onnx --task detection --labels coco.names --color bgr --resize stretch \
 *     --postprocess dist/models/plugins/yolo-fastestv2.js --confidence 0.3 --iou 0.4 --agnostic-nms --out DIR
 */

interface OutputTensor {
  data: ArrayLike<number>;
  dims: readonly number[];
}

interface PluginContext {
  inputWidth: number;
  inputHeight: number;
  labels: readonly string[];
  /** Minimum score (class × objectness). */
  confidence: number;
  /** NMS IoU threshold. */
  iou: number;
}

interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  score: number;
  classId: number;
}

// Anchors (w, h) in input pixels, per stride: three per grid cell.
const ANCHORS: Record<number, [number, number][]> = {
  16: [[12.64, 19.39], [37.88, 51.48], [55.71, 138.31]],
  32: [[126.91, 78.23], [131.57, 214.55], [279.92, 258.87]],
};
const STRIDES = [16, 32];
const NUM_ANCHORS = 3;

function overlap(a: Box, b: Box): number {
  const w = Math.min(a.x2, b.x2) - Math.max(a.x1, b.x1);
  const h = Math.min(a.y2, b.y2) - Math.max(a.y1, b.y1);
  if (w <= 0 || h <= 0) return 0;
  const inter = w * h;
  return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

export default function decode(outputs: Record<string, OutputTensor>, context: PluginContext): { boxes: Box[] } {
  const out = Object.values(outputs)[0];
  if (!out) throw new Error('yolo-fastestv2: the model produced no output');
  const [rows, cols] = out.dims;
  const classes = (cols ?? 0) - NUM_ANCHORS * 5;
  if (out.dims.length !== 2 || classes < 1) throw new Error(`yolo-fastestv2: expected a [rows, 15+classes] output, got [${out.dims.join(', ')}]`);
  const expectedRows = STRIDES.reduce((n, s) => n + (context.inputHeight / s) * (context.inputWidth / s), 0);
  if (rows !== expectedRows) throw new Error(`yolo-fastestv2: expected ${expectedRows} rows for ${context.inputWidth}x${context.inputHeight}, got ${rows}`);

  const candidates: Box[] = [];
  let row = 0;
  for (const stride of STRIDES) {
    const gw = context.inputWidth / stride;
    const gh = context.inputHeight / stride;
    for (let gy = 0; gy < gh; gy++) {
      for (let gx = 0; gx < gw; gx++, row++) {
        const base = row * cols!;
        // The class scores are shared by the three anchors of a cell.
        let best = -Infinity;
        let classId = 0;
        for (let c = 0; c < classes; c++) {
          const s = out.data[base + NUM_ANCHORS * 5 + c]!;
          if (s > best) {
            best = s;
            classId = c;
          }
        }
        for (let j = 0; j < NUM_ANCHORS; j++) {
          const score = best * out.data[base + NUM_ANCHORS * 4 + j]!;
          if (score < context.confidence) continue;
          const x = out.data[base + j * 4]!;
          const y = out.data[base + j * 4 + 1]!;
          const w = out.data[base + j * 4 + 2]!;
          const h = out.data[base + j * 4 + 3]!;
          const [aw, ah] = ANCHORS[stride]![j]!;
          const cx = (2 * x - 0.5 + gx) * stride;
          const cy = (2 * y - 0.5 + gy) * stride;
          const bw = (2 * w) ** 2 * aw;
          const bh = (2 * h) ** 2 * ah;
          candidates.push({ x1: cx - bw / 2, y1: cy - bh / 2, x2: cx + bw / 2, y2: cy + bh / 2, score, classId });
        }
      }
    }
  }
  // Class-agnostic greedy NMS, as the reference implementation does.
  candidates.sort((a, b) => b.score - a.score);
  const boxes: Box[] = [];
  for (const c of candidates) {
    if (boxes.every((k) => overlap(k, c) <= context.iou)) boxes.push(c);
  }
  return { boxes };
}
