/**
 * Probation of a newly activated (or shadowed) model version, as a pure state machine: the
 * first frames are watched, and too many model errors among them fail it. No I/O and no clock;
 * the model manager acts on the verdicts (revert the active version, drop the shadow, persist).
 */
import type { ResultRecord } from '../protocol/messages.js';

export type ModelRole = 'active' | 'shadow';

export interface ProbationState {
  /** The loaded entry on probation (archive sha256). */
  key: string;
  /** The runner id results carry (`name@version`). */
  id: string;
  role: ModelRole;
  frames: number;
  errors: number;
  lastCode?: string;
}

export interface ProbationLimits {
  /** Frames watched in all (good + bad) before the model is proven. */
  frames: number;
  /** Model errors that fail it. */
  errors: number;
}

/** One frame's outcome for the model on probation: judged, or failed with a model-fault code. */
export type ProbationEvent = { ok: true } | { ok: false; code: string };

export type ProbationVerdict = 'watching' | 'passed' | 'failed';

/** Probation starts with no frames seen. */
export function startProbation(key: string, id: string, role: ModelRole): ProbationState {
  return { key, id, role, frames: 0, errors: 0 };
}

/** One frame counted: the new state and whether the model is still watched, proven, or failed. */
export function stepProbation(p: ProbationState, event: ProbationEvent, limits: ProbationLimits): { state: ProbationState; verdict: ProbationVerdict } {
  const state: ProbationState = event.ok ? { ...p, frames: p.frames + 1 } : { ...p, errors: p.errors + 1, lastCode: event.code };
  if (state.errors >= limits.errors) return { state, verdict: 'failed' };
  if (state.frames + state.errors >= limits.frames) return { state, verdict: 'passed' };
  return { state, verdict: 'watching' };
}

/** Why a failed probation failed, for the refusal and the event. */
export function probationFailure(p: ProbationState): string {
  const what = `${p.errors} of its first ${p.frames + p.errors} frames failed (last ${p.lastCode ?? 'error'})`;
  return p.role === 'shadow' ? `shadow: ${what}` : what;
}

/**
 * The probation events a stored result brings: one for the active model when the result is its
 * own, one for the shadow when the result carries the shadow's answer (a shadow error counts only
 * when `isFault` blames the model).
 */
export function eventsOfResult(
  record: Pick<ResultRecord, 'model' | 'shadow'>,
  watching: { active?: ProbationState; shadow?: ProbationState },
  isFault: (code: string) => boolean,
): { role: ModelRole; event: ProbationEvent }[] {
  const out: { role: ModelRole; event: ProbationEvent }[] = [];
  if (watching.active && record.model === watching.active.id) out.push({ role: 'active', event: { ok: true } });
  const s = watching.shadow;
  if (s && record.shadow?.model === s.id) {
    const code = record.shadow.error;
    if (code === undefined) out.push({ role: 'shadow', event: { ok: true } });
    else if (isFault(code)) out.push({ role: 'shadow', event: { ok: false, code } });
  }
  return out;
}
