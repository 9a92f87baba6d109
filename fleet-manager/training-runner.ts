/**
 * Runs the fleet's training jobs one at a time (others wait queued): `osprey train` in a child
 * process at the lowest CPU priority (nice 19), so ingest and rollouts are not starved, bounded
 * in time and memory, its progress read from `--progress json` lines and its log kept bounded.
 * A finished package is registered through the registry's internal path (the fleet's own
 * artifact, signed with the fleet key, with its provenance). Cancel kills the child's process
 * group; the job's temp folder goes whatever the outcome.
 *
 * Several fleet instances may share the queue (issue 18): a job is claimed for this instance
 * (`instanceId`) with a lease of `leaseMs`, renewed every third of it while the job runs; the
 * runner writes the job only while this instance still holds it. A job taken away (cancelled on
 * another instance, or failed by a sweep after this instance's lease ran out) has its trainer
 * killed at the next renewal and nothing of its outcome recorded. Jobs still marked running
 * whose lease ran out (their instance died) are failed ("interrupted by a fleet restart") and
 * their folders removed: at start (with the jobs this instance itself held before it restarted)
 * and at every renewal tick after.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdirSync } from 'node:fs';
import { readdir, readFile, rm } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { rssOf } from '../models/model-check.js';
import { MODEL_CARD_FILE } from '../models/train/model-card.js';
import { OspreyError, oneLine, safeLine } from '../protocol/errors.js';
import type { Backbones } from './backbones.js';
import type { ControlStore } from './control-store.js';
import type { Registry } from './registry.js';
import type { TrainingJob, TrainingJobPatch, TrainingStore } from './training-store.js';

/** The CLI the child runs (the built dist/cli/osprey.js beside this file's folder). */
const CLI = fileURLToPath(new URL('../cli/osprey.js', import.meta.url));
/** The lowest scheduling priority on Linux and macOS. */
export const TRAINING_NICE = 19;
export const RESTART_ERROR = 'interrupted by a fleet restart';
/** How long a claim on a job holds unless renewed (renewed every third of it). */
export const TRAINING_LEASE_MS = 30_000;
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);
export const isTerminal = (job: TrainingJob) => TERMINAL.has(job.state);

export interface TrainingRunnerOptions {
  store: TrainingStore;
  registry: Pick<Registry, 'addTrainedVersion'>;
  control: Pick<ControlStore, 'listVersions' | 'getVersion'>;
  backbones: Pick<Backbones, 'resolve'>;
  /** Where job folders live (`<root>/<job id>`). */
  workRoot: string;
  logger: Logger;
  /** Longest a trainer may run, and its largest resident memory; then it is killed and the job fails. */
  timeoutMs: number;
  maxRssBytes: number;
  /** This fleet process's id (random per process): the owner of the jobs it claims. */
  instanceId: string;
  /** How long a claim holds unless renewed (TRAINING_LEASE_MS). */
  leaseMs?: number;
  now?: () => number;
}

export interface TrainingRunner {
  /** Fails jobs a previous process left running (their lease ended, or held by this instance), removes stray folders, and starts the queue. */
  start(): Promise<void>;
  /** The folder a new job's images go to. */
  workDirFor(id: string): string;
  /** Stores a queued job and runs it when its turn comes. */
  submit(job: TrainingJob): Promise<void>;
  /**
   * Cancels a queued or running job (one running here once its child is gone; one running on
   * another instance is stopped there at its next lease renewal); OSP_ERR_CONFLICT when it has finished.
   */
  cancel(id: string): Promise<TrainingJob>;
  /** Calls `listener` with the job after each change; returns the unsubscribe. `onClose` runs when the runner stops. */
  subscribe(id: string, listener: (job: TrainingJob) => void, onClose: () => void): () => void;
  /**
   * Kills a running child (its job stays running in the store: this instance's next start, or any
   * instance's sweep once the lease ends, fails it) and ends every subscription.
   */
  stop(): Promise<void>;
}

/** The next patch version after the highest `x.y.z` among `versions`, or 1.0.0. */
export function nextPatchVersion(versions: readonly string[]): string {
  let best: [number, number, number] | undefined;
  for (const v of versions) {
    const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
    if (!m) continue;
    const t: [number, number, number] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (!best || t[0] > best[0] || (t[0] === best[0] && (t[1] > best[1] || (t[1] === best[1] && t[2] > best[2])))) best = t;
  }
  return best ? `${best[0]}.${best[1]}.${best[2] + 1}` : '1.0.0';
}

interface Running {
  id: string;
  child: ChildProcess;
  closed: Promise<void>;
  /** Why the runner killed it (cancel, timeout, memory, stop, lost: no longer held by this instance). */
  killedFor?: 'cancel' | 'stop' | 'lost' | string;
}

const finishedConflict = (job: TrainingJob) =>
  new OspreyError('OSP_ERR_CONFLICT', `training job ${job.id} has already ${job.state === 'succeeded' ? 'succeeded' : `been ${job.state}`}`);

/** Kills a child and every process of its group. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
}

/** Creates the runner; nothing runs before start(). */
export function createTrainingRunner(opts: TrainingRunnerOptions): TrainingRunner {
  const { store, logger: log, instanceId } = opts;
  const now = opts.now ?? Date.now;
  const leaseMs = opts.leaseMs ?? TRAINING_LEASE_MS;
  const events = new EventEmitter();
  events.setMaxListeners(0);
  mkdirSync(opts.workRoot, { recursive: true });
  let running: Running | undefined;
  let stopped = false;
  let kicking: Promise<void> | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  const workDirFor = (id: string) => join(opts.workRoot, id);

  /** Patches a job this instance holds; null (nothing written) when it no longer does. */
  async function patch(id: string, p: TrainingJobPatch): Promise<TrainingJob | null> {
    const job = await store.updateJob(id, p, { owner: instanceId });
    if (job) events.emit(`job:${id}`, job);
    else log.debug({ jobId: id, instanceId }, 'training job no longer held by this instance: change not written');
    return job;
  }

  /** Tells subscribers the job as stored (after a change made elsewhere). */
  async function publish(id: string): Promise<void> {
    const job = await store.getJob(id);
    if (job) events.emit(`job:${id}`, job);
  }

  /** Fails the jobs whose instance is gone (and this instance's own when `restarted`), removing their folders. */
  async function sweep(restarted: boolean): Promise<void> {
    const failed = await store.failRunning(RESTART_ERROR, now(), restarted ? instanceId : null);
    for (const j of failed) {
      await rm(j.workDir ?? workDirFor(j.id), { recursive: true, force: true });
      await publish(j.id);
    }
  }

  /** Every third of a lease: renews the running job's lease (killing its trainer when it was taken away), sweeps, and looks for queued jobs (submitted on any instance). */
  async function tick(): Promise<void> {
    const r = running;
    if (r && !r.killedFor) {
      const held = await store.renewLease(r.id, instanceId, now(), leaseMs);
      if (!held && running === r) {
        log.warn({ jobId: r.id, instanceId }, 'training job no longer held by this instance (cancelled elsewhere, or its lease ran out): trainer killed');
        r.killedFor ??= 'lost';
        killGroup(r.child);
      }
    }
    await sweep(false);
    void kick();
  }

  /** Puts a job this instance claimed but will not run (it is stopping) back in the queue. */
  async function requeue(id: string): Promise<void> {
    await store.updateJob(id, { state: 'queued', phase: 'queued', progress: 0 }, { owner: instanceId });
  }

  /** Runs queued jobs one after another until none is left. */
  function kick(): Promise<void> {
    if (kicking || running || stopped) return kicking ?? Promise.resolve();
    kicking = claimLoop()
      .catch((err: unknown) => log.error({ err }, 'training queue not read'))
      .finally(() => (kicking = undefined));
    return kicking;
  }

  async function claimLoop(): Promise<void> {
    for (;;) {
      if (stopped) return;
      const job = await store.claimNext(instanceId, now(), leaseMs);
      if (!job) return;
      if (stopped) return requeue(job.id);
      events.emit(`job:${job.id}`, job);
      await runJob(job).catch((err: unknown) => log.error({ err, jobId: job.id }, 'training job failed unexpectedly'));
    }
  }

  async function finish(id: string, p: TrainingJobPatch): Promise<void> {
    const job = await store.getJob(id);
    if (job?.workDir) await rm(job.workDir, { recursive: true, force: true });
    await patch(id, { ...p, phase: 'done', finishedAt: now(), workDir: null, pid: null });
  }

  async function runJob(job: TrainingJob): Promise<void> {
    const workDir = job.workDir ?? workDirFor(job.id);
    let version: string;
    let backboneFile: string;
    try {
      version = job.requestedVersion ?? nextPatchVersion((await opts.control.listVersions(job.model)).map((v) => v.version));
      if (await opts.control.getVersion(job.model, version)) throw new OspreyError('OSP_ERR_CONFLICT', `${job.model}@${version} already exists`);
      backboneFile = (await opts.backbones.resolve(job.backbone)).file;
    } catch (err) {
      await finish(job.id, { state: 'failed', error: safeLine(oneLine(err as Error)) });
      return;
    }
    if (stopped) return requeue(job.id);
    // Cancelled (or swept) since it was claimed: nothing to start.
    if (!(await store.renewLease(job.id, instanceId, now(), leaseMs))) {
      log.info({ jobId: job.id }, 'training job no longer held by this instance before its trainer started');
      await rm(workDir, { recursive: true, force: true });
      await publish(job.id);
      return;
    }
    const data = join(workDir, 'data');
    const out = join(workDir, 'out');
    const args = [CLI, 'train', job.kind];
    if (job.kind === 'anomaly') {
      args.push('--good', join(data, 'good'));
      if ((job.counts.defects ?? 0) > 0) args.push('--defects', join(data, 'defects'));
      if (job.options.operatingPoint) args.push('--operating-point', job.options.operatingPoint);
    } else {
      args.push('--data', data);
      if (job.options.valFraction !== undefined) args.push('--val-fraction', String(job.options.valFraction));
      if (job.options.goodLabel) args.push('--good-label', job.options.goodLabel);
    }
    args.push('--out', out, '--backbone', backboneFile, '--name', job.model, '--version', version, '--created-by', job.createdBy, '--progress', 'json');

    // Its own process group (detached), so a cancel kills whatever it started too.
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    // Listened for at once: a cancel can kill the trainer while this still awaits the store below,
    // and a 'close' emitted before anyone listens would leave the job (and its cancel) waiting forever.
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error }>((resolve) => {
      child.on('error', (error) => resolve({ code: null, signal: null, error }));
      child.on('close', (code, signal) => resolve({ code, signal }));
    });
    let closedResolve!: () => void;
    const closed = new Promise<void>((resolve) => (closedResolve = resolve));
    const r: Running = { id: job.id, child, closed };
    running = r;
    if (child.pid !== undefined) {
      try {
        setPriority(child.pid, TRAINING_NICE);
      } catch (err) {
        log.warn({ err, jobId: job.id }, 'cannot lower the trainer priority');
      }
    }
    if (!(await patch(job.id, { state: 'running', phase: 'training', progress: 0.05, startedAt: now(), version, pid: child.pid ?? null }))) {
      r.killedFor ??= 'lost';
      killGroup(child);
    }
    log.info({ jobId: job.id, kind: job.kind, model: job.model, version, pid: child.pid }, 'training job started');

    const kill = (why: string) => {
      r.killedFor ??= why;
      killGroup(child);
    };
    const timer = setTimeout(() => kill(`did not finish within ${opts.timeoutMs} ms (training.timeoutMs)`), opts.timeoutMs);
    const watch = setInterval(() => {
      if (child.pid === undefined) return;
      void rssOf(child.pid).then((rss) => {
        if (rss !== undefined && rss > opts.maxRssBytes) kill(`used more than ${opts.maxRssBytes} bytes of memory (training.maxRssBytes)`);
      });
    }, 200);

    let lastPlain = '';
    let progress = 0.05;
    let pending: Promise<unknown> = Promise.resolve();
    const onLine = (text: string) => {
      if (!text.trim()) return;
      let line = text;
      let next: { phase?: string; progress?: number } | undefined;
      try {
        const j = JSON.parse(text) as { line?: unknown; phase?: unknown; progress?: unknown };
        if (typeof j.line === 'string') line = j.line;
        next = { ...(typeof j.phase === 'string' && { phase: j.phase }), ...(typeof j.progress === 'number' && { progress: j.progress }) };
      } catch {
        lastPlain = text;
      }
      // In order: each line's log and progress are stored before the next one's.
      pending = pending.then(async () => {
        await store.appendLog(job.id, [{ ts: now(), line }]);
        if (next?.phase !== undefined && next.progress !== undefined && next.progress >= progress) {
          progress = Math.min(next.progress, 0.95);
          await patch(job.id, { phase: next.phase, progress });
        }
      });
    };
    const lines = (stream: NodeJS.ReadableStream) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buf += chunk;
        // A line longer than this is cut: the child cannot fill the fleet's memory.
        if (buf.length > 64 * 1024 && !buf.includes('\n')) buf = `${buf.slice(0, 1000)}…\n`;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
      stream.on('end', () => onLine(buf));
    };
    lines(child.stderr!);
    lines(child.stdout!);

    const exit = await exited;
    clearTimeout(timer);
    clearInterval(watch);
    await pending.catch((err: unknown) => log.warn({ err, jobId: job.id }, 'training log not stored'));
    try {
      if (r.killedFor === 'stop') return; // the fleet is closing: the next start fails it
      if (r.killedFor === 'lost') {
        // Another instance changed it (a cancel, a sweep): its state is theirs; the folder is ours.
        await rm(workDir, { recursive: true, force: true });
        await publish(job.id);
        return;
      }
      if (r.killedFor === 'cancel') {
        await finish(job.id, { state: 'cancelled', error: 'cancelled' });
        log.info({ jobId: job.id }, 'training job cancelled');
        return;
      }
      if (exit.code !== 0) {
        const why = r.killedFor ?? exit.error?.message ?? (lastPlain.replace(/^osprey: /, '') || (exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`));
        await finish(job.id, { state: 'failed', error: safeLine(`the trainer ${r.killedFor ? '' : 'failed: '}${why}`) });
        log.warn({ jobId: job.id, reason: why }, 'training job failed');
        return;
      }
      // Still held (the lease renewed just now)? Otherwise registering would outlive a job already failed elsewhere.
      if (!(await store.renewLease(job.id, instanceId, now(), leaseMs)) || !(await patch(job.id, { phase: 'registering', progress: Math.max(progress, 0.96), pid: null }))) {
        log.warn({ jobId: job.id, instanceId }, 'training job no longer held by this instance: its package is not registered');
        await rm(workDir, { recursive: true, force: true });
        await publish(job.id);
        return;
      }
      try {
        const added = await opts.registry.addTrainedVersion(job.model, out, { jobId: job.id, user: job.createdBy });
        const card = JSON.parse(await readFile(join(out, MODEL_CARD_FILE), 'utf8')) as Record<string, unknown>;
        await finish(job.id, { state: 'succeeded', progress: 1, resultVersion: added.record.version, resultSha256: added.record.sha256, modelCard: card });
        log.info({ jobId: job.id, model: job.model, version: added.record.version, sha256: added.record.sha256 }, 'training job succeeded');
      } catch (err) {
        await finish(job.id, { state: 'failed', error: safeLine(`registering the model failed: ${oneLine(err as Error)}`) });
      }
    } finally {
      running = undefined;
      closedResolve();
    }
  }

  return {
    workDirFor,
    async start() {
      stopped = false;
      await sweep(true);
      // Folders of jobs that are neither queued nor running (a crash between steps) are removed
      // too; a job another instance runs under a live lease keeps its folder.
      const keep = new Set<string>();
      for (const j of await store.listJobs(10_000)) if (j.state === 'queued' || j.state === 'running') keep.add(j.id);
      for (const name of await readdir(opts.workRoot)) if (!keep.has(name)) await rm(join(opts.workRoot, name), { recursive: true, force: true });
      ticker = setInterval(() => {
        if (ticking || stopped) return;
        ticking = tick()
          .catch((err: unknown) => log.warn({ err }, 'training lease renewal or sweep failed'))
          .finally(() => (ticking = undefined));
      }, Math.max(1, Math.floor(leaseMs / 3)));
      void kick();
    },
    async submit(job) {
      await store.insertJob(job);
      events.emit(`job:${job.id}`, job);
      void kick();
    },
    async cancel(id) {
      const job = await store.getJob(id);
      if (!job) throw new OspreyError('OSP_ERR_NOT_FOUND', `no training job ${safeLine(id, 80)}`);
      if (isTerminal(job)) throw finishedConflict(job);
      if (running?.id === id) {
        const r = running;
        r.killedFor ??= 'cancel';
        killGroup(r.child);
        await r.closed;
      } else {
        // Queued, or running on another instance (which stops it at its next lease renewal).
        const done = await store.updateJob(id, { state: 'cancelled', error: 'cancelled', phase: 'done', finishedAt: now(), workDir: null, pid: null }, { states: ['queued', 'running'] });
        // Null: it finished meanwhile (on whichever instance ran it).
        if (!done) throw finishedConflict((await store.getJob(id))!);
        if (job.state === 'queued' && job.workDir) await rm(job.workDir, { recursive: true, force: true });
        events.emit(`job:${id}`, done);
      }
      return (await store.getJob(id))!;
    },
    subscribe(id, listener, onClose) {
      const name = `job:${id}`;
      events.on(name, listener);
      events.on('close', onClose);
      return () => {
        events.off(name, listener);
        events.off('close', onClose);
      };
    },
    async stop() {
      stopped = true;
      clearInterval(ticker);
      ticker = undefined;
      await ticking;
      const r = running;
      if (r) {
        r.killedFor = 'stop';
        killGroup(r.child);
        await r.closed;
      }
      await kicking;
      events.emit('close');
      events.removeAllListeners();
    },
  };
}
