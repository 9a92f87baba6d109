/**
 * Convergence watch: compares each online edge's reported model and config version with the
 * desired state the fleet published for it. A mismatch that outlives a grace period is
 * republished (force, retained) and raised as an alert: an `alert` event in the edge's event log
 * and a `convergence` entry in `GET /api/edges`. It is republished again at growing intervals
 * (grace × 2, × 4 … × 16) while it lasts, and cleared, with an info event, once the edge reports
 * what it was asked for.
 *
 * State lives in memory: after a restart of the fleet manager a mismatch is timed afresh.
 * An offline edge is not judged (it cannot converge); its entry stays as it was until it is back.
 */
import type { Logger } from 'pino';
import { envelope } from '../protocol/validator.js';
import type { EventMessage } from '../protocol/messages.js';
import type { ControlStore, DesiredRecord } from './control-store.js';
import type { DesiredPublisher } from './desired-state.js';
import type { EdgeRecord, FleetStore } from './store.js';

export interface ConvergenceOptions {
  control: Pick<ControlStore, 'listDesired'>;
  fleet: Pick<FleetStore, 'listEdges' | 'recordEvent'>;
  publisher: Pick<DesiredPublisher, 'refresh'>;
  logger: Logger;
  /** How long an edge may differ from its desired state before it is republished and alerted. */
  graceMs: number;
  /** How often edges are compared (default: a quarter of the grace, between 50 ms and 5 s). */
  checkMs?: number;
  now?: () => number;
}

/** One edge's convergence as `GET /api/edges` shows it. */
export interface EdgeConvergence {
  /** The edge reports what its desired state asks for. */
  converged: boolean;
  /** When the current mismatch was first seen (epoch ms); null when converged. */
  mismatchSince: number | null;
  /** Times the desired state was republished during the current mismatch. */
  republished: number;
  /** The mismatch outlived the grace period and was raised as an alert. */
  alert: boolean;
  /** What differs, e.g. `config version 1, desired 2`; null when converged. */
  reason: string | null;
}

export interface ConvergenceMonitor {
  /** Starts the periodic comparison. */
  start(): void;
  /** Stops it and waits for a comparison in progress. Idempotent. */
  stop(): Promise<void>;
  /** The edge's entry; null before the fleet has compared it (no desired state, never online). */
  view(edgeId: string): EdgeConvergence | null;
  /** One comparison now (also what the timer runs); for tests and after a broker restart. */
  check(): Promise<void>;
}

interface Tracked {
  since: number | null;
  republished: number;
  alert: boolean;
  reason: string | null;
  /** Desired state the current timing is about (its updatedAt): a new one restarts the clock. */
  desiredAt: number;
  /** When to republish next. */
  dueAt: number;
}

/** Longest wait between republishes, in grace periods. */
const MAX_BACKOFF = 16;

/** What differs between the edge's reported state and its desired state; null when nothing does. */
export function mismatchOf(edge: Pick<EdgeRecord, 'state'>, desired: DesiredRecord): string | null {
  const reported = edge.state ?? {};
  const parts: string[] = [];
  const want = desired.body.active;
  // A null active means "keep the model you run": any model is right.
  if (want) {
    const have = reported.active ?? null;
    const same = have !== null && (have.sha256 !== undefined ? have.sha256 === want.sha256 : have.name === want.name && have.version === want.version);
    if (!same) parts.push(`model ${have ? `${have.name}@${have.version}` : 'none'}, desired ${want.name}@${want.version}`);
  }
  if (reported.configVersion !== desired.body.configVersion) {
    parts.push(`config version ${reported.configVersion ?? 'none'}, desired ${desired.body.configVersion}`);
  }
  return parts.length > 0 ? parts.join('; ') : null;
}

/** Creates the monitor; nothing runs until start(). */
export function createConvergenceMonitor(opts: ConvergenceOptions): ConvergenceMonitor {
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const { graceMs } = opts;
  const checkMs = opts.checkMs ?? Math.min(5000, Math.max(50, Math.round(graceMs / 4)));
  const tracked = new Map<string, Tracked>();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  async function alertEvent(edge: EdgeRecord, level: EventMessage['level'], message: string, data: Record<string, unknown>): Promise<void> {
    const ev = envelope('events', edge.id, { kind: 'alert', level, message, data: { alert: 'desired-state-mismatch', ...data } }, now());
    try {
      // The fleet's own event, not a sign of life: lastSeen must not move for it.
      await opts.fleet.recordEvent(edge.id, ev, { receivedAt: edge.lastSeen });
    } catch (err) {
      log.error({ err, edgeId: edge.id }, 'convergence event not stored');
    }
  }

  async function compare(): Promise<void> {
    const desired = new Map((await opts.control.listDesired()).map((d) => [d.edgeId, d]));
    const edges = await opts.fleet.listEdges();
    const known = new Set(edges.map((e) => e.id));
    for (const id of tracked.keys()) if (!known.has(id)) tracked.delete(id);
    for (const edge of edges) {
      if (stopped) return;
      const d = desired.get(edge.id);
      if (!d || !edge.online) continue;
      const reason = mismatchOf(edge, d);
      const t = now();
      let s = tracked.get(edge.id);
      if (reason === null) {
        if (s?.alert) {
          log.info({ edgeId: edge.id, republished: s.republished, sinceMs: t - (s.since ?? t) }, 'edge converged');
          await alertEvent(edge, 'info', 'the edge now runs its desired state', { state: 'cleared', republished: s.republished });
        }
        tracked.set(edge.id, { since: null, republished: 0, alert: false, reason: null, desiredAt: d.updatedAt, dueAt: 0 });
        continue;
      }
      if (!s || s.since === null) {
        s = { since: t, republished: 0, alert: false, reason, desiredAt: d.updatedAt, dueAt: t + graceMs };
        tracked.set(edge.id, s);
      } else if (s.desiredAt !== d.updatedAt) {
        // A new desired state: the edge gets a full grace period for it.
        s.desiredAt = d.updatedAt;
        s.dueAt = t + graceMs;
      }
      s.reason = reason;
      if (t < s.dueAt) continue;
      s.republished++;
      s.dueAt = t + graceMs * Math.min(MAX_BACKOFF, 2 ** s.republished);
      log.warn({ edgeId: edge.id, reason, sinceMs: t - s.since!, republished: s.republished }, 'edge differs from its desired state; republished');
      try {
        await opts.publisher.refresh([edge.id], { force: true });
      } catch (err) {
        log.error({ err, edgeId: edge.id }, 'desired state not republished');
      }
      if (!s.alert) {
        s.alert = true;
        await alertEvent(edge, 'warn', `the edge has not applied its desired state for ${Math.round((t - s.since!) / 1000)} s (${reason}); republished`, {
          state: 'raised',
          reason,
          mismatchSince: s.since,
        });
      }
    }
  }

  function check(): Promise<void> {
    if (stopped) return Promise.resolve();
    // One comparison at a time; a tick that finds one running skips.
    running ??= compare()
      .catch((err: unknown) => log.error({ err }, 'convergence check failed'))
      .finally(() => {
        running = undefined;
      });
    return running;
  }

  return {
    start() {
      if (timer) return;
      stopped = false;
      timer = setInterval(() => void check(), checkMs);
    },
    async stop() {
      stopped = true;
      clearInterval(timer);
      timer = undefined;
      await running;
    },
    view(edgeId) {
      const s = tracked.get(edgeId);
      if (!s) return null;
      return { converged: s.since === null, mismatchSince: s.since, republished: s.republished, alert: s.alert, reason: s.reason };
    },
    check,
  };
}
