/**
 * The edge's inspection pipeline: a bounded queue in front of the model. Each frame is decoded
 * and inferred by the active ModelRunner, thresholded with the edge's thresholds, written to the
 * result store with the next seq, and only then resolved to the caller.
 */
import type { Logger } from 'pino';
import { OspreyError, isOspreyError, oneLine, type ErrorCode } from '../protocol/errors.js';
import type { ResultRecord, Thresholds } from '../protocol/messages.js';
import { withTimeout } from '../protocol/timeout.js';
import type { Inspection, InspectOptions, ModelRunner } from '../models/types.js';
import type { NewResult, ResultStore } from './result-store.js';

/** Where a frame came from; stored with its result. */
export interface FrameMeta {
  camera: string;
  source: ResultRecord['source'];
  /** Caller's frame id or file name (traceability), at most 512 characters. */
  frame?: string;
}

export interface InspectOutcome {
  record: ResultRecord;
  inspection: Inspection;
}

export interface PipelineOptions {
  store: ResultStore;
  model: ModelRunner;
  thresholds?: Thresholds;
  /** Frames inspected at once (one per core keeps both cores busy: decode and ORT run off-thread). */
  concurrency: number;
  /** Frames queued plus running before submit() refuses with OSP_ERR_QUEUE_FULL. */
  maxDepth: number;
  /** Encoded bytes queued plus running before refusing (bounds memory, not just count). */
  maxBytes: number;
  logger: Logger;
  /**
   * Called after each result is persisted; with a shadow candidate, once its outcome is stored
   * too (after the frame was answered). `image` is the frame's encoded bytes (the image store
   * keeps some); seq 0 means the store's quota policy answered without storing. Must not throw.
   */
  onResult?: (outcome: InspectOutcome, image: Buffer) => void;
  /**
   * Called for each refused or failed frame, with the id of the runner that failed it (absent
   * when the frame was refused before reaching a model). Must not throw.
   */
  onFailure?: (err: OspreyError, meta: FrameMeta, model?: string) => void;
  /**
   * Longest a result row waits for the shadow candidate's outcome (default 500 ms); past it the
   * row records OSP_ERR_SHADOW_TIMEOUT for the candidate. The verdict never waits for the shadow.
   */
  shadowWaitMs?: number;
  /** Called whenever a slot frees up (hot folder uses it to pull the next file). */
  onSlotFree?: () => void;
  /**
   * Asked before each frame: whether to ask `runner` for an anomaly map (InspectOptions.heatmap;
   * the model returns one only on a defect call, so ok frames pay nothing). It comes back on the
   * outcome's inspection.anomalyMap for onResult, which renders the PNG after the answer, and
   * only for an image it keeps. Must not throw. Default: never.
   */
  wantsHeatmap?: (runner: ModelRunner) => boolean;
  /**
   * Asked before each frame: the longest side of the gray thumbnail to ask the active runner for
   * (InspectOptions.thumbnail, image health), or undefined for none. Must not throw. Default: none.
   */
  thumbnail?: () => number | undefined;
}

export interface Pipeline {
  /** Queues one encoded image; resolves once its result is persisted. Rejects with OspreyError. */
  submit(image: Buffer, meta: FrameMeta): Promise<InspectOutcome>;
  /**
   * Swaps the model for frames not yet started; frames already running finish on the runner they
   * started with, and each result names the runner that produced it. Returns the previous runner
   * (the caller decides when to close it).
   */
  setModel(runner: ModelRunner): ModelRunner;
  readonly model: ModelRunner;
  /**
   * Sets (or clears) the shadow candidate for frames not yet started: it inspects the same bytes
   * right after the active model answered, its outcome goes into the stored row's `shadow` (the
   * row is held out of sync until then), and it never decides or delays a verdict. Returns the
   * previous candidate (the caller decides when to close it).
   */
  setShadow(runner: ModelRunner | undefined): ModelRunner | undefined;
  readonly shadow: ModelRunner | undefined;
  setThresholds(thresholds: Thresholds | undefined): void;
  readonly thresholds: Thresholds | undefined;
  /** Frames queued plus running. */
  readonly depth: number;
  readonly running: number;
  readonly maxDepth: number;
  /** How many more frames submit() would accept now. */
  readonly capacity: number;
  /** Refuse new frames (OSP_ERR_SHUTTING_DOWN); queued ones still complete. */
  stop(): void;
  /** Resolves when nothing is queued or running and no answered row waits for its shadow outcome. */
  drain(): Promise<void>;
}

interface PendingWrite {
  record: NewResult;
  /** Called synchronously after the write: `err` undefined and the seq, or the error. */
  done: (err: unknown, seq: number) => void;
}

interface Job {
  image: Buffer;
  meta: FrameMeta;
  submittedAt: number;
  resolve: (outcome: InspectOutcome) => void;
  reject: (err: OspreyError) => void;
}

type ShadowOutcome = NonNullable<ResultRecord['shadow']>;

/**
 * Longest a stored result waits for the other frames in flight to join its commit (group commit);
 * a frame alone, or the last of those in flight, commits at once.
 */
const GROUP_COMMIT_WAIT_MS = 1;

const ms3 = (ms: number) => Math.round(ms * 1000) / 1000;

function asOspreyError(err: unknown): OspreyError {
  if (isOspreyError(err)) return err;
  return new OspreyError('OSP_ERR_INFERENCE', `inference failed: ${oneLine(err)}`, { cause: err });
}

/** Creates a pipeline; it starts idle and needs no start(). */
export function createPipeline(opts: PipelineOptions): Pipeline {
  const log = opts.logger;
  const queue: Job[] = [];
  let model = opts.model;
  let shadow: ModelRunner | undefined;
  // Shadow inspections still running, including those whose row stopped waiting for them.
  let shadowRunning = 0;
  // Rows answered and waiting for their shadow outcome (drain waits for them).
  let shadowPending = 0;
  const shadowWaitMs = opts.shadowWaitMs ?? 500;
  let thresholds = opts.thresholds;
  let running = 0;
  let queuedBytes = 0;
  let accepting = true;
  let drainWaiters: (() => void)[] = [];

  const depth = () => queue.length + running;
  const wantsHeatmap = (runner: ModelRunner): boolean => {
    try {
      return opts.wantsHeatmap?.(runner) ?? false;
    } catch (err) {
      log.error({ err }, 'heatmap hook threw');
      return false;
    }
  };

  const thumbnailSize = (): number | undefined => {
    try {
      return opts.thumbnail?.();
    } catch (err) {
      log.error({ err }, 'thumbnail hook threw');
      return undefined;
    }
  };

  function fail(err: OspreyError, meta: FrameMeta, modelId?: string): OspreyError {
    try {
      opts.onFailure?.(err, meta, modelId);
    } catch (hookErr) {
      log.error({ err: hookErr }, 'failure hook threw');
    }
    return err;
  }

  function settle(): void {
    if (depth() === 0 && shadowPending === 0 && drainWaiters.length > 0) {
      const waiters = drainWaiters;
      drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  function report(outcome: InspectOutcome, image: Buffer): void {
    try {
      opts.onResult?.(outcome, image);
    } catch (hookErr) {
      log.error({ err: hookErr }, 'result hook threw');
    }
  }

  /**
   * The candidate's outcome on the frame's bytes, or OSP_ERR_SHADOW_TIMEOUT after shadowWaitMs
   * (the frame itself then finishes in the background, still counted in shadowRunning). The
   * edge's thresholds apply to it too: the shadow shows what the candidate would answer here live.
   */
  function shadowOutcome(candidate: ModelRunner, image: Buffer, options: InspectOptions): Promise<ShadowOutcome> {
    shadowRunning++;
    const t0 = performance.now();
    const done = candidate
      .inspect(image, options)
      .then(
        (ins): ShadowOutcome => ({ model: candidate.id, verdict: ins.verdict, label: ins.label, score: ins.score, latencyMs: ms3(performance.now() - t0) }),
        (err: unknown): ShadowOutcome => ({ model: candidate.id, error: asOspreyError(err).code, latencyMs: ms3(performance.now() - t0) }),
      )
      .finally(() => shadowRunning--);
    return withTimeout(done, shadowWaitMs, (): ShadowOutcome => ({ model: candidate.id, error: 'OSP_ERR_SHADOW_TIMEOUT' }));
  }

  /**
   * Group commit: the results of frames that finish close together are written in one
   * transaction, so one fsync (synchronous=FULL) covers them all instead of one each. The fsync
   * blocks the JS thread (better-sqlite3 is synchronous), and with a light model it was the
   * largest cost on that thread after decoding (docs/BENCHMARKS.md). A result commits at once when
   * every frame in flight is waiting for the store (a lone frame: one plain append, as before),
   * else after at most GROUP_COMMIT_WAIT_MS for the others to join. Each frame is still answered
   * only once its own row is committed.
   */
  const toStore: PendingWrite[] = [];
  let flushScheduled = false;
  let flushTimer: NodeJS.Timeout | undefined;

  function persist(record: NewResult, done: PendingWrite['done']): void {
    toStore.push({ record, done });
    if (toStore.length >= running) {
      // Every frame in flight waits for the store (always so for a lone frame): commit now.
      clearTimeout(flushTimer);
      flushTimer = undefined;
      if (!flushScheduled) {
        flushScheduled = true;
        setImmediate(flush);
      }
    } else if (!flushScheduled && !flushTimer) {
      // Other frames are still decoding or inferring: give them a moment to join this commit.
      flushTimer = setTimeout(() => {
        flushTimer = undefined;
        if (!flushScheduled) flush();
      }, GROUP_COMMIT_WAIT_MS);
    }
  }

  function flush(): void {
    flushScheduled = false;
    clearTimeout(flushTimer);
    flushTimer = undefined;
    const writes = toStore.splice(0);
    if (writes.length > 1) {
      let seqs: number[] | undefined;
      try {
        seqs = opts.store.batch(() => writes.map((w) => opts.store.append(w.record)));
      } catch (err) {
        // Nothing of the batch was stored; each frame is tried alone below and fails on its own.
        log.debug({ err, frames: writes.length }, 'group commit failed; storing the frames one by one');
      }
      if (seqs) {
        for (const [i, w] of writes.entries()) w.done(undefined, seqs[i]!);
        return;
      }
    }
    for (const w of writes) {
      let seq: number;
      try {
        seq = opts.store.append(w.record);
      } catch (err) {
        w.done(err, 0);
        continue;
      }
      w.done(undefined, seq);
    }
  }

  /** `release` frees the frame's slot; called before the frame is answered or failed. */
  async function run(job: Job, release: () => void): Promise<void> {
    // Captured once: a setModel()/setShadow() during this frame must not change whose result it is.
    const runner = model;
    const candidate = shadow;
    const frameThresholds = thresholds;
    const options: InspectOptions = frameThresholds ? { thresholds: frameThresholds } : {};
    // The shadow candidate never renders one: its outcome is a verdict, not evidence.
    const activeOptions: InspectOptions = wantsHeatmap(runner) ? { ...options, heatmap: true } : { ...options };
    const thumbnail = thumbnailSize();
    if (thumbnail) activeOptions.thumbnail = thumbnail;
    const failed = (err: unknown) => {
      const ospErr = asOspreyError(err);
      if (!isOspreyError(err)) log.error({ err, model: runner.id }, 'frame failed unexpectedly');
      release();
      job.reject(fail(ospErr, job.meta, runner.id));
    };
    let inspection: Inspection;
    try {
      inspection = await runner.inspect(job.image, activeOptions);
    } catch (err) {
      failed(err);
      return;
    }
    const record: NewResult = {
      ts: Date.now(),
      camera: job.meta.camera,
      source: job.meta.source,
      model: runner.id,
      verdict: inspection.verdict,
      label: inspection.label,
      score: inspection.score,
      // What the line experiences: queue wait + decode + inference + post-processing.
      latencyMs: Math.round((performance.now() - job.submittedAt) * 1000) / 1000,
    };
    if (job.meta.frame !== undefined) record.frame = job.meta.frame.slice(0, 512);
    if (inspection.detections) record.detections = inspection.detections.slice(0, 1000);
    // Runs synchronously in flush(), right after the commit: nothing else (the sync loop included)
    // can run between the row being stored and it being held for its shadow outcome.
    const stored = (seq: number) => {
      const outcome = { record: { seq, ...record }, inspection };
      // Answer first, then the shadow: onnxruntime runs a session on the main thread, so running
      // both together would make the line wait for the candidate's inference too. The row is held
      // out of sync until its shadow outcome is stored. A candidate slower than the line must not
      // pile up work: beyond one per slot, frames skip it (as do rows the store did not keep).
      if (candidate && seq > 0 && shadowRunning < opts.concurrency) {
        opts.store.hold(seq); // same tick as the commit: the sync loop cannot have read the row yet
        shadowPending++;
        void shadowOutcome(candidate, job.image, options).then((result) => {
          try {
            opts.store.completeShadow(seq, result);
          } catch (err) {
            log.error({ err, seq, model: candidate.id }, 'shadow outcome not stored');
          }
          shadowPending--;
          report({ record: { ...outcome.record, shadow: result }, inspection }, job.image);
          settle();
        });
      } else report(outcome, job.image);
      release();
      job.resolve(outcome);
    };
    await new Promise<void>((written) => {
      persist(record, (err, seq) => {
        try {
          if (err === undefined) stored(seq);
          else failed(err);
        } catch (bug) {
          failed(bug);
        } finally {
          written();
        }
      });
    });
  }

  function pump(): void {
    while (running < opts.concurrency && queue.length > 0) {
      const job = queue.shift()!;
      running++;
      let released = false;
      // Once per frame: when it is answered (so depth and capacity are current for the caller),
      // or at the latest when run() ends.
      const release = () => {
        if (released) return;
        released = true;
        running--;
        queuedBytes -= job.image.length;
      };
      void run(job, release).finally(() => {
        release();
        pump();
        settle();
        try {
          opts.onSlotFree?.();
        } catch (hookErr) {
          log.error({ err: hookErr }, 'slot hook threw');
        }
      });
    }
  }

  return {
    submit(image, meta) {
      const refuse = (code: ErrorCode, message: string) => Promise.reject(fail(new OspreyError(code, message), meta));
      if (!accepting) return refuse('OSP_ERR_SHUTTING_DOWN', 'the agent is shutting down');
      if (image.length === 0) return refuse('OSP_ERR_IMAGE_EMPTY', 'the image has zero bytes');
      if (depth() >= opts.maxDepth) {
        return refuse('OSP_ERR_QUEUE_FULL', `inspection queue full (${opts.maxDepth} frames); retry later`);
      }
      // A single frame larger than the budget is still taken when the queue is empty.
      if (depth() > 0 && queuedBytes + image.length > opts.maxBytes) {
        return refuse('OSP_ERR_QUEUE_FULL', `inspection queue full (${opts.maxBytes} bytes); retry later`);
      }
      return new Promise<InspectOutcome>((resolve, reject) => {
        queuedBytes += image.length;
        queue.push({ image, meta, submittedAt: performance.now(), resolve, reject });
        pump();
      });
    },
    setModel(runner) {
      const previous = model;
      model = runner;
      log.info({ model: runner.id, previous: previous.id }, 'model switched');
      return previous;
    },
    get model() {
      return model;
    },
    setShadow(runner) {
      const previous = shadow;
      shadow = runner;
      log.info({ shadow: runner?.id ?? null, previous: previous?.id ?? null }, 'shadow model set');
      return previous;
    },
    get shadow() {
      return shadow;
    },
    setThresholds(next) {
      thresholds = next;
    },
    get thresholds() {
      return thresholds;
    },
    get depth() {
      return depth();
    },
    get running() {
      return running;
    },
    get maxDepth() {
      return opts.maxDepth;
    },
    get capacity() {
      return accepting ? Math.max(0, opts.maxDepth - depth()) : 0;
    },
    stop() {
      accepting = false;
    },
    drain() {
      if (depth() === 0 && shadowPending === 0) return Promise.resolve();
      return new Promise<void>((resolve) => drainWaiters.push(resolve));
    },
  };
}
