/**
 * Model packages for simulated fleets: a real classifier (ONNX, run by onnxruntime like any
 * other) whose size is chosen, so a rollout can move a package as large as a production one while
 * each frame costs well under a millisecond of inference.
 *
 *   image [1,3,S,S] (RGB, 0..1) → Flatten → Gemm(W1, b1) → Relu → Gemm(W2, b2) → Softmax = probs [1,2]
 *
 * W1 holds nearly all the bytes: its hidden width is picked so the weights total `weightBytes`.
 * Weights are seeded random numbers; b2 favours "good", so about one frame in ten is a defect.
 */
import type { Manifest } from '../protocol/manifest.js';
import { OnnxModelBuilder } from '../models/onnx-builder.js';
import { writeModelPackage } from '../models/package-writer.js';
import { createRng } from '../models/prng.js';

export interface SimModelOptions {
  name?: string;
  version?: string;
  /** Approximate bytes of float32 weights (default 64 KiB; at least one hidden unit). */
  weightBytes?: number;
  /** Input side in pixels (default 32). */
  size?: number;
  /** Weight seed (default: derived from the version, so versions differ). */
  seed?: number;
}

export const SIM_MODEL_NAME = 'osprey-sim-classifier';

function seedOf(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** The ONNX bytes and the hidden width of a simulated classifier. */
export function buildSimModel(opts: SimModelOptions = {}): { bytes: Uint8Array; hidden: number } {
  const size = opts.size ?? 32;
  const inputs = 3 * size * size;
  const hidden = Math.max(1, Math.round((opts.weightBytes ?? 64 * 1024) / 4 / inputs));
  const rng = createRng(opts.seed ?? seedOf(`${opts.name ?? SIM_MODEL_NAME}@${opts.version ?? '1.0.0'}`));
  const w1 = new Float32Array(inputs * hidden);
  const s1 = 1 / Math.sqrt(inputs);
  for (let i = 0; i < w1.length; i++) w1[i] = (rng.next() * 2 - 1) * s1;
  const b1 = Float32Array.from({ length: hidden }, () => rng.next() * 0.1);
  const w2 = Float32Array.from({ length: hidden * 2 }, () => (rng.next() * 2 - 1) / Math.sqrt(hidden));
  const b = new OnnxModelBuilder({ opset: 13, graphName: 'osprey_sim_classifier', docString: 'Osprey simulated-fleet classifier' });
  b.input('image', 'float32', [1, 3, size, size])
    .initializer('w1', 'float32', [inputs, hidden], w1)
    .initializer('b1', 'float32', [hidden], b1)
    .initializer('w2', 'float32', [hidden, 2], w2)
    .initializer('b2', 'float32', [2], [1.6, -1.6])
    .node('Flatten', ['image'], ['flat'], { axis: 1 })
    .node('Gemm', ['flat', 'w1', 'b1'], ['h'])
    .node('Relu', ['h'], ['hr'])
    .node('Gemm', ['hr', 'w2', 'b2'], ['logits'])
    .node('Softmax', ['logits'], ['probs'], { axis: 1 })
    .output('probs', 'float32', [1, 2])
    .meta('osprey.simulated', 'classifier-v1');
  return { bytes: b.toBytes(), hidden };
}

/** Writes a simulated classifier package to `dir` and returns its manifest. */
export async function writeSimModelPackage(dir: string, opts: SimModelOptions = {}): Promise<Manifest> {
  const size = opts.size ?? 32;
  const { bytes, hidden } = buildSimModel(opts);
  return writeModelPackage(
    dir,
    {
      schemaVersion: 1,
      name: opts.name ?? SIM_MODEL_NAME,
      version: opts.version ?? '1.0.0',
      task: 'classification',
      description: `Simulated-fleet classifier, ${hidden} hidden units (random weights)`,
      input: { name: 'image', layout: 'nchw', width: size, height: size, dtype: 'float32', color: 'rgb', resize: 'stretch', scale: 1 / 255 },
      outputs: { classification: { output: 'probs', activation: 'none', topK: 2 } },
      labels: ['good', 'defect'],
      defectLabels: ['defect'],
      thresholds: { default: 0.5 },
      metadata: { generator: 'osprey simulator', hidden: String(hidden) },
    },
    bytes,
  );
}
