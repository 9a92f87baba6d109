/**
 * The rollout's stage machine, pure: a rollout's status and its current stage's status, an event
 * (the stage's gates were judged, or a person acted), and out come the new statuses and the
 * effects the engine carries out (stamp the stage's end, open a stage, roll the members back,
 * release shadow edges, stamp the finish). No I/O and no clock. Semantics: docs/fleet-manager.md
 * "Rollouts".
 */
import { ACTIVE_STATUSES, type RolloutStatus, type StageEvaluation, type StageStatus } from './rollout-spec.js';

export type RolloutAction = 'promote' | 'pause' | 'resume' | 'abort' | 'rollback';

export interface RolloutMachineState {
  status: RolloutStatus;
  reason: string | null;
  stageIndex: number;
  /** The current stage's status. */
  stageStatus: StageStatus;
}

/** What the machine needs to know of the rollout's spec. */
export interface RolloutMachineContext {
  stageCount: number;
  /** The current stage's name and promotion. */
  stageName: string;
  promotion: 'auto' | 'manual';
  onFailure: 'pause' | 'rollback';
}

export type RolloutMachineEvent =
  /** The current stage's gates were judged (only while the rollout is running or awaiting promotion). */
  | { type: 'judged'; decision: StageEvaluation['decision']; reason: string | null }
  | { type: RolloutAction };

export type RolloutEffect =
  /** The current stage takes this status; `ended`: its end time is now. */
  | { type: 'stage'; status: StageStatus; ended: boolean }
  /** A fresh measurement of stage `index` begins (counters and baselines from now on). */
  | { type: 'open-stage'; index: number }
  /** Every member still pinned to the candidate goes back to what it ran before; all are republished. */
  | { type: 'roll-back' }
  /** Members that ran the candidate in shadow drop it (their desired state is republished). */
  | { type: 'release-shadows' }
  /** The rollout's finish time is now. */
  | { type: 'finished' };

export type RolloutTransition =
  | {
      ok: true;
      state: RolloutMachineState;
      effects: RolloutEffect[];
      /** The next stage opened and may pass at once: judge again. */
      again: boolean;
    }
  /** The action is not allowed in this status (`cannot <what>`). */
  | { ok: false; cannot: string };

const isMeasured = (s: RolloutStatus) => s === 'running' || s === 'awaiting-promotion';
const stageMeasured = (s: StageStatus) => s === 'running' || s === 'awaiting-promotion';

/** Ends the current stage as passed or promoted; opens the next, or completes the rollout. */
function advance(state: RolloutMachineState, ctx: RolloutMachineContext, how: 'passed' | 'promoted'): RolloutTransition {
  const effects: RolloutEffect[] = [{ type: 'stage', status: how, ended: true }];
  if (state.stageIndex + 1 >= ctx.stageCount) {
    // Shadow-only edges drop the candidate; live edges keep it as their pin.
    effects.push({ type: 'finished' }, { type: 'release-shadows' });
    return { ok: true, state: { ...state, status: 'completed', reason: null, stageStatus: how }, effects, again: false };
  }
  const next = state.stageIndex + 1;
  effects.push({ type: 'open-stage', index: next });
  return { ok: true, state: { status: 'running', reason: null, stageIndex: next, stageStatus: 'running' }, effects, again: true };
}

/** Stops a stage still being measured (an abort or a rollback ends it early). */
function stopStage(state: RolloutMachineState): { stageStatus: StageStatus; effects: RolloutEffect[] } {
  return stageMeasured(state.stageStatus)
    ? { stageStatus: 'stopped', effects: [{ type: 'stage', status: 'stopped', ended: true }] }
    : { stageStatus: state.stageStatus, effects: [] };
}

function rollBack(state: RolloutMachineState, reason: string | null): RolloutTransition {
  const stop = stopStage(state);
  return {
    ok: true,
    state: { ...state, status: 'rolled-back', reason, stageStatus: stop.stageStatus },
    effects: [{ type: 'roll-back' }, ...stop.effects, { type: 'finished' }],
    again: false,
  };
}

const unchanged = (state: RolloutMachineState): RolloutTransition => ({ ok: true, state, effects: [], again: false });

/** The next state of a rollout and what to do, for one event. */
export function transition(state: RolloutMachineState, ctx: RolloutMachineContext, event: RolloutMachineEvent): RolloutTransition {
  const active = ACTIVE_STATUSES.includes(state.status);
  switch (event.type) {
    case 'judged': {
      if (!isMeasured(state.status)) return unchanged(state);
      if (event.decision === 'fail') {
        const failed: RolloutMachineState = { ...state, stageStatus: 'failed', reason: `stage ${ctx.stageName}: ${event.reason}` };
        const ended: RolloutEffect = { type: 'stage', status: 'failed', ended: true };
        if (ctx.onFailure === 'rollback') {
          const t = rollBack(failed, failed.reason) as Extract<RolloutTransition, { ok: true }>;
          return { ...t, effects: [ended, ...t.effects] };
        }
        return { ok: true, state: { ...failed, status: 'paused' }, effects: [ended], again: false };
      }
      // Awaiting promotion: still watched for a failure, never promoted by the gates.
      if (state.status === 'awaiting-promotion' || event.decision !== 'pass') return unchanged(state);
      if (ctx.promotion === 'manual') {
        return {
          ok: true,
          state: { ...state, status: 'awaiting-promotion', stageStatus: 'awaiting-promotion' },
          effects: [{ type: 'stage', status: 'awaiting-promotion', ended: false }],
          again: false,
        };
      }
      return advance(state, ctx, 'passed');
    }
    case 'promote':
      if (!active) return { ok: false, cannot: 'promote' };
      return advance(state, ctx, 'promoted');
    case 'pause':
      if (!isMeasured(state.status)) return { ok: false, cannot: 'pause' };
      return { ok: true, state: { ...state, status: 'paused', reason: 'paused by a person' }, effects: [], again: false };
    case 'resume':
      // A fresh measurement: the data that failed (or was paused on) does not count again.
      if (state.status !== 'paused') return { ok: false, cannot: 'resume' };
      return {
        ok: true,
        state: { ...state, status: 'running', reason: null, stageStatus: 'running' },
        effects: [{ type: 'open-stage', index: state.stageIndex }],
        again: false,
      };
    case 'abort': {
      if (!active) return { ok: false, cannot: 'abort' };
      const stop = stopStage(state);
      return {
        ok: true,
        state: { ...state, status: 'aborted', reason: 'aborted by a person', stageStatus: stop.stageStatus },
        effects: [...stop.effects, { type: 'finished' }, { type: 'release-shadows' }],
        again: false,
      };
    }
    case 'rollback':
      if (state.status === 'rolled-back') return { ok: false, cannot: 'roll back' };
      return rollBack(state, 'rolled back by a person');
  }
}
