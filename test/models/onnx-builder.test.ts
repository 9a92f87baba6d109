import assert from 'node:assert/strict';
import { test } from 'node:test';
import onnxProto from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { float32ToFloat16 } from '../../models/float16.js';
import { OnnxModelBuilder } from '../../models/onnx-builder.js';

const { onnx } = onnxProto;

test('builds a model onnxruntime runs: float attributes, int64 and float16 initializers', async () => {
  const b = new OnnxModelBuilder({ opset: 13, producerName: 'osprey-test' });
  b.input('x', 'float32', ['batch', 2])
    .initializer('w', 'float32', [3, 2], [1, 0, 0, 1, 1, 1])
    .initializer('bias16', 'float16', [3], [0.5, -1, 2])
    .initializer('shape', 'int64', [2], [-1, 3])
    .node('Cast', ['bias16'], ['bias'], { to: 1 })
    // alpha is a float attribute with an integral value: must be written as FLOAT, not INT.
    .node('Gemm', ['x', 'w', 'bias'], ['g'], { alpha: { float: 2 }, transB: 1 })
    .node('Reshape', ['g', 'shape'], ['y'])
    .output('y', 'float32', ['batch', 3])
    .meta('names', "{0: 'a', 1: 'b', 2: 'c'}")
    .meta('stride', '32');
  const bytes = b.toBytes();

  const decoded = onnx.ModelProto.decode(bytes);
  assert.equal(decoded.opsetImport[0].version.toString(), '13');
  assert.equal(decoded.producerName, 'osprey-test');
  assert.deepEqual(
    decoded.metadataProps.map((p) => [p.key, p.value]),
    [['names', "{0: 'a', 1: 'b', 2: 'c'}"], ['stride', '32']],
  );
  const gemm = decoded.graph!.node!.find((n) => n.opType === 'Gemm')!;
  assert.equal(gemm.attribute!.find((a) => a.name === 'alpha')!.type, onnx.AttributeProto.AttributeType.FLOAT);

  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array([3, 4, 1, 1]), [2, 2]) });
    // y = 2·(x·wᵀ) + bias: [3,4] → 2·[3, 4, 7] + [0.5, −1, 2]
    assert.deepEqual([...(out.y.data as Float32Array)], [6.5, 7, 16, 2.5, 1, 6]);
  } finally {
    await session.release();
  }
});

test('float16 graph inputs and outputs', async () => {
  const b = new OnnxModelBuilder();
  b.input('h', 'float16', [2]).initializer('two', 'float16', [1], [2]).node('Mul', ['h', 'two'], ['o']).output('o', 'float16', [2]);
  const session = await ort.InferenceSession.create(b.toBytes());
  try {
    const h = new Uint16Array([float32ToFloat16(1.5), float32ToFloat16(-0.25)]);
    const out = await session.run({ h: new ort.Tensor('float16', h, [2]) });
    assert.deepEqual([...(out.o.data as Uint16Array)], [float32ToFloat16(3), float32ToFloat16(-0.5)]);
  } finally {
    await session.release();
  }
});

test('mistakes are caught while building', () => {
  const b = new OnnxModelBuilder();
  b.input('x', 'float32', [1]);
  assert.throws(() => b.initializer('x', 'float32', [1], [0]), /defined twice/);
  assert.throws(() => b.initializer('w', 'float32', [2, 2], [1, 2, 3]), /3 values for dims \[2,2\] \(4 expected\)/);
});
