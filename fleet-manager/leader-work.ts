/**
 * The work that runs on exactly one fleet instance (issue 18): started when this instance becomes
 * leader (fleet-manager/leadership.ts), stopped, in reverse order, when it stops being leader or
 * closes. The parts are the rollout engine (with it the desired-state publisher's full refresh;
 * a new leader loads the running rollouts from their stored documents and goes on), the
 * convergence monitor, the fleet's own alert rules, the webhook outbox sender and the training
 * runner. Ingest and the HTTP API run on every instance; a follower forwards the HTTP writes that
 * drive leader work to the leader (leader-forward.ts). With SQLite (one instance) the leadership is
 * always held and the parts start and stop with the fleet, as before.
 */
import type { Logger } from 'pino';
import type { Leadership } from './leadership.js';

/** One piece of leader-only work. start() must work again after stop(). */
export interface LeaderPart {
  name: string;
  start(): Promise<void> | void;
  stop(): Promise<void>;
}

export interface LeaderWork {
  /** Whether this instance leads (and its parts run) now. */
  isLeader(): boolean;
  /** Starts the election; when this instance leads at once, its parts have started on return. */
  start(): Promise<void>;
  /** Stops the parts (when running) and leaves the election. Idempotent. */
  stop(): Promise<void>;
}

/** Runs `parts` while `leadership` is held. */
export function createLeaderWork(opts: {
  leadership: Leadership;
  parts: readonly LeaderPart[];
  logger: Logger;
  /** A part that fails to start stops the others and fails the change (and the start of a single instance). */
  failFast?: boolean;
}): LeaderWork {
  const { leadership, parts } = opts;
  const log = opts.logger;
  const running: LeaderPart[] = [];
  let leading = false;

  async function startParts() {
    // Reports arriving while the parts start are theirs already (the engine takes them any time).
    leading = true;
    for (const part of parts) {
      try {
        await part.start();
        running.push(part);
      } catch (err) {
        if (opts.failFast) {
          await stopParts();
          throw err;
        }
        // The others still run: a leader without rollouts is better than one without anything.
        log.error({ err, part: part.name }, 'leader work did not start');
      }
    }
    log.info({ parts: running.map((p) => p.name) }, 'leader work started');
  }

  async function stopParts() {
    leading = false;
    for (const part of running.splice(0).reverse()) {
      try {
        await part.stop();
      } catch (err) {
        log.error({ err, part: part.name }, 'leader work did not stop cleanly');
      }
    }
  }

  const unsubscribe = leadership.onChange((leader) => (leader ? startParts() : stopParts()));
  let stopping: Promise<void> | undefined;
  return {
    isLeader: () => leading,
    start: () => leadership.start(),
    stop() {
      stopping ??= (async () => {
        await leadership.stop();
        unsubscribe();
        await stopParts();
      })();
      return stopping;
    },
  };
}
