/**
 * The figures rollout gates need, kept as counters at ingest: per edge × model × mode, how many
 * results and what they said, cumulative since the edge's first result. A stage reads each edge's
 * totals when it opens and again on every tick; the difference is what the stage saw, correct
 * whatever order concurrent writers commit in (row ids are not). No I/O: every store backend tallies
 * a batch's inserted results with `tallyResult` and adds the tally to its counter table in the
 * same transaction as the rows (store-db.ts, gate-counts-db.ts).
 */
import type { ResultRecord } from '../protocol/messages.js';

/**
 * Which model a counter is about: `live`, the model that produced the verdict (`result.model`);
 * `shadow`, the shadow candidate that ran beside it on the same frame (`result.shadow.model`).
 */
export type GateMode = 'live' | 'shadow';

/** Cumulative counts of one model's results on one edge. */
export interface CandidateTotals {
  /** Results: live — verdicts by the model; shadow — frames it also ran on. */
  frames: number;
  /** Defect verdicts by the model (shadow: its own verdict). */
  defects: number;
  /** Shadow: frames where it produced a verdict (not an error); live: 0. */
  paired: number;
  /** Shadow: paired frames whose shadow verdict equals the active verdict; live: 0. */
  agree: number;
  /** Shadow: paired frames the active model called a defect; live: 0. */
  baseDefects: number;
  /** Shadow: frames where it failed (an error code); live: 0. */
  errors: number;
}

/** One edge's totals (`FleetStore.candidateCounters`). */
export interface CandidateCounts extends CandidateTotals {
  edgeId: string;
}

/** One counter row's increments. */
export interface GateTallyEntry {
  model: string;
  mode: GateMode;
  counts: CandidateTotals;
}

/** A batch's increments per model, live and shadow apart: no key is built per result. */
export interface GateTally {
  live: Map<string, GateTallyEntry>;
  shadow: Map<string, GateTallyEntry>;
}

export function newGateTally(): GateTally {
  return { live: new Map(), shadow: new Map() };
}

/** Every entry of the tally, live ones first. */
export function tallyEntries(tally: GateTally): GateTallyEntry[] {
  return [...tally.live.values(), ...tally.shadow.values()];
}

export function zeroTotals(): CandidateTotals {
  return { frames: 0, defects: 0, paired: 0, agree: 0, baseDefects: 0, errors: 0 };
}

function entry(tally: GateTally, model: string, mode: GateMode): CandidateTotals {
  const byModel = tally[mode];
  let e = byModel.get(model);
  if (!e) {
    e = { model, mode, counts: zeroTotals() };
    byModel.set(model, e);
  }
  return e.counts;
}

/** Counts one inserted result (never a redelivered duplicate) into the tally. */
export function tallyResult(tally: GateTally, r: Pick<ResultRecord, 'model' | 'verdict' | 'shadow'>): void {
  const live = entry(tally, r.model, 'live');
  live.frames++;
  if (r.verdict === 'defect') live.defects++;
  const s = r.shadow;
  if (s === undefined) return;
  const shadow = entry(tally, s.model, 'shadow');
  shadow.frames++;
  if (s.verdict === 'defect') shadow.defects++;
  if (s.verdict !== undefined) {
    shadow.paired++;
    if (s.verdict === r.verdict) shadow.agree++;
    if (r.verdict === 'defect') shadow.baseDefects++;
  }
  if (s.error !== undefined) shadow.errors++;
}

/** a − b, field by field. */
export function minusTotals(a: CandidateTotals, b: CandidateTotals): CandidateTotals {
  return {
    frames: a.frames - b.frames,
    defects: a.defects - b.defects,
    paired: a.paired - b.paired,
    agree: a.agree - b.agree,
    baseDefects: a.baseDefects - b.baseDefects,
    errors: a.errors - b.errors,
  };
}
