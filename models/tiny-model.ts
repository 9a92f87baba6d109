/**
 * The smallest real anomaly model package content, for tests and benchmarks that need a package
 * the registry accepts (it runs every uploaded model) without caring what it computes.
 */
import { OnnxModelBuilder } from './onnx-builder.js';

/**
 * A real anomaly model: image float32[1,1,S,S] → score float32[1] = max(image) + `offset`.
 * `padBytes` adds an unused initializer of about that many bytes (a larger model); `offset`
 * makes the bytes of two versions differ.
 */
export function tinyAnomalyModel(opts: { size?: number; offset?: number; padBytes?: number } = {}): Uint8Array {
  const size = opts.size ?? 8;
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'tiny_anomaly' });
  b.input('image', 'float32', [1, 1, size, size])
    .initializer('offset', 'float32', [], [opts.offset ?? 0])
    .initializer('score_shape', 'int64', [1], [1]);
  if (opts.padBytes) b.initializer('pad', 'float32', [Math.ceil(opts.padBytes / 4)], new Float32Array(Math.ceil(opts.padBytes / 4)));
  b.node('ReduceMax', ['image'], ['peak'], { keepdims: 0 })
    .node('Add', ['peak', 'offset'], ['raw'])
    .node('Reshape', ['raw', 'score_shape'], ['score'])
    .output('score', 'float32', [1]);
  return b.toBytes();
}
