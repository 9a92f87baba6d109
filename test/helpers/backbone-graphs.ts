/**
 * ImageNet classifiers of the shapes plants download, built in code with seeded random weights
 * (the bench's GraphWriter; no weights downloaded or stored): what the trainer's backbone wiring
 * is tested on (test/models/train-backbones.test.ts).
 *
 * - ONNX model zoo SqueezeNet 1.1 (squeezenet1.1-7.onnx): fp32, opset 7, input `data`
 *   [1,3,224,224], fire modules, Dropout, conv10 (classes) + ReLU, AveragePool 13, Flatten.
 * - ONNX model zoo / torchvision MobileNetV2 (mobilenetv2-12.onnx, -7): fp32, input `input`
 *   [batch_size,3,224,224], Conv + Clip(0,6) (ReLU6; attributes at opset 7, inputs at 12),
 *   depthwise convs, inverted residual Adds, conv 1280, GlobalAveragePool, Shape/Gather/Reshape
 *   flatten (as torch.onnx.export writes it), Gemm.
 *
 * `width` scales channel counts (tests use narrow copies so a fit takes seconds); `expected`
 * gives the tensor names the trainer's automatic taps must find.
 */
import { GraphWriter } from '../../bench/models/graph-writer.js';
import { OnnxModelBuilder } from '../../models/onnx-builder.js';

export interface BuiltBackbone {
  bytes: Uint8Array;
  inputName: string;
  /** What automatic taps must pick: the anomaly recipe's three and the classifier's one. */
  expected: { anomaly: string[]; classify: string };
}

const channels = (n: number, width: number) => Math.max(4, Math.round(n * width));

/** The zoo's SqueezeNet 1.1 layout (torchvision/MXNet v1.1: 3×3/2 stem, pools after fire3 and fire5). */
export function zooSqueezenet11(opts: { width?: number; classes?: number; seed?: number } = {}): BuiltBackbone {
  const width = opts.width ?? 1;
  const classes = opts.classes ?? 1000;
  const b = new OnnxModelBuilder({ opset: 7, irVersion: 3, graphName: 'squeezenet1.1', producerName: 'osprey-test' });
  const g = new GraphWriter(b, opts.seed ?? 11);
  b.input('data', 'float32', [1, 3, 224, 224]);
  const ch = (n: number) => channels(n, width);
  let x = g.op('Relu', [conv(g, 'data', 3, ch(64), 3, 2, 0)]);
  x = g.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2] });
  let c = ch(64);
  const fires: string[] = [];
  const fire = (squeeze: number, expand: number) => {
    const s = g.op('Relu', [conv(g, x, c, ch(squeeze), 1, 1, 0)]);
    const e1 = g.op('Relu', [conv(g, s, ch(squeeze), ch(expand), 1, 1, 0)]);
    const e3 = g.op('Relu', [conv(g, s, ch(squeeze), ch(expand), 3, 1, 1)]);
    x = g.op('Concat', [e1, e3], { axis: 1 });
    c = 2 * ch(expand);
    fires.push(x);
  };
  fire(16, 64);
  fire(16, 64);
  x = g.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2] });
  fire(32, 128);
  fire(32, 128);
  x = g.op('MaxPool', [x], { kernel_shape: [3, 3], strides: [2, 2] });
  fire(48, 192);
  fire(48, 192);
  fire(64, 256);
  fire(64, 256);
  const [dropped] = g.multi('Dropout', [x], 1, { ratio: 0.5 });
  x = g.op('Relu', [conv(g, dropped!, c, classes, 1, 1, 0)]);
  x = g.op('AveragePool', [x], { kernel_shape: [13, 13], strides: [13, 13] });
  b.node('Flatten', [x], ['squeezenet0_flatten0_reshape0'], { axis: 1 });
  b.output('squeezenet0_flatten0_reshape0', 'float32', [1, classes]);
  // fires: fire2..fire9 → fire3, fire5, fire7 (halfway through the last stage) and fire9.
  return { bytes: b.toBytes(), inputName: 'data', expected: { anomaly: [fires[1]!, fires[3]!, fires[5]!], classify: fires[7]! } };
}

/** A conv with explicit padding (the zoo's SqueezeNet has unpadded 3×3/2 stem and pools). */
function conv(g: GraphWriter, x: string, cIn: number, cOut: number, k: number, stride: number, pad: number, group = 1): string {
  const w = g.weight('w', [cOut, cIn / group, k, k], g.random((cOut * cIn * k * k) / group, Math.sqrt(2 / ((cIn / group) * k * k))));
  const bias = g.weight('b', [cOut], g.random(cOut, 0.01));
  const y = g.name('conv');
  g.b.node('Conv', [x, w, bias], [y], { kernel_shape: [k, k], strides: [stride, stride], pads: [pad, pad, pad, pad], group });
  return y;
}

/** torchvision's MobileNetV2 (inverted residual settings t, c, n, s), exported as the zoo has it. */
export function zooMobilenetV2(opts: { width?: number; classes?: number; seed?: number; opset?: 7 | 12; metadata?: Record<string, string> } = {}): BuiltBackbone {
  const width = opts.width ?? 1;
  const classes = opts.classes ?? 1000;
  const opset = opts.opset ?? 12;
  const b = new OnnxModelBuilder({ opset, graphName: 'mobilenetv2', producerName: 'osprey-test' });
  const g = new GraphWriter(b, opts.seed ?? 2);
  for (const [k, v] of Object.entries(opts.metadata ?? {})) b.meta(k, v);
  b.input('input', 'float32', ['batch_size', 3, 224, 224]);
  const six = opset >= 11 ? [g.weight('clip_min', [], [0]), g.weight('clip_max', [], [6])] : [];
  const relu6 = (y: string) => (opset >= 11 ? g.op('Clip', [y, ...six]) : g.op('Clip', [y], { min: { float: 0 }, max: { float: 6 } }));
  const ch = (n: number) => channels(n, width);
  let x = relu6(conv(g, 'input', 3, ch(32), 3, 2, 1));
  let c = ch(32);
  let stride = 2;
  // The last tensor that every path goes through, per stride (what automatic taps must find).
  const ends = new Map<number, string>([[stride, x]]);
  for (const [t, cOut, n, s] of [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]] as const) {
    for (let i = 0; i < n; i++) {
      const st = i === 0 ? s : 1;
      const hidden = c * t;
      const residual = st === 1 && c === ch(cOut);
      let y = x;
      if (t !== 1) {
        y = relu6(conv(g, x, c, hidden, 1, 1, 0));
        if (!residual) ends.set(stride, y);
      }
      y = relu6(conv(g, y, hidden, hidden, 3, st, 1, hidden));
      stride *= st;
      y = conv(g, y, hidden, ch(cOut), 1, 1, 0);
      x = residual ? g.op('Add', [x, y]) : y;
      c = ch(cOut);
      ends.set(stride, x);
    }
  }
  x = relu6(conv(g, x, c, ch(1280), 1, 1, 0));
  const features = x;
  x = g.op('GlobalAveragePool', [x]);
  // torch.onnx.export's x.reshape(x.shape[0], -1) with a dynamic batch.
  const shape = g.op('Shape', [x]);
  const zero = g.name('zero');
  b.initializer(zero, 'int64', [], [0]);
  const batch = g.op('Gather', [shape, zero], { axis: 0 });
  const minusOne = g.ints('minus_one', [-1]);
  const batch1 = g.op('Unsqueeze', [batch], { axes: [0] });
  const target = g.op('Concat', [batch1, minusOne], { axis: 0 });
  x = g.op('Reshape', [x, target]);
  const w = g.weight('fc_w', [classes, ch(1280)], g.random(classes * ch(1280), Math.sqrt(1 / ch(1280))));
  const bias = g.weight('fc_b', [classes], g.random(classes, 0.01));
  b.node('Gemm', [x, w, bias], ['output'], { transB: 1 });
  b.output('output', 'float32', ['batch_size', classes]);
  return { bytes: b.toBytes(), inputName: 'input', expected: { anomaly: [ends.get(4)!, ends.get(8)!, ends.get(16)!], classify: features } };
}
