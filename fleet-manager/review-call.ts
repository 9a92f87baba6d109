/**
 * What a review means for a frame (pure), and the facts about a call the review queue shows: the
 * threshold the frame was judged against and the model's labels, looked up through the control
 * plane (the edge's effective config, the model's manifest) and cached for one request.
 */
import { OspreyError, safeLine } from '../protocol/errors.js';
import type { Verdict } from '../protocol/messages.js';
import type { ControlStore } from './control-store.js';
import type { DesiredPublisher } from './desired-state.js';
import type { ReviewVerdict } from './review-store.js';

/** The frame's verdict and label after a review. */
export interface ReviewedCall {
  verdict: Verdict;
  label: string;
}

export interface ModelFacts {
  labels: string[];
  defectLabels: string[];
  threshold: { default?: number; perLabel?: Record<string, number> };
}

/**
 * The frame's verdict and label after the inspector's review of the model's call; throws
 * OSP_ERR_BAD_REQUEST (one line naming the field) for a review that does not fit the call.
 */
export function reviewedCall(call: ReviewedCall, review: ReviewVerdict, label: string | undefined, facts: ModelFacts | null): ReviewedCall {
  switch (review) {
    case 'confirmed':
      if (label !== undefined && label !== call.label) throw bad(`label: a confirmed call keeps the model's label ${call.label}; use review "relabelled" to change it`);
      return { verdict: call.verdict, label: call.label };
    case 'false-call':
      if (call.verdict !== 'defect') throw bad('review: false-call applies to a defect call; this frame was called ok');
      return { verdict: 'ok', label: label ?? 'good' };
    case 'missed-defect':
      if (call.verdict !== 'ok') throw bad('review: missed-defect applies to an ok call; this frame was called defect (use relabelled or false-call)');
      return { verdict: 'defect', label: label ?? facts?.defectLabels[0] ?? 'defect' };
    case 'relabelled': {
      if (label === undefined) throw bad('label: required for review "relabelled"');
      if (label === call.label) throw bad(`label: ${safeLine(label, 80)} is the model's own label; use review "confirmed"`);
      const known = facts ? [...new Set([...facts.labels, ...facts.defectLabels])] : [];
      if (known.length > 0 && !known.includes(label)) throw bad(`label: ${safeLine(label, 80)} is not one of the model's labels (${known.join(', ')})`);
      return { verdict: call.verdict, label };
    }
  }
}

const bad = (message: string) => new OspreyError('OSP_ERR_BAD_REQUEST', message);

/** Looks up model facts and thresholds; one instance per request (it caches). */
export function callFacts(control?: { store: Pick<ControlStore, 'getVersion'>; publisher: Pick<DesiredPublisher, 'effectiveConfig'> }) {
  const models = new Map<string, Promise<ModelFacts | null>>();
  const edges = new Map<string, Promise<{ default?: number; perLabel?: Record<string, number> } | undefined>>();
  const model = (ref: string): Promise<ModelFacts | null> => {
    let p = models.get(ref);
    if (!p) {
      const at = ref.lastIndexOf('@');
      p = !control || at <= 0
        ? Promise.resolve(null)
        : control.store.getVersion(ref.slice(0, at), ref.slice(at + 1)).then((v) =>
            v ? { labels: [...v.manifest.labels], defectLabels: [...v.manifest.defectLabels], threshold: { ...v.manifest.thresholds } } : null,
          );
      models.set(ref, p);
    }
    return p;
  };
  const edgeThresholds = (edgeId: string) => {
    let p = edges.get(edgeId);
    if (!p) {
      p = control ? control.publisher.effectiveConfig(edgeId).then((e) => e.config.thresholds, () => undefined) : Promise.resolve(undefined);
      edges.set(edgeId, p);
    }
    return p;
  };
  return {
    model,
    /** The threshold a label of this edge's model is judged against now: edge config, else the model's, else 0.5. */
    async threshold(edgeId: string, ref: string, label: string): Promise<number> {
      const [edge, facts] = await Promise.all([edgeThresholds(edgeId), model(ref)]);
      return edge?.perLabel?.[label] ?? edge?.default ?? facts?.threshold.perLabel?.[label] ?? facts?.threshold.default ?? 0.5;
    },
  };
}
