/**
 * Which frames' images the edge keeps (EdgeSettings.sampling in protocol): defects, frames whose
 * score lies within `uncertainBand` of the threshold (the ones a person should look at), and
 * every `keepGoodEvery`-th good part. Raw frames of good parts are not kept by default.
 */
import type { EdgeSettings } from '../protocol/messages.js';

export type Sampling = Required<NonNullable<EdgeSettings['sampling']>>;

/** Local defaults until the fleet pushes a policy in desired state. */
export const DEFAULT_SAMPLING: Sampling = { keepDefectImages: true, uncertainBand: 0.05, keepGoodEvery: 0 };

export type KeepReason = 'defect' | 'uncertain' | 'sample';

export interface ImageSampler {
  /** Why this frame's image should be kept, or null. Counts good frames for keepGoodEvery. */
  decide(verdict: 'ok' | 'defect', score: number, threshold: number): KeepReason | null;
  /** Replaces the policy; fields absent from `next` fall back to the local policy. */
  update(next: EdgeSettings['sampling'] | undefined): void;
  readonly policy: Sampling;
}

/** Creates a sampler starting from `initial` (DEFAULT_SAMPLING for absent fields). */
export function createImageSampler(initial: Partial<Sampling> = {}): ImageSampler {
  const local: Sampling = { ...DEFAULT_SAMPLING, ...initial };
  let policy = local;
  let goodSeen = 0;
  return {
    decide(verdict, score, threshold) {
      if (verdict === 'defect' && policy.keepDefectImages) return 'defect';
      if (policy.uncertainBand > 0 && Math.abs(score - threshold) <= policy.uncertainBand) return 'uncertain';
      if (verdict === 'ok' && policy.keepGoodEvery > 0) {
        goodSeen++;
        if (goodSeen % policy.keepGoodEvery === 0) return 'sample';
      }
      return null;
    },
    update(next) {
      policy = { ...local, ...next };
    },
    get policy() {
      return policy;
    },
  };
}
