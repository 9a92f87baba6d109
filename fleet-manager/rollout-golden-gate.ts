/**
 * The rollout gate `goldenSet` (issue 17): a stage passes it when every edge of the stage
 * reported a passing golden-set self-test of the candidate in the role the stage runs it in
 * (live: active; shadow: the shadow candidate). One failing report fails the gate, and so does a
 * report saying the version has no golden set; until every edge reported, it is pending. Pure: the
 * engine reads the reports (golden-set-store.ts) and passes them in.
 */
import type { GoldenSetReport } from '../protocol/monitoring.js';
import type { EdgeProgress } from './rollout-gates.js';
import type { GateResult, StageEdgeState, StageMode } from './rollout-spec.js';

/** Judges the gate over the stage's edges; `reports` holds each edge's latest report of the candidate. */
export function judgeGoldenGate(
  edges: readonly (readonly [string, StageEdgeState, EdgeProgress])[],
  reports: ReadonlyMap<string, GoldenSetReport>,
  mode: StageMode,
  candidate: string,
): GateResult {
  const role = mode === 'live' ? 'active' : 'shadow';
  const ids = edges.filter(([, , p]) => p !== 'removed').map(([id]) => id);
  const relevant = (id: string) => {
    const r = reports.get(id);
    return r && r.role === role ? r : undefined;
  };
  const passing = ids.filter((id) => relevant(id)?.passed === true).length;
  const value = ids.length > 0 ? passing / ids.length : null;
  const result = (status: GateResult['status'], note?: string): GateResult => ({ gate: 'goldenSet', limit: 1, value, status, ...(note !== undefined && { note }) });
  for (const id of ids) {
    const r = relevant(id);
    if (r?.passed === null) return result('fail', `${candidate} has no golden set (edge ${id}): it cannot pass a golden-set gate`);
    if (r?.passed === false) return result('fail', `golden set failed on edge ${id}: ${r.reason ?? `${r.mismatches} of ${r.images} images off`}`.slice(0, 300));
  }
  if (ids.length === 0) return result('pending', 'no edges in the stage yet');
  if (passing < ids.length) return result('pending', `${passing} of ${ids.length} edges reported a passing golden set (${role})`);
  return result('pass');
}
