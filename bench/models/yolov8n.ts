/**
 * A YOLOv8n-shaped detector (Ultralytics topology at width 0.25 / depth 0.33, random seeded
 * weights): a CSP backbone of Conv+SiLU and C2f blocks to strides 8/16/32, SPPF, the PAN neck,
 * and the decoupled Detect head with DFL decoding, anchors and strides in the graph, so the
 * output is the raw `[1, 84, 8400]` (cx, cy, w, h, 80 class scores) an Ultralytics export gives.
 * About 3.2 M parameters and 4.4 GMAC (8.7 GFLOPs) at 640×640, like the real one.
 *
 * The class convs start at Ultralytics' prior (bias log(5 / nc / (640 / stride)²)) with small
 * weights, so a frame yields a realistic handful of candidates rather than 8400 boxes for NMS.
 */
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { GraphWriter } from './graph-writer.js';
import type { BuiltModel } from './resnet18.js';

export const YOLOV8N_INPUT = 'images';
export const YOLOV8N_OUTPUT = 'output0';
const REG_MAX = 16;

function c2f(g: GraphWriter, x: string, c1: number, c2: number, n: number, shortcut: boolean): string {
  const c = c2 / 2;
  const y = g.conv(x, c1, 2 * c, 1, { act: 'silu' });
  const parts = g.multi('Split', [y, g.ints('split', [c, c])], 2, { axis: 1 });
  let cur = parts[1]!;
  for (let i = 0; i < n; i++) {
    const h = g.conv(cur, c, c, 3, { act: 'silu' });
    const h2 = g.conv(h, c, c, 3, { act: 'silu', gain: shortcut ? 0.5 : 1 });
    cur = shortcut ? g.op('Add', [cur, h2]) : h2;
    parts.push(cur);
  }
  return g.conv(g.op('Concat', parts, { axis: 1 }), (2 + n) * c, c2, 1, { act: 'silu' });
}

function sppf(g: GraphWriter, x: string, c1: number, c2: number): string {
  const c = c1 / 2;
  const y0 = g.conv(x, c1, c, 1, { act: 'silu' });
  const pool = (v: string) => g.op('MaxPool', [v], { kernel_shape: [5, 5], strides: [1, 1], pads: [2, 2, 2, 2] });
  const y1 = pool(y0);
  const y2 = pool(y1);
  const y3 = pool(y2);
  return g.conv(g.op('Concat', [y0, y1, y2, y3], { axis: 1 }), 4 * c, c2, 1, { act: 'silu' });
}

function upsample(g: GraphWriter, x: string): string {
  const scales = g.weight('scales', [4], [1, 1, 2, 2]);
  g.params -= 4; // a constant, not a parameter
  return g.op('Resize', [x, '', scales], { mode: 'nearest' });
}

/**
 * Builds the model at `size`×`size` (default 640) for `classes` classes (default 80). `width`
 * scales the backbone and neck channels (default 1, i.e. YOLOv8n's own; the smoke test uses less).
 */
export function buildYolov8n(opts: { size?: number; classes?: number; width?: number; seed?: number } = {}): BuiltModel {
  const size = opts.size ?? 640;
  const nc = opts.classes ?? 80;
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'yolov8n', producerName: 'osprey-bench' });
  const g = new GraphWriter(b, opts.seed ?? 8);
  b.input(YOLOV8N_INPUT, 'float32', [1, 3, size, size]);

  const ch = (n: number) => Math.max(2, 2 * Math.round((n * (opts.width ?? 1)) / 2));
  // Backbone.
  let x = g.conv(YOLOV8N_INPUT, 3, ch(16), 3, { stride: 2, act: 'silu' });
  x = g.conv(x, ch(16), ch(32), 3, { stride: 2, act: 'silu' });
  x = c2f(g, x, ch(32), ch(32), 1, true);
  x = g.conv(x, ch(32), ch(64), 3, { stride: 2, act: 'silu' });
  const p3 = c2f(g, x, ch(64), ch(64), 2, true);
  x = g.conv(p3, ch(64), ch(128), 3, { stride: 2, act: 'silu' });
  const p4 = c2f(g, x, ch(128), ch(128), 2, true);
  x = g.conv(p4, ch(128), ch(256), 3, { stride: 2, act: 'silu' });
  x = c2f(g, x, ch(256), ch(256), 1, true);
  const p5 = sppf(g, x, ch(256), ch(256));

  // Neck (PAN).
  const h12 = c2f(g, g.op('Concat', [upsample(g, p5), p4], { axis: 1 }), ch(256) + ch(128), ch(128), 1, false);
  const out3 = c2f(g, g.op('Concat', [upsample(g, h12), p3], { axis: 1 }), ch(128) + ch(64), ch(64), 1, false);
  const d16 = g.conv(out3, ch(64), ch(64), 3, { stride: 2, act: 'silu' });
  const out4 = c2f(g, g.op('Concat', [d16, h12], { axis: 1 }), ch(64) + ch(128), ch(128), 1, false);
  const d19 = g.conv(out4, ch(128), ch(128), 3, { stride: 2, act: 'silu' });
  const out5 = c2f(g, g.op('Concat', [d19, p5], { axis: 1 }), ch(256) + ch(128), ch(256), 1, false);

  // Detect head: per level a box branch (4·reg_max DFL bins) and a class branch.
  const c2 = Math.max(16, ch(64) / 4, 4 * REG_MAX);
  const c3 = Math.max(ch(64), Math.min(nc, 100));
  const levels: [string, number, number][] = [
    [out3, ch(64), 8],
    [out4, ch(128), 16],
    [out5, ch(256), 32],
  ];
  const flat: string[] = [];
  const anchorX: number[] = [];
  const anchorY: number[] = [];
  const strideRow: number[] = [];
  for (const [feat, ch, stride] of levels) {
    let box = g.conv(feat, ch, c2, 3, { act: 'silu' });
    box = g.conv(box, c2, c2, 3, { act: 'silu' });
    box = g.conv(box, c2, 4 * REG_MAX, 1, { bias: 1 });
    let cls = g.conv(feat, ch, c3, 3, { act: 'silu' });
    cls = g.conv(cls, c3, c3, 3, { act: 'silu' });
    cls = g.conv(cls, c3, nc, 1, { gain: 0.02, bias: Math.log(5 / nc / (size / stride) ** 2) });
    const cat = g.op('Concat', [box, cls], { axis: 1 });
    flat.push(g.op('Reshape', [cat, g.ints('shape', [1, 4 * REG_MAX + nc, -1])]));
    const side = size / stride;
    for (let y = 0; y < side; y++) {
      for (let xx = 0; xx < side; xx++) {
        anchorX.push(xx + 0.5);
        anchorY.push(y + 0.5);
        strideRow.push(stride);
      }
    }
  }
  const anchors = anchorX.length;
  const all = g.op('Concat', flat, { axis: 2 });
  const [rawBox, rawCls] = g.multi('Split', [all, g.ints('split', [4 * REG_MAX, nc])], 2, { axis: 1 });

  // DFL: softmax over the 16 bins of each side, expectation with weights 0..15.
  const bins = g.op('Reshape', [rawBox!, g.ints('shape', [1, 4, REG_MAX, anchors])]);
  const probs = g.op('Softmax', [bins], { axis: 2 });
  const proj = g.weight('dfl', [1, 1, REG_MAX, 1], Array.from({ length: REG_MAX }, (_, i) => i));
  g.params -= REG_MAX;
  const dist = g.op('ReduceSum', [g.op('Mul', [probs, proj]), g.ints('axes', [2])], { keepdims: 0 });

  // dist2bbox (xywh) in grid units, then × stride into input pixels.
  const anchorPts = g.weight('anchors', [1, 2, anchors], [...anchorX, ...anchorY]);
  const strides = g.weight('strides', [1, 1, anchors], strideRow);
  g.params -= 3 * anchors;
  const [lt, rb] = g.multi('Split', [dist, g.ints('split', [2, 2])], 2, { axis: 1 });
  const x1y1 = g.op('Sub', [anchorPts, lt!]);
  const x2y2 = g.op('Add', [anchorPts, rb!]);
  const centre = g.op('Mul', [g.op('Add', [x1y1, x2y2]), g.weight('half', [1], [0.5])]);
  g.params -= 1;
  const wh = g.op('Sub', [x2y2, x1y1]);
  const dbox = g.op('Mul', [g.op('Concat', [centre, wh], { axis: 1 }), strides]);
  b.node('Concat', [dbox, g.op('Sigmoid', [rawCls!])], [YOLOV8N_OUTPUT], { axis: 1 });
  b.output(YOLOV8N_OUTPUT, 'float32', [1, 4 + nc, anchors]);

  // What an Ultralytics export writes into metadata_props.
  const names = Array.from({ length: nc }, (_, i) => `${i}: 'class-${i}'`).join(', ');
  b.meta('description', 'Osprey benchmark YOLOv8n-shaped detector (random weights)')
    .meta('author', 'Osprey benchmarks')
    .meta('version', '8.3.0')
    .meta('license', 'Apache-2.0')
    .meta('stride', '32')
    .meta('task', 'detect')
    .meta('batch', '1')
    .meta('imgsz', `[${size}, ${size}]`)
    .meta('names', `{${names}}`);
  return { bytes: b.toBytes(), params: g.params };
}
