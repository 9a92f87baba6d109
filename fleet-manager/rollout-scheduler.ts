/**
 * When the rollout engine evaluates: on a timer, soon after a burst of edge reports, and on
 * request; and never two things at once (every read and write of rollouts runs through
 * `exclusive`, one after another).
 */
import type { Logger } from 'pino';

export interface RolloutSchedulerOptions {
  /** Evaluation period. */
  tickMs: number;
  /** Delay after a report before evaluating (reports arrive in bursts; one evaluation serves them). */
  pokeDelayMs: number;
  /** One evaluation of every rollout. */
  evaluate(): Promise<void>;
  /** Whether a report is worth an evaluation now (some rollout is being measured). */
  wanted(): boolean;
  logger: Logger;
}

export interface RolloutScheduler {
  /** Runs `fn` after everything queued before it; its result or error is the caller's. */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /** Starts the timer. */
  start(): void;
  /** Stops the timer and any pending poke (what is queued still runs). */
  stop(): void;
  /** An edge reported: evaluate shortly, once for the whole burst. */
  poke(): void;
}

/** Creates the scheduler; no timer runs until start(). */
export function createRolloutScheduler(opts: RolloutSchedulerOptions): RolloutScheduler {
  const log = opts.logger;
  let tail: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  let poked: NodeJS.Timeout | undefined;
  let running = false;

  function exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const result = tail.then(fn);
    tail = result.catch(() => undefined);
    return result;
  }

  const evaluate = () => void exclusive(opts.evaluate).catch((err: unknown) => log.error({ err }, 'rollout evaluation failed'));

  return {
    exclusive,
    start() {
      running = true;
      timer = setInterval(evaluate, opts.tickMs);
      timer.unref();
    },
    stop() {
      running = false;
      clearInterval(timer);
      clearTimeout(poked);
      poked = undefined;
    },
    poke() {
      if (!running || poked || !opts.wanted()) return;
      poked = setTimeout(() => {
        poked = undefined;
        evaluate();
      }, opts.pokeDelayMs);
      poked.unref();
    },
  };
}
