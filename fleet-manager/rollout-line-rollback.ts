/**
 * A person rolls a whole line back: every edge of the line returns to its previous version (a
 * pin swap) and leaves any rollout it is in, which is paused. Computes the changes; the engine
 * commits them with its other rollout writes.
 */
import { OspreyError } from '../protocol/errors.js';
import type { ControlStore, EdgePin } from './control-store.js';
import type { RolloutMembership } from './rollout-membership.js';
import type { RolloutDoc } from './rollout-spec.js';
import type { FleetStore } from './store.js';

export interface LineRollbackEdge {
  edgeId: string;
  /** name@version (null: the edge's local model) before and after. */
  from: string | null;
  to: string | null;
}

export interface LineRollback {
  line: string;
  edges: LineRollbackEdge[];
  /** Active rollouts that had edges on the line; they are paused. */
  pausedRollouts: string[];
}

/** Pins to write and edges whose desired state must be republished. */
export interface RolloutChanges {
  pins: EdgePin[];
  refresh: Set<string>;
}

export interface LineRollbackDeps {
  control: ControlStore;
  fleet: FleetStore;
  membership: RolloutMembership;
  now: () => number;
}

/** The rollback of `line`: what to report, the rollout docs it changed and the changes to commit. */
export async function planLineRollback(
  line: string,
  deps: LineRollbackDeps,
): Promise<{ result: LineRollback; docs: RolloutDoc[]; changes: RolloutChanges }> {
  const { control, fleet, membership } = deps;
  const onLine = (await fleet.listEdges()).filter((e) => e.line === line);
  if (onLine.length === 0 && !(await fleet.hasLine(line))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no line ${line}`);
  const t = deps.now();
  const changes: RolloutChanges = { pins: [], refresh: new Set() };
  const result: LineRollback = { line, edges: [], pausedRollouts: [] };
  const name = async (sha: string | null) => {
    if (!sha) return null;
    const v = await control.getVersionBySha(sha);
    return v ? `${v.name}@${v.version}` : sha;
  };
  const docs = new Set<RolloutDoc>();
  for (const e of onLine) {
    // The edge leaves any rollout it is in: people have taken over this line.
    const doc = membership.owner(e.id);
    if (doc) {
      doc.members[e.id]!.mode = 'removed';
      const se = doc.stages[doc.stageIndex]?.edges[e.id];
      if (se) se.removed = true;
      if (doc.status !== 'paused') {
        doc.status = 'paused';
        doc.reason = `line ${line} rolled back by hand`;
      }
      doc.updatedAt = t;
      docs.add(doc);
      changes.refresh.add(e.id);
    }
    const pin = await control.getPin(e.id);
    if (!pin || pin.active === pin.previous) continue;
    changes.pins.push({ edgeId: e.id, active: pin.previous, previous: pin.active, updatedAt: t });
    changes.refresh.add(e.id);
    result.edges.push({ edgeId: e.id, from: await name(pin.active), to: await name(pin.previous) });
  }
  result.pausedRollouts = [...docs].map((d) => d.id);
  return { result, docs: [...docs], changes };
}
