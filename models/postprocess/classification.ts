/**
 * Classification: one value per label → probabilities → top-k and a verdict.
 *
 * Verdict rule. A defect label with its own threshold (per-label, from the edge or the package)
 * is judged alone: p(label) ≥ its threshold. The other defect labels are judged together as
 * "defect vs good": the sum of their probabilities ≥ the default threshold (for sigmoid,
 * multi-label outputs, where probabilities do not add up, the maximum is used instead). The
 * frame is a defect when any of these fire.
 *
 * Score. With defect labels, `score` is the defect probability of the rule that fired (or the
 * closest call), the value compared with `threshold`. Without any (a classifier that only says
 * what it sees), it is the top-1 probability of the label reported.
 */
import { OspreyError } from '../../protocol/errors.js';
import type { Manifest } from '../../protocol/manifest.js';
import type { Thresholds } from '../../protocol/messages.js';
import type { Judgement, OutputReader, RawOutputs } from './output-reader.js';
import { defaultThreshold, hasOwnThreshold, resolveThreshold } from './thresholds.js';

export type Activation = 'softmax' | 'sigmoid' | 'none';

/** Numerically stable softmax. */
export function softmax(logits: ArrayLike<number>): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const out = new Float32Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    const e = Math.exp(logits[i] - max);
    out[i] = e;
    sum += e;
  }
  for (let i = 0; i < out.length; i++) out[i] /= sum;
  return out;
}

/** Element-wise logistic function. */
export function sigmoid(logits: ArrayLike<number>): Float32Array {
  return Float32Array.from(logits as ArrayLike<number>, (x) => 1 / (1 + Math.exp(-x)));
}

/** Probabilities from raw outputs per the manifest's activation. */
export function toProbabilities(values: ArrayLike<number>, activation: Activation): Float32Array {
  if (activation === 'softmax') return softmax(values);
  if (activation === 'sigmoid') return sigmoid(values);
  return Float32Array.from(values as ArrayLike<number>);
}

/** Judges one frame's label probabilities (see the verdict rule above). */
export function classify(
  probs: Float32Array,
  manifest: Pick<Manifest, 'labels' | 'defectLabels' | 'thresholds'>,
  opts: { activation: Activation; topK?: number; thresholds?: Thresholds },
): Judgement {
  const { labels } = manifest;
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]);
  const top = order.slice(0, opts.topK ?? 5).map((i) => ({ label: labels[i], score: probs[i] }));
  const index = new Map(labels.map((l, i) => [l, i]));
  const defects = new Set(manifest.defectLabels);

  let fired: { label: string; score: number; threshold: number } | undefined;
  const consider = (label: string, score: number, threshold: number) => {
    if (score >= threshold && (!fired || score > fired.score)) fired = { label, score, threshold };
  };
  // Closest call among the rules that did not fire: what the edge's "uncertain band" looks at.
  let nearest: { score: number; threshold: number } | undefined;
  const note = (score: number, threshold: number) => {
    if (!nearest || score / threshold > nearest.score / nearest.threshold) nearest = { score, threshold };
  };

  const group: string[] = [];
  for (const label of manifest.defectLabels) {
    const p = probs[index.get(label)!];
    if (hasOwnThreshold(label, manifest.thresholds, opts.thresholds)) {
      const t = resolveThreshold(label, manifest.thresholds, opts.thresholds);
      consider(label, p, t);
      note(p, t);
    } else {
      group.push(label);
    }
  }
  if (group.length > 0) {
    const ps = group.map((l) => probs[index.get(l)!]);
    const combined = opts.activation === 'sigmoid' ? Math.max(...ps) : ps.reduce((a, b) => a + b, 0);
    const t = defaultThreshold(manifest.thresholds, opts.thresholds);
    const likeliest = group[ps.indexOf(Math.max(...ps))];
    consider(likeliest, combined, t);
    note(combined, t);
  }

  if (fired) return { verdict: 'defect', label: fired.label, score: fired.score, threshold: fired.threshold, top };
  const good = order.find((i) => !defects.has(labels[i]));
  return {
    verdict: 'ok',
    label: good === undefined ? 'ok' : labels[good],
    // No defect labels: nothing is judged, so the score is the reported label's probability.
    score: nearest?.score ?? (good === undefined ? 0 : probs[good]),
    threshold: nearest?.threshold ?? defaultThreshold(manifest.thresholds, opts.thresholds),
    top,
  };
}

/** The classification reader for a validated manifest (task classification). */
export function createClassificationReader(manifest: Manifest): OutputReader {
  const spec = manifest.outputs.classification!;
  const values = (outputs: RawOutputs) => {
    const out = outputs[spec.output];
    if (!out) throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `model produced no output ${spec.output}`);
    // [1, N], [N] and SqueezeNet-style [1, N, 1, 1] all hold N values in label order.
    if (out.data.length !== manifest.labels.length) {
      throw new OspreyError(
        'OSP_ERR_MODEL_OUTPUT',
        `output ${spec.output} has ${out.data.length} values [${out.dims.join(',')}] but the manifest has ${manifest.labels.length} labels`,
      );
    }
    return out.data;
  };
  // float16 probabilities can round a hair past 0 or 1.
  const EPS = 1e-3;
  return {
    outputNames: [spec.output],
    verify(outputs) {
      const v = values(outputs);
      const sum = v.reduce((a, b) => a + b, 0);
      if (spec.activation === 'softmax' && v.length >= 3 && v.every((x) => x >= 0 && x <= 1) && Math.abs(sum - 1) < EPS) {
        throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `output ${spec.output} is already probabilities (sums to 1), but the manifest applies softmax; use activation none`);
      }
    },
    async read(outputs: RawOutputs, options) {
      const v = values(outputs);
      if (spec.activation === 'none') {
        const bad = v.find((x) => !(x >= -EPS && x <= 1 + EPS));
        if (bad !== undefined) {
          throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `output ${spec.output} has value ${bad}, not a probability, but the manifest says activation none (use softmax for logits)`);
        }
      }
      const probs = toProbabilities(v, spec.activation);
      return classify(probs, manifest, { activation: spec.activation, topK: options.topK ?? spec.topK, thresholds: options.thresholds });
    },
  };
}
