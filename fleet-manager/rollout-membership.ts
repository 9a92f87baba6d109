/**
 * Which rollout owns which edge: the rollouts that hold edges now (running, awaiting promotion,
 * paused), by id. The rollout engine keeps it up to date; the desired-state publisher asks it for
 * each edge's shadow candidate. Built before both, so neither needs the other to exist first.
 */
import type { RolloutDoc } from './rollout-spec.js';

export interface RolloutMembership {
  /** Active rollouts by id (the engine adds and removes them). */
  readonly active: Map<string, RolloutDoc>;
  /** The active rollout an edge is a member of (not removed from), if any. */
  owner(edgeId: string): RolloutDoc | undefined;
  /** The artifact (sha256) an active rollout runs in shadow on this edge. */
  shadowOf(edgeId: string): string | null;
}

/** An empty membership. */
export function createRolloutMembership(): RolloutMembership {
  const active = new Map<string, RolloutDoc>();

  function owner(edgeId: string): RolloutDoc | undefined {
    for (const doc of active.values()) {
      const m = doc.members[edgeId];
      if (m && m.mode !== 'removed') return doc;
    }
    return undefined;
  }

  return {
    active,
    owner,
    shadowOf(edgeId) {
      const doc = owner(edgeId);
      return doc && doc.members[edgeId]!.mode === 'shadow' ? doc.sha256 : null;
    },
  };
}
