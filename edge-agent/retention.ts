/**
 * Retention and the quota of the edge's result store (DESIGN "Store and forward", issue 5).
 *
 * - Acknowledged results older than `ackedMaxAgeMs` are deleted, in small chunks off the frame
 *   path (the fleet holds them).
 * - The store is bounded by `maxBytes` (live database pages) and `maxRows`. Reaching the quota
 *   first deletes acknowledged rows of any age, oldest first. Unacknowledged rows are never
 *   deleted: when only they are left, the quota policy applies.
 * - Quota policy: the line never stops. Frames are still inspected and answered, but their
 *   results are not stored (the answer carries seq 0), counted (and the defects among them), and
 *   an `alert` event plus the `result-quota` telemetry alarm say so until storing resumes below
 *   95 % of the quota. Nothing stored is ever dropped, and seqs stay gap-free, so the fleet's
 *   contiguous acks keep working. Rationale in docs/edge-agent.md, "Retention and quota".
 *
 * `guard(store)` returns the ResultStore the pipeline writes through; its `append` applies the
 * policy and returns 0 for a result it did not store.
 */
import type { Logger } from 'pino';
import { isOspreyError } from '../protocol/errors.js';
import type { RetentionConfig } from './config.js';
import { createHysteresisAlarm } from './hysteresis-alarm.js';
import type { NewResult, ResultStore } from './result-store.js';
import type { EdgeAlarm } from '../protocol/monitoring.js';

/** Storing resumes below this share of the quota, so the alarm does not flap row by row. */
const RESUME_BELOW = 0.95;
/** Rows deleted per statement: short transactions keep frame writes from waiting. */
const PRUNE_CHUNK = 2000;
/** Chunks per tick before yielding to the event loop. */
const CHUNKS_PER_TURN = 4;
/**
 * Appends between two reads of the store's size. Rows are counted exactly in between; bytes are
 * stale by at most this many rows (a few KB under a quota of many MB), and the read (~5 µs) stays
 * off most appends (~100 µs each with the fsync).
 */
const SIZE_EVERY = 16;

export const RESULT_QUOTA_ALARM = 'result-quota' satisfies EdgeAlarm;
export const STORE_ERROR_ALARM = 'result-store-error' satisfies EdgeAlarm;

export interface RetentionStats {
  /** Verdicts answered but not stored since start (quota full, or the disk refused the write). */
  notStored: number;
  notStoredDefects: number;
  /** Acknowledged rows deleted since start (age, or to make room). */
  pruned: number;
}

export interface Retention {
  /** Starts the periodic age-based pruning. */
  start(): void;
  /** The store the pipeline should write through: `append` returns 0 when the result was not stored. */
  readonly store: ResultStore;
  /** Runs one pruning pass now (also what the timer does); resolves with rows deleted. */
  prune(): Promise<number>;
  /** True while results are not being stored. */
  readonly full: boolean;
  /** Alarms in force, for telemetry and /health. */
  alarms(): string[];
  stats(): RetentionStats;
  close(): void;
}

export interface RetentionOptions {
  store: ResultStore;
  config: RetentionConfig;
  logger: Logger;
  /** The quota was reached (`full` true) or storing resumed (`full` false). Must not throw. */
  onQuota?: (full: boolean, figures: { rows: number; bytes: number; notStored: number; notStoredDefects: number; reason: string }) => void;
  now?: () => number;
  /**
   * A disk that refused a write (`result-store-error`) clears only once writes have succeeded for
   * this long (default 60 s): a nearly full disk that takes every other write must not flap.
   */
  alarmHoldMs?: number;
}

/** Creates the retention component around an open result store. */
export function createRetention(opts: RetentionOptions): Retention {
  const { store, config } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const stats: RetentionStats = { notStored: 0, notStoredDefects: 0, pruned: 0 };
  let full = false;
  let timer: NodeJS.Timeout | undefined;
  let pruning: Promise<number> | undefined;
  let closed = false;

  const over = (u: { rows: number; bytes: number }, share = 1) =>
    u.bytes >= config.maxBytes * share || (config.maxRows > 0 && u.rows >= config.maxRows * share);

  function setFull(next: boolean, reason: string): void {
    if (full === next) return;
    full = next;
    report(next, reason);
  }

  function report(next: boolean, reason: string): void {
    const u = store.usage();
    const figures = { ...u, notStored: stats.notStored, notStoredDefects: stats.notStoredDefects, reason };
    if (next) log.error({ ...figures, maxBytes: config.maxBytes, maxRows: config.maxRows }, 'result store full; verdicts are answered but not stored');
    else log.warn(figures, 'result store has room again; storing resumed');
    try {
      opts.onQuota?.(next, figures);
    } catch (err) {
      log.error({ err }, 'quota hook threw');
    }
  }

  /** Deletes acknowledged rows, oldest first, until under `share` of the quota or none is left. */
  function makeRoom(share: number): { rows: number; bytes: number } {
    let u = store.usage();
    while (over(u, share)) {
      const deleted = store.prune({ limit: PRUNE_CHUNK });
      stats.pruned += deleted;
      u = store.usage();
      if (deleted === 0) break;
    }
    return u;
  }

  // The disk refused a write: raised at once, cleared after writes have worked for alarmHoldMs.
  const storeError = createHysteresisAlarm({
    holdMs: opts.alarmHoldMs ?? 60_000,
    now,
    onChange: (raised) => report(raised, STORE_ERROR_ALARM),
  });

  let known = store.usage();
  let appendedSince = 0;
  /** The store's size now: read every SIZE_EVERY appends (and always while full), counted in between. */
  function usageNow(): { rows: number; bytes: number } {
    if (full || appendedSince >= SIZE_EVERY) {
      known = store.usage();
      appendedSince = 0;
      return known;
    }
    return { rows: known.rows + appendedSince, bytes: known.bytes };
  }

  function append(record: NewResult): number {
    // Full: look again each frame, since acks and pruning free rows in the background.
    const share = full ? RESUME_BELOW : 1;
    const u = over(usageNow(), share) ? makeRoom(share) : undefined;
    if (u && over(u, share)) {
      if (!full) setFull(true, RESULT_QUOTA_ALARM);
      return notStored(record);
    }
    if (u) {
      known = u;
      appendedSince = 0;
    }
    try {
      const seq = store.append(record);
      appendedSince++;
      if (full) setFull(false, RESULT_QUOTA_ALARM);
      storeError.update(false, true);
      return seq;
    } catch (err) {
      // A full disk (below our quota: someone else filled it) must not stop the line either.
      const code = (err as { cause?: { code?: string } }).cause?.code;
      if (isOspreyError(err, 'OSP_ERR_STORE') && (code === 'SQLITE_FULL' || code === 'SQLITE_IOERR_WRITE')) {
        storeError.update(true, false);
        return notStored(record);
      }
      throw err;
    }
  }

  function notStored(record: NewResult): number {
    stats.notStored++;
    if (record.verdict === 'defect') stats.notStoredDefects++;
    return 0;
  }

  async function pruneAged(): Promise<number> {
    let total = 0;
    const beforeTs = now() - config.ackedMaxAgeMs;
    for (;;) {
      let deleted = 0;
      for (let i = 0; i < CHUNKS_PER_TURN && !closed; i++) {
        const n = store.prune({ beforeTs, limit: PRUNE_CHUNK });
        deleted += n;
        if (n < PRUNE_CHUNK) break;
      }
      total += deleted;
      stats.pruned += deleted;
      if (closed || deleted < PRUNE_CHUNK * CHUNKS_PER_TURN) break;
      // A long backlog of old rows: let frames through between rounds.
      await new Promise((resolve) => setImmediate(resolve));
    }
    if (!closed && over(store.usage())) makeRoom(RESUME_BELOW);
    if (total > 0) log.debug({ deleted: total, beforeTs }, 'acknowledged results pruned');
    return total;
  }

  // seq 0 is a result that was not stored: there is no row to hold back or complete.
  const guarded: ResultStore = Object.create(store, {
    append: { value: append },
    hold: { value: (seq: number) => (seq > 0 ? store.hold(seq) : undefined) },
    completeShadow: {
      value: (seq: number, shadow: Parameters<ResultStore['completeShadow']>[1]) => (seq > 0 ? store.completeShadow(seq, shadow) : undefined),
    },
  }) as ResultStore;

  return {
    store: guarded,
    start() {
      if (timer || closed) return;
      timer = setInterval(() => void runPrune(), config.intervalMs);
      timer.unref();
      void runPrune();
    },
    prune: () => runPrune(),
    get full() {
      return full;
    },
    alarms() {
      return [...(full ? [RESULT_QUOTA_ALARM] : []), ...(storeError.raised ? [STORE_ERROR_ALARM] : [])];
    },
    stats() {
      return { ...stats };
    },
    close() {
      closed = true;
      clearInterval(timer);
    },
  };

  function runPrune(): Promise<number> {
    pruning ??= pruneAged()
      .catch((err: unknown) => {
        log.error({ err }, 'pruning failed');
        return 0;
      })
      .finally(() => {
        pruning = undefined;
      });
    return pruning;
  }
}
