/**
 * anomalib-style fixtures over 4×4 RGB inputs (stretch, no resampling at 4×4): the anomaly map
 * is the red channel (0..1), the image score its maximum.
 *
 * - v2 (anomalib ≥ 2, post-processor exported in the graph): pred_score, pred_label, anomaly_map,
 *   pred_mask, already normalised — 0.5 is the threshold, Osprey must not touch the score.
 * - raw (anomalib v1 style): pred_score and anomaly_map scaled ×10, to be normalised with the
 *   min/max/threshold from the manifest.
 */
import { OnnxModelBuilder } from '../../models/onnx-builder.js';
import type { ManifestDraft } from '../../models/package-writer.js';
import { imageInput, inputScale, type InputDtype } from './fixtures.js';

export interface AnomalibOptions {
  dtype?: InputDtype;
  /** v1-style raw scores (×10) without pred_label/pred_mask. */
  raw?: boolean;
}

/** An anomalib-like model: map = red channel (×10 when raw), score = max of the map. */
export function anomalibModel(opts: AnomalibOptions = {}): { model: OnnxModelBuilder; manifest: ManifestDraft } {
  const dtype = opts.dtype ?? 'float32';
  const b = new OnnxModelBuilder({ opset: 13, producerName: 'pytorch' });
  const x = imageInput(b, 'input', dtype, [1, 3, 4, 4]);
  b.initializer('starts', 'int64', [1], [0])
    .initializer('ends', 'int64', [1], [1])
    .initializer('axes', 'int64', [1], [1])
    .initializer('one', 'int64', [1], [1])
    .node('Slice', [x, 'starts', 'ends', 'axes'], [opts.raw ? 'red' : 'anomaly_map']);
  if (opts.raw) {
    b.initializer('ten', 'float32', [], [10]).node('Mul', ['red', 'ten'], ['anomaly_map']);
  }
  b.node('ReduceMax', ['anomaly_map'], ['max'], { keepdims: 0 })
    .node('Reshape', ['max', 'one'], ['pred_score'])
    .output('pred_score', 'float32', [1])
    .output('anomaly_map', 'float32', [1, 1, 4, 4]);
  if (!opts.raw) {
    b.initializer('half', 'float32', [], [0.5])
      .node('Greater', ['pred_score', 'half'], ['pred_label'])
      .node('Greater', ['anomaly_map', 'half'], ['pred_mask'])
      .output('pred_label', 'bool', [1])
      .output('pred_mask', 'bool', [1, 1, 4, 4]);
  }
  const manifest: ManifestDraft = {
    schemaVersion: 1,
    name: opts.raw ? 'anomalib-raw-fixture' : 'anomalib-v2-fixture',
    version: '1.0.0',
    task: 'anomaly',
    input: { name: 'input', layout: 'nchw', width: 4, height: 4, dtype, color: 'rgb', resize: 'stretch', ...inputScale(dtype) },
    outputs: {
      anomaly: opts.raw
        ? { format: 'raw', score: 'pred_score', map: 'anomaly_map', normalization: { min: 0, max: 10, threshold: 6 } }
        : { format: 'anomalib-v2', score: 'pred_score', map: 'anomaly_map' },
    },
    labels: ['good', 'anomaly'],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  };
  return { model: b, manifest };
}

/** A 4×4 RGB image (interleaved pixels) whose red channel is `red` everywhere except `spot` at (1, 2). */
export function redSpotPixels(red: number, spot = red): number[] {
  const px: number[] = [];
  for (let i = 0; i < 16; i++) px.push(i === 2 * 4 + 1 ? spot : red, 40, 90);
  return px;
}
