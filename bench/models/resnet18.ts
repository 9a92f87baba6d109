/**
 * A ResNet-18-shaped classifier (torchvision topology, random seeded weights): conv 7×7/2,
 * max-pool 3×3/2, four stages of two basic blocks (64-128-256-512 channels, residual adds,
 * 1×1/2 projection where the shape changes), global average pool, FC 1000, softmax.
 * About 11.7 M parameters and 1.8 GMAC at 224×224, like the real one.
 */
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import { GraphWriter } from './graph-writer.js';

export const RESNET18_INPUT = 'input';
export const RESNET18_OUTPUT = 'probs';

export interface BuiltModel {
  bytes: Uint8Array;
  params: number;
}

function basicBlock(g: GraphWriter, x: string, cIn: number, cOut: number, stride: number): string {
  const y1 = g.conv(x, cIn, cOut, 3, { stride, act: 'relu' });
  // The branch's last conv starts small (as zero-init-residual training does), so the sum of
  // eight blocks does not grow the activations by orders of magnitude.
  const y2 = g.conv(y1, cOut, cOut, 3, { gain: 0.5 });
  const shortcut = stride !== 1 || cIn !== cOut ? g.conv(x, cIn, cOut, 1, { stride }) : x;
  return g.op('Relu', [g.op('Add', [y2, shortcut])]);
}

/**
 * Builds the model at `size`×`size` (default 224) with `classes` outputs (default 1000).
 * `width` scales every channel count (default 1; the smoke test uses a narrow copy).
 */
export function buildResnet18(opts: { size?: number; classes?: number; width?: number; seed?: number } = {}): BuiltModel {
  const size = opts.size ?? 224;
  const classes = opts.classes ?? 1000;
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'resnet18', producerName: 'osprey-bench' });
  const g = new GraphWriter(b, opts.seed ?? 18);
  b.input(RESNET18_INPUT, 'float32', [1, 3, size, size]);

  const ch = (n: number) => Math.max(1, Math.round(n * (opts.width ?? 1)));
  let x = g.conv(RESNET18_INPUT, 3, ch(64), 7, { stride: 2, act: 'relu' });
  x = g.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] });
  let c = ch(64);
  for (const [i, width] of [64, 128, 256, 512].map(ch).entries()) {
    x = basicBlock(g, x, c, width, i === 0 ? 1 : 2);
    x = basicBlock(g, x, width, width, 1);
    c = width;
  }
  x = g.op('GlobalAveragePool', [x]);
  x = g.op('Flatten', [x], { axis: 1 });
  const w = g.weight('fc_w', [classes, c], g.random(classes * c, Math.sqrt(1 / c)));
  const bias = g.weight('fc_b', [classes], g.random(classes, 0.01));
  const logits = g.op('Gemm', [x, w, bias], { transB: 1 });
  b.node('Softmax', [logits], [RESNET18_OUTPUT], { axis: 1 });
  b.output(RESNET18_OUTPUT, 'float32', [1, classes]);
  return { bytes: b.toBytes(), params: g.params };
}
