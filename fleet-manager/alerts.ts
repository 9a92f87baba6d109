/**
 * The fleet's alert rules (issue 17): what raises and resolves alerts, and who hears about it.
 *
 * - Edge alarms: an `alert` event with `data.alarm`, one of the alarms edges raise
 *   (protocol/monitoring.ts EDGE_ALARMS; any other name is logged and dropped), raises an alert
 *   of that type for the edge, one with `data.cleared` resolves it. Telemetry `alarms` reconciles both ways (an alarm listed
 *   with no open alert raises one; an open edge alarm absent from the list is resolved), so a lost
 *   event loses nothing. A report older (edge clock) than the one behind an alert never undoes it.
 * - The fleet's own: an edge offline longer than `offlineAfterMs` (counted from when this process
 *   first saw it offline, so a restarted fleet gives edges time to reconnect); an edge's backlog (telemetry `pendingResults`) grown by at least
 *   `backlogMinGrowth` over `backlogWindowMs`; an edge not running its desired state for longer
 *   than `mismatchAfterMs` (convergence.ts); a rollout whose stage failed its gates (paused or
 *   rolled back). Each resolves when its condition ends; a rollout rolled back by its gates is
 *   final, so that alert resolves when someone acknowledges it.
 *
 * Work runs one item at a time in arrival order. Listeners (`onChange`) hear every change with
 * the alert's view: the console's live stream and the webhook outbox.
 */
import type { Logger } from 'pino';
import type { EventMessage, StateMessage, TelemetryMessage } from '../protocol/messages.js';
import { isEdgeAlarm } from '../protocol/monitoring.js';
import type { AlertChange, AlertEvent, AlertView, Severity } from './alert-schemas.js';
import { alertView, rolloutSubject, type AlertInput, type AlertRecord, type AlertStore } from './alert-store.js';
import type { ConvergenceMonitor } from './convergence.js';
import type { EdgeFeed } from './edge-feed.js';
import type { InboundReport } from './ingest.js';
import type { RolloutDoc } from './rollout-spec.js';
import type { FleetStore } from './store.js';

export interface AlertSettings {
  /** An offline edge is alerted after this long. */
  offlineAfterMs: number;
  /** The backlog is judged over this window of telemetry. */
  backlogWindowMs: number;
  /** Growth of pendingResults over the window that raises `backlog-growing`. */
  backlogMinGrowth: number;
  /** An edge that differs from its desired state this long is alerted. */
  mismatchAfterMs: number;
  /** How often offline and convergence are judged. */
  checkMs: number;
}

export type { AlertChange };

export interface AlertsOptions {
  store: AlertStore;
  fleet: Pick<FleetStore, 'listEdges' | 'getEdge'>;
  settings: AlertSettings;
  logger: Logger;
  /** Convergence entries of edges (absent: no desired-state-mismatch alerts). */
  convergence?: Pick<ConvergenceMonitor, 'view'>;
  /** Rollouts, and the feed telling which changed (absent: no rollout-failed alerts). */
  rollouts?: { get(id: string): Promise<RolloutDoc | null>; changes: Pick<EdgeFeed, 'subscribe'> };
  /** The clock of every rule (tests inject one); default Date.now. */
  now?: () => number;
}

export interface Alerts {
  /** Loads what is open, subscribes to rollouts and starts the periodic check. */
  start(): Promise<void>;
  /** Stops the timer and waits for the work in hand. Idempotent. */
  stop(): Promise<void>;
  /** Ingest's onReport: events, telemetry and states of edges. Synchronous; never throws. */
  onReport(report: InboundReport): void;
  /** Judges offline edges, convergence and backlogs now (also what the timer runs). */
  check(): Promise<void>;
  /** Acknowledges an alert as `by`; null when there is no such alert. */
  acknowledge(id: number, by: string): Promise<{ alert: AlertView; changed: boolean } | null>;
  /** `listener` hears every change; returns the unsubscribe. */
  onChange(listener: (change: AlertChange) => void): () => void;
  /** Settles when the work queued so far is done (tests). */
  idle(): Promise<void>;
}

const severityOf = (level: EventMessage['level']): Severity => (level === 'error' ? 'critical' : level === 'warn' ? 'warning' : 'info');

/** A telemetry sample of an edge's backlog. */
interface Sample {
  at: number;
  pending: number;
}

/** Samples kept per edge at most (telemetry every few seconds over a window of minutes). */
const MAX_SAMPLES = 2000;

/** Creates the alert rules; nothing runs until start(). */
export function createAlerts(opts: AlertsOptions): Alerts {
  const { store, fleet, settings } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const listeners = new Set<(change: AlertChange) => void>();
  const backlog = new Map<string, Sample[]>();
  /** When this process first saw each offline edge offline (its own clock: a restarted fleet counts afresh). */
  const offlineSince = new Map<string, number>();
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let stopped = false;
  let tail: Promise<void> = Promise.resolve();

  function emit(event: AlertEvent, alert: AlertRecord): void {
    const change: AlertChange = { event, alert: alertView(alert) };
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (err) {
        log.error({ err, alertId: alert.id }, 'alert listener failed');
      }
    }
  }

  /** Queues work; one item at a time, in order. */
  function enqueue(task: () => Promise<void>): Promise<void> {
    const run = tail.then(task).catch((err: unknown) => log.error({ err }, 'alert rule failed'));
    tail = run;
    return run;
  }

  async function raise(input: AlertInput): Promise<AlertRecord> {
    const { alert, created } = await store.raise(input, now());
    if (created) log.warn({ alertId: alert.id, type: alert.type, edgeId: alert.edgeId, line: alert.line }, 'alert raised');
    emit(created ? 'raised' : 'updated', alert);
    return alert;
  }

  async function resolve(type: string, subject: string, sourceTs?: number | null): Promise<void> {
    const alert = await store.resolve(type, subject, now(), sourceTs);
    if (!alert) return;
    log.info({ alertId: alert.id, type, edgeId: alert.edgeId }, 'alert resolved');
    emit('resolved', alert);
  }

  /** Raises a condition alert unless one is already open (a condition repeats every check). */
  async function raiseOnce(input: AlertInput): Promise<void> {
    if (await store.open(input.type, input.subject)) return;
    await raise(input);
  }

  async function onEvent(edgeId: string, ev: EventMessage): Promise<void> {
    const alarm = ev.kind === 'alert' ? ev.data?.alarm : undefined;
    if (alarm === undefined) return;
    if (!isEdgeAlarm(alarm)) return unknownAlarm(edgeId, alarm);
    if (ev.data?.cleared === true) {
      await resolve(alarm, edgeId, ev.ts);
      return;
    }
    const edge = await fleet.getEdge(edgeId);
    const { alarm: _a, ...figures } = ev.data!;
    await raise({ type: alarm, source: 'edge', subject: edgeId, edgeId, line: edge?.line ?? null, severity: severityOf(ev.level), message: ev.message, data: figures, sourceTs: ev.ts });
  }

  /**
   * An alarm name edges do not raise (a newer agent, or a forged report): no alert, so that one
   * edge cannot fill the alert table and the webhooks with made-up types. Logged once per name.
   */
  const unknownSeen = new Set<string>();
  function unknownAlarm(edgeId: string, alarm: unknown): void {
    const name = String(alarm).slice(0, 64);
    if (unknownSeen.has(name) || unknownSeen.size >= 100) return;
    unknownSeen.add(name);
    log.warn({ edgeId, alarm: name }, 'edge reported an alarm this fleet does not know: no alert kept');
  }

  async function onTelemetry(edgeId: string, tel: TelemetryMessage): Promise<void> {
    const edge = await fleet.getEdge(edgeId);
    const line = edge?.line ?? null;
    const active = await store.activeOf(edgeId);
    await judgeBacklog(edgeId, line, tel.pendingResults, active.some((a) => a.type === 'backlog-growing'));
    // No list at all (an agent from before alarms were reported): it says nothing about alarms.
    if (tel.alarms === undefined) return;
    const listed = new Set(tel.alarms);
    // Open edge alarms the edge no longer lists: their cleared event was lost (or is late).
    for (const a of active) {
      if (a.source !== 'edge' || listed.has(a.type)) continue;
      if (a.sourceTs !== null && a.sourceTs > tel.ts) continue;
      await resolve(a.type, edgeId, tel.ts);
    }
    for (const alarm of listed) {
      if (!isEdgeAlarm(alarm)) {
        unknownAlarm(edgeId, alarm);
        continue;
      }
      if (await store.open(alarm, edgeId)) continue;
      // Cleared by a report newer than this telemetry: not raised again from an old list.
      const latest = await store.latest(alarm, edgeId);
      if (latest && latest.sourceTs !== null && latest.sourceTs > tel.ts) continue;
      await raise({ type: alarm, source: 'edge', subject: edgeId, edgeId, line, severity: 'warning', message: `the edge reports alarm ${alarm} (its raising event did not arrive)`, data: null, sourceTs: tel.ts });
    }
  }

  async function judgeBacklog(edgeId: string, line: string | null, pending: number, alerted: boolean): Promise<void> {
    const t = now();
    const samples = backlog.get(edgeId) ?? [];
    samples.push({ at: t, pending });
    // Keep one sample at least a window old (the base), and none older than it.
    while (samples.length > 2 && samples[1]!.at <= t - settings.backlogWindowMs) samples.shift();
    if (samples.length > MAX_SAMPLES) samples.splice(0, samples.length - MAX_SAMPLES);
    backlog.set(edgeId, samples);
    if (alerted && pending === 0) return resolve('backlog-growing', edgeId);
    const base = samples[0]!;
    if (base.at > t - settings.backlogWindowMs) return; // the window is not covered yet
    const growth = pending - base.pending;
    if (growth >= settings.backlogMinGrowth && pending > 0) {
      if (alerted) return;
      await raise({
        type: 'backlog-growing',
        source: 'fleet',
        subject: edgeId,
        edgeId,
        line,
        severity: 'warning',
        message: `results waiting at the edge grew from ${base.pending} to ${pending} in ${Math.round((t - base.at) / 1000)} s`,
        data: { from: base.pending, to: pending, windowMs: t - base.at },
      });
    } else if (alerted && growth <= 0) {
      await resolve('backlog-growing', edgeId);
    }
  }

  async function onState(edgeId: string, state: StateMessage): Promise<void> {
    if (!state.online) {
      if (!offlineSince.has(edgeId)) offlineSince.set(edgeId, now());
      return;
    }
    offlineSince.delete(edgeId);
    await resolve('edge-offline', edgeId);
  }

  async function judgeEdges(): Promise<void> {
    const t = now();
    const edges = await fleet.listEdges();
    const known = new Set(edges.map((e) => e.id));
    // One read of what is open, so a fleet of healthy edges costs no statement per edge.
    const active = await store.listActive();
    const open = new Set(active.map((a) => `${a.type}\n${a.subject}`));
    const resolveOpen = (type: string, subject: string) => (open.has(`${type}\n${subject}`) ? resolve(type, subject) : Promise.resolve());
    const raiseNew = (input: AlertInput) => (open.has(`${input.type}\n${input.subject}`) ? Promise.resolve() : raiseOnce(input));
    for (const edge of edges) {
      if (stopped) return;
      if (edge.online) {
        offlineSince.delete(edge.id);
        await resolveOpen('edge-offline', edge.id);
      } else if (!offlineSince.has(edge.id)) {
        offlineSince.set(edge.id, t);
      } else if (t - offlineSince.get(edge.id)! >= settings.offlineAfterMs) {
        await raiseNew({
          type: 'edge-offline',
          source: 'fleet',
          subject: edge.id,
          edgeId: edge.id,
          line: edge.line,
          severity: 'critical',
          message: `the edge has been offline since ${new Date(edge.lastSeen).toISOString()}`,
          data: { lastSeen: edge.lastSeen },
        });
      }
      const view = opts.convergence?.view(edge.id) ?? null;
      if (view && !view.converged && view.mismatchSince !== null && t - view.mismatchSince >= settings.mismatchAfterMs) {
        await raiseNew({
          type: 'desired-state-mismatch',
          source: 'fleet',
          subject: edge.id,
          edgeId: edge.id,
          line: edge.line,
          severity: 'warning',
          message: `the edge has not applied its desired state for ${Math.round((t - view.mismatchSince) / 1000)} s: ${view.reason ?? 'it differs'}`,
          data: { reason: view.reason, mismatchSince: view.mismatchSince, republished: view.republished },
        });
      } else if (!view || view.converged) {
        await resolveOpen('desired-state-mismatch', edge.id);
      }
    }
    // Edges the fleet no longer knows: nothing about them can end otherwise.
    for (const id of offlineSince.keys()) if (!known.has(id)) offlineSince.delete(id);
    for (const a of active) {
      if (a.edgeId !== null && !known.has(a.edgeId) && a.source === 'fleet') await resolve(a.type, a.subject);
    }
  }

  async function onRollout(id: string): Promise<void> {
    const doc = await opts.rollouts!.get(id);
    const subject = rolloutSubject(id);
    if (!doc) return resolve('rollout-failed', subject);
    const stage = doc.stages[doc.stageIndex];
    const byGates = doc.reason?.startsWith('stage ') === true;
    const failed = stage?.status === 'failed' && byGates && (doc.status === 'paused' || doc.status === 'rolled-back');
    if (!failed) return resolve('rollout-failed', subject);
    const lines = doc.spec.target.lines;
    const final = doc.status === 'rolled-back';
    await raiseOnce({
      type: 'rollout-failed',
      source: 'fleet',
      subject,
      edgeId: null,
      line: lines?.length === 1 ? lines[0]! : null,
      severity: 'critical',
      message: `rollout of ${doc.model}@${doc.version} ${final ? 'rolled back' : 'paused'}: ${doc.reason}`,
      data: { rolloutId: doc.id, model: doc.model, version: doc.version, status: doc.status, reason: doc.reason, final },
    });
  }

  function check(): Promise<void> {
    if (stopped) return Promise.resolve();
    return enqueue(judgeEdges);
  }

  return {
    async start() {
      stopped = false;
      if (opts.rollouts) {
        const { changes } = opts.rollouts;
        unsubscribe = changes.subscribe((ids) => {
          for (const id of ids) void enqueue(() => onRollout(id));
        });
        // A rollout alert whose rollout changed while the fleet was down is judged again.
        for (const a of await store.listActive()) if (a.rolloutId !== null) void enqueue(() => onRollout(a.rolloutId!));
      }
      timer = setInterval(() => void check(), settings.checkMs);
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      timer = undefined;
      unsubscribe?.();
      // Listeners stay: a follower that leads again tells the same ones (the webhook outbox).
      await tail;
    },
    onReport(report) {
      if (stopped) return;
      const { edgeId } = report;
      switch (report.kind) {
        case 'events':
          void enqueue(() => onEvent(edgeId, report.message));
          break;
        case 'telemetry':
          if (!report.meta.replay) void enqueue(() => onTelemetry(edgeId, report.message));
          break;
        case 'state':
          void enqueue(() => onState(edgeId, report.message));
          break;
        default:
          break;
      }
    },
    check,
    async acknowledge(id, by) {
      let answer: { alert: AlertView; changed: boolean } | null = null;
      await enqueue(async () => {
        const acked = await store.acknowledge(id, by, now());
        if (!acked) return;
        answer = { alert: alertView(acked.alert), changed: acked.changed };
        if (!acked.changed) return;
        log.info({ alertId: id, by }, 'alert acknowledged');
        emit('acknowledged', acked.alert);
        // Nothing else can end a rollout rolled back by its gates: acknowledging it does.
        if (acked.alert.type === 'rollout-failed' && acked.alert.data?.final === true && acked.alert.state !== 'resolved') {
          await resolve(acked.alert.type, acked.alert.subject);
          const after = await store.get(id);
          if (after) answer = { alert: alertView(after), changed: true };
        }
      });
      return answer;
    },
    onChange(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    idle() {
      return tail;
    },
  };
}
