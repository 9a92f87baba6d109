/**
 * The edge's golden-set self-test (issue 17; docs/monitoring.md "Golden-set self-test"): runs the
 * golden set of the active model, and of a shadow candidate when one is loaded, right after it
 * comes into service and on a node-cron schedule from the layered config (`goldenSet.schedule`,
 * default monthly), or on demand. Runs go one after another (golden-set-run.ts does one model).
 *
 * Each run is reported as a `golden-set` event with its per-image outcomes; the active model's
 * last report is the reported state's `goldenSet`. A failed run raises the `golden-set-failed`
 * alarm (an `alert` event, as the storage alarms do); it stays raised while the last run of a
 * model in service (active or shadow) failed, and clears when that model passes or leaves service
 * — it changes only when a run ends, so it cannot flap. A package without a golden set reports
 * `passed: null` ("none"), which is not a failure.
 */
import { schedule as cronSchedule, type ScheduledTask } from 'node-cron';
import type { Logger } from 'pino';
import { oneLine } from '../protocol/errors.js';
import type { EventMessage, ModelRef } from '../protocol/messages.js';
import { cronScheduleError } from '../protocol/golden-schedule.js';
import { DEFAULT_GOLDEN_SCHEDULE, type GoldenImageOutcome, type GoldenSetReport, type GoldenSetSettings } from '../protocol/monitoring.js';
import { readGoldenSet, runGoldenSet } from './golden-set-run.js';
import type { ServingModel } from './model-manager.js';
import type { EdgeAlarm } from '../protocol/monitoring.js';

export const GOLDEN_SET_ALARM = 'golden-set-failed' satisfies EdgeAlarm;
export const DEFAULT_GOLDEN_TIMEOUT_MS = 120_000;

export type GoldenTrigger = GoldenSetReport['trigger'];

export interface GoldenSetMonitorOptions {
  /** The models in service now (the model manager's `serving()`). */
  serving: () => ServingModel[];
  publishEvent?: (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>) => void;
  /** The active model's report changed (publish the state). */
  onStateChange?: () => void;
  logger: Logger;
  /** Wall clock of `ranAt` (default Date.now). */
  now?: () => number;
}

export interface GoldenSetMonitor {
  /**
   * Schedules the periodic run (the config's schedule, or the default) and, unless a model came
   * into service since creation (a restored activation already ran it) or runOnActivation is
   * false, runs the models in service once: the agent's start is an activation too (a new agent
   * version may bring a new runtime).
   */
  start(): void;
  /** The layered config's `goldenSet` (absent: defaults). A bad schedule is logged and the previous one kept. */
  applySettings(settings: GoldenSetSettings | undefined): void;
  /** A model just came into service in `role` (activation, shadow load): runs it unless runOnActivation is false. */
  onModelReady(role: ServingModel['role']): void;
  /** Runs the models in service (or only `role`'s) now, after any run in progress; resolves with their reports. */
  run(trigger: GoldenTrigger, role?: ServingModel['role']): Promise<GoldenSetReport[]>;
  /** The models in service may have changed (a shadow dropped): clears the alarm of a failing one that left. */
  servingChanged(): void;
  /** The active model's last report (the state's `goldenSet`). */
  report(): GoldenSetReport | undefined;
  /** The schedule in force. */
  readonly schedule: string;
  alarms(): string[];
  /** Stops the cron task and waits for the run in progress. Idempotent. */
  close(): Promise<void>;
}

const keyOf = (m: Pick<ServingModel, 'ref' | 'runner'>) => m.ref.sha256 ?? `local:${m.runner.id}`;
const idOf = (ref: ModelRef) => `${ref.name}@${ref.version}`;

/** Creates the monitor; nothing is scheduled until start(). */
export function createGoldenSetMonitor(opts: GoldenSetMonitorOptions): GoldenSetMonitor {
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  let scheduleExpr = DEFAULT_GOLDEN_SCHEDULE;
  let runOnActivation = true;
  let timeoutMs = DEFAULT_GOLDEN_TIMEOUT_MS;
  let task: ScheduledTask | undefined;
  let started = false;
  let closed = false;
  /** A model came into service before start(): its run covers the start. */
  let readySeen = false;
  /** Runs one after another: the line gets the rest of the CPU. */
  let chain: Promise<unknown> = Promise.resolve();
  /** Last report per model key (archive sha256, or local:id). */
  const reports = new Map<string, GoldenSetReport>();
  /** Models in service whose last run failed. */
  const failing = new Map<string, GoldenSetReport>();
  let alarmRaised = false;
  /** Aborted at close: the run in progress stops between images instead of holding the shutdown. */
  const stopping = new AbortController();

  function emit(kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>): void {
    try {
      opts.publishEvent?.(kind, level, message.slice(0, 1000), data);
    } catch (err) {
      log.error({ err, kind }, 'event hook threw');
    }
  }

  // node-cron's own messages (a missed execution) through the agent's logger.
  const cronLogger = {
    info: (msg: string) => log.info({ cron: msg }, 'golden-set schedule'),
    warn: (msg: string) => log.warn({ cron: msg }, 'golden-set schedule'),
    error: (msg: string | Error, err?: Error) => log.error({ err: err ?? msg }, 'golden-set schedule'),
    debug: (msg: string | Error) => log.debug({ cron: String(msg) }, 'golden-set schedule'),
  };

  function reschedule(): void {
    if (!started || closed) return;
    void task?.destroy();
    // The run's promise is returned so that noOverlap skips a tick while the last run is going:
    // a schedule shorter than a run never piles runs up.
    task = cronSchedule(
      scheduleExpr,
      () => run('schedule').catch((err: unknown) => log.error({ err }, 'scheduled golden-set run failed')),
      { name: 'golden-set', noOverlap: true, logger: cronLogger },
    );
    log.info({ schedule: scheduleExpr }, 'golden-set self-test scheduled');
  }

  function inService(): ServingModel[] {
    try {
      return opts.serving();
    } catch (err) {
      log.error({ err }, 'cannot list the models in service');
      return [];
    }
  }

  /** Raises or clears the alarm from the failing models still in service (reports of the others are forgotten). */
  function updateAlarm(): void {
    const serving = new Set(inService().map(keyOf));
    for (const key of [...failing.keys()]) if (!serving.has(key)) failing.delete(key);
    for (const key of [...reports.keys()]) if (!serving.has(key)) reports.delete(key);
    const raise = failing.size > 0;
    if (raise === alarmRaised) return;
    alarmRaised = raise;
    if (raise) {
      const [r] = [...failing.values()];
      const data = { alarm: GOLDEN_SET_ALARM, model: r!.model, role: r!.role, mismatches: r!.mismatches, images: r!.images, accuracy: r!.accuracy, reason: r!.reason ?? null };
      log.error(data, 'golden-set self-test failed');
      emit('alert', 'error', `golden set failed on ${r!.model} (${r!.role}): ${r!.reason ?? 'failed'}`, data);
    } else {
      log.info({ alarm: GOLDEN_SET_ALARM }, 'golden-set alarm cleared');
      emit('alert', 'info', 'golden set passes again on the models in service', { alarm: GOLDEN_SET_ALARM, cleared: true });
    }
  }

  /** One model over its golden set: the report and the per-image outcomes. */
  async function runOne(m: ServingModel, dir: string, trigger: GoldenTrigger): Promise<{ report: GoldenSetReport; outcomes: GoldenImageOutcome[] }> {
    const t0 = performance.now();
    const base = { model: idOf(m.ref), ...(m.ref.sha256 !== undefined && { sha256: m.ref.sha256 }), role: m.role, trigger };
    let outcomes: GoldenImageOutcome[] = [];
    let result: Pick<GoldenSetReport, 'passed' | 'accuracy' | 'expectedAccuracy' | 'images' | 'mismatches' | 'reason'>;
    const read = await readGoldenSet(dir);
    if (read.kind === 'none') {
      result = { passed: null, accuracy: null, expectedAccuracy: null, images: 0, mismatches: 0, reason: 'the package has no golden set' };
    } else if (read.kind === 'invalid') {
      result = { passed: false, accuracy: null, expectedAccuracy: null, images: 0, mismatches: 0, reason: read.reason };
    } else {
      try {
        const r = await runGoldenSet(m.runner, dir, read.golden, { timeoutMs, signal: stopping.signal });
        outcomes = r.outcomes;
        result = { passed: r.passed, accuracy: r.accuracy, expectedAccuracy: r.expectedAccuracy, images: r.images, mismatches: r.mismatches, ...(r.reason !== undefined && { reason: r.reason }) };
      } catch (err) {
        const n = read.golden.images.length;
        result = { passed: false, accuracy: null, expectedAccuracy: read.golden.expectedAccuracy, images: n, mismatches: n, reason: oneLine(err).slice(0, 300) };
      }
    }
    return { report: { ...base, ranAt: now(), durationMs: Math.round((performance.now() - t0) * 10) / 10, ...result }, outcomes };
  }

  /** Runs one model and reports it, unless it left service while it ran (a rollback closed it). */
  async function runAndReport(m: ServingModel & { dir: string }, trigger: GoldenTrigger): Promise<GoldenSetReport> {
    const { report, outcomes } = await runOne(m, m.dir, trigger);
    if (closed) return report; // stopped by close: not a result
    if (!inService().some((s) => s.runner === m.runner)) {
      log.info({ model: report.model }, 'golden-set result dropped: the model left service during the run');
      return report;
    }
    const key = keyOf(m);
    reports.set(key, report);
    if (report.passed === false) failing.set(key, report);
    else failing.delete(key);
    log[report.passed === false ? 'warn' : 'info'](
      { model: report.model, role: report.role, trigger, passed: report.passed, images: report.images, mismatches: report.mismatches, accuracy: report.accuracy, durationMs: report.durationMs },
      'golden-set self-test ran',
    );
    const head =
      report.passed === null
        ? `${report.model} (${report.role}): no golden set`
        : report.passed
          ? `${report.model} (${report.role}): golden set passed, ${report.images} images as expected, accuracy ${report.accuracy}`
          : `${report.model} (${report.role}): golden set FAILED: ${report.reason ?? ''}`;
    emit('golden-set', report.passed === false ? 'error' : 'info', head, { ...report, outcomes });
    if (m.role === 'active') {
      try {
        opts.onStateChange?.();
      } catch (err) {
        log.error({ err }, 'state hook threw');
      }
    }
    return report;
  }

  function run(trigger: GoldenTrigger, role?: ServingModel['role']): Promise<GoldenSetReport[]> {
    if (closed) return Promise.resolve([]);
    const next = chain.then(async () => {
      const out: GoldenSetReport[] = [];
      for (const m of inService()) {
        if (closed) break;
        // A runner handed in by the caller (the simulator's shared model) has no package to read: not tested.
        if (m.dir === undefined || (role !== undefined && m.role !== role)) continue;
        out.push(await runAndReport({ ...m, dir: m.dir }, trigger));
        // At once: a rollback may take the failing model out of service before the next one ran.
        if (!closed) updateAlarm();
      }
      if (!closed) updateAlarm();
      return out;
    });
    chain = next.catch(() => undefined);
    return next;
  }

  return {
    start() {
      if (started || closed) return;
      started = true;
      reschedule();
      if (runOnActivation && !readySeen) void run('activation').catch((err: unknown) => log.error({ err }, 'golden-set run at start failed'));
    },
    applySettings(settings) {
      runOnActivation = settings?.runOnActivation ?? true;
      timeoutMs = settings?.timeoutMs ?? DEFAULT_GOLDEN_TIMEOUT_MS;
      const wanted = settings?.schedule ?? DEFAULT_GOLDEN_SCHEDULE;
      if (wanted === scheduleExpr) return;
      const problem = cronScheduleError(wanted);
      if (problem) {
        // The fleet checks this too; an edge keeps testing on the schedule it had.
        log.warn({ schedule: wanted, kept: scheduleExpr, reason: problem }, 'goldenSet.schedule refused; previous schedule kept');
        return;
      }
      scheduleExpr = wanted;
      reschedule();
    },
    onModelReady(role) {
      readySeen = true;
      if (!runOnActivation || closed) return;
      void run('activation', role).catch((err: unknown) => log.error({ err }, 'golden-set run after activation failed'));
    },
    run,
    servingChanged() {
      if (started && !closed) updateAlarm();
    },
    report() {
      const active = inService().find((m) => m.role === 'active');
      return active ? reports.get(keyOf(active)) : undefined;
    },
    get schedule() {
      return scheduleExpr;
    },
    alarms() {
      return alarmRaised ? [GOLDEN_SET_ALARM] : [];
    },
    async close() {
      if (closed) return;
      closed = true;
      stopping.abort();
      await task?.destroy();
      task = undefined;
      await chain;
    },
  };
}
