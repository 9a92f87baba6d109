/**
 * The edge side of rollouts (issue 4): turns the fleet's desired state into the models and
 * thresholds the pipeline uses, and protects the line on its own while doing so.
 *
 * - The last desired state is persisted (model-state.json) and acted on at start-up, offline
 *   and across restarts; the fleet's retained message brings the newest one on every connect.
 * - Artifacts are checked against a trusted key's signature, the fleet origin(s) and
 *   model.allowPlugins before a byte is fetched, downloaded
 *   with resume and backoff (artifact-download.ts), checked against the desired sha256, then
 *   extracted into a content-addressed cache (artifact-cache.ts) and loaded. None of it waits on
 *   or blocks inspection.
 * - Activation is one pointer switch in the pipeline. The previous version stays loaded, so a
 *   rollback (desired active = previous) is a switch too. Runners that are neither active,
 *   previous nor shadow are closed (close waits for their frames in flight).
 * - Probation: the first frames of a newly activated (or shadowed) version are watched; too many
 *   model errors revert to the previous version (or drop the shadow), and the artifact is refused
 *   until the desired state stops naming it, so a bad version is never retried in a loop.
 *
 * One manager per edge and no module state: a simulator can run many in one process. This file
 * holds the slots (which loaded version is active, previous, shadow) and drives the others:
 * model-state-file.ts (persistence), model-config.ts (config application), model-fetch.ts
 * (signature, cache, download, load) and model-probation.ts (the pure probation machine).
 */
import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { OspreyError, oneLine, type ErrorCode } from '../protocol/errors.js';
import type { DesiredMessage, EdgeSettings, EventMessage, ModelArtifact, ModelRef, ResultRecord, Thresholds } from '../protocol/messages.js';
import { loadModelPackage } from '../models/package.js';
import type { ModelRunner } from '../models/types.js';
import { createConfigApplier } from './model-config.js';
import { createArtifactFetcher, toOspreyError, type DownloadOptions, type Downloading } from './model-fetch.js';
import { eventsOfResult, probationFailure, startProbation, stepProbation, type ModelRole, type ProbationEvent, type ProbationState } from './model-probation.js';
import { createModelStateWriter, readModelState, type PersistedModelState, type Refusal } from './model-state-file.js';

export type { ModelRole } from './model-probation.js';

/** What the manager drives: the pipeline, or anything shaped like it (a simulator's fake line). */
export interface ModelSlots {
  setModel(runner: ModelRunner): ModelRunner;
  setShadow(runner: ModelRunner | undefined): ModelRunner | undefined;
  setThresholds(thresholds: Thresholds | undefined): void;
}

export interface ModelManagerOptions {
  /** model-state.json and the cache (`models/`) live here. */
  dataDir: string;
  slots: ModelSlots;
  /** The model the pipeline starts with (config `model.dir`): used while the desired state names none. */
  localModel: ModelRunner;
  /** The local model's package directory (config `model.dir`), for its golden set; absent: unknown. */
  localModelDir?: string;
  /** Reloads the local model after the manager closed it; absent: the local model is never closed. */
  loadLocalModel?: () => Promise<ModelRunner>;
  /** Thresholds from the edge's own config, used while the desired config has none. */
  localThresholds?: Thresholds;
  /** The fleet's Ed25519 public key (PEM): the trusted key "fleet". */
  publicKey?: string;
  /** Trusted signing keys by id (fleet.trustedKeys). No key at all: every artifact is refused (OSP_ERR_MODEL_SIGNATURE). */
  trustedKeys?: ReadonlyMap<string, KeyObject>;
  /** Packages with a plug-in are refused before a byte is fetched unless true (model.allowPlugins). */
  allowPlugins?: boolean;
  /** Loads a package directory (default: loadModelPackage with one intra-op thread and `maxPixels`). */
  loadModel?: (dir: string) => Promise<ModelRunner>;
  maxPixels?: number;
  /** Packages kept on disk, active/previous/shadow included (default 3; those three are never deleted). */
  cacheVersions?: number;
  /** First frames of a new model watched for model errors (default 20). */
  probationFrames?: number;
  /** Model errors among them that revert an active model or drop a shadow (default 3). */
  probationErrors?: number;
  download?: DownloadOptions;
  logger: Logger;
  /** Model and config events for the fleet (model-activated, model-failed, model-rolled-back, config-applied). */
  onEvent?: (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>) => void;
  /** The reported state changed (publish it). */
  onStateChange?: () => void;
  /** A desired config was applied (thresholds are already in the slots; sampling is for the caller). */
  onConfigApplied?: (settings: EdgeSettings, configVersion: number) => void;
  /** A model just came into service: activated (also restored at start) or loaded as the shadow candidate. */
  onModelReady?: (role: ModelRole) => void;
}

/** A model in service, with its package directory (the golden-set self-test reads it). */
export interface ServingModel {
  role: ModelRole;
  ref: ModelRef;
  runner: ModelRunner;
  /** Absent for a local model handed in by the caller. */
  dir?: string;
}

/** The model part of the edge's reported state. */
export interface ModelManagerState {
  active: ModelRef;
  previous: ModelRef | null;
  shadow: ModelRef | null;
  configVersion?: number;
  /** One line per refused artifact: `name@version sha256: CODE: reason`. */
  errors: string[];
}

export interface ModelManagerStatus {
  desiredConfigVersion: number | null;
  /** The artifact being fetched now, with failed attempts so far. */
  downloading: Downloading | null;
  refused: Refusal[];
  loaded: string[];
  /** Frames seen / model errors of models still on probation. */
  probation: { model: string; role: ModelRole; frames: number; errors: number }[];
}

export interface ModelManager {
  /**
   * Opens the cache, reads the persisted state, applies its config and restores the last active
   * version from the cache (so no frame is judged by a version the edge had left), then works
   * towards the desired state in the background. Call before frames flow.
   */
  start(): Promise<void>;
  /** A valid desired state from the fleet: persisted, config applied at once, models reconciled in the background. */
  applyDesired(desired: DesiredMessage): void;
  /** Every stored result (probation counting of the active and the shadow model). */
  observeResult(record: Pick<ResultRecord, 'model' | 'shadow'>): void;
  /** Every failed frame, with the id of the runner that failed it. */
  observeFailure(err: OspreyError, model?: string): void;
  state(): ModelManagerState;
  status(): ModelManagerStatus;
  /** The active model and the shadow candidate (when one is loaded). */
  serving(): ServingModel[];
  /** The desired config in force (undefined until one was received). */
  readonly settings: EdgeSettings | undefined;
  /** Resolves when nothing is left to do for the current desired state (or it is blocked retrying a download). */
  idle(): Promise<void>;
  /** Stops downloads, waits for the reconcile step in progress, closes every runner the manager owns. */
  close(): Promise<void>;
}

const LOCAL = 'local';

/** Error codes that blame the model rather than the image or the agent. */
const MODEL_FAULTS: ReadonlySet<string> = new Set<ErrorCode>([
  'OSP_ERR_INFERENCE',
  'OSP_ERR_MODEL_OUTPUT',
  'OSP_ERR_MODEL_PLUGIN',
  'OSP_ERR_MODEL_INPUT',
]);

/** Refusals that come from the edge's config rather than the package: forgotten at restart. */
const CONFIG_REFUSALS: ReadonlySet<string> = new Set<ErrorCode>(['OSP_ERR_MODEL_SIGNATURE', 'OSP_ERR_MODEL_ORIGIN', 'OSP_ERR_MODEL_PLUGIN']);

/** True for error codes that count against a model (probation, per-model error counters). */
export function isModelFault(code: string | undefined): boolean {
  return code !== undefined && MODEL_FAULTS.has(code);
}

interface Loaded {
  key: string; // archive sha256, or LOCAL
  runner: ModelRunner;
  artifact?: ModelArtifact;
  owned: boolean;
  /** Passed probation (or needs none: the local model). */
  proven: boolean;
  /** The package directory (the cache's, or config model.dir). */
  dir?: string;
}

function sameDesired(a: DesiredMessage | null, b: DesiredMessage): boolean {
  if (!a) return false;
  const { v: _v, id: _id, ts: _ts, ...restA } = a;
  const { v: _v2, id: _id2, ts: _ts2, ...restB } = b;
  return JSON.stringify(restA) === JSON.stringify(restB);
}

function named(desired: DesiredMessage | null, sha256: string): boolean {
  return desired?.active?.sha256 === sha256 || desired?.shadow?.sha256 === sha256;
}

/** Creates a manager; nothing happens until start(). */
export function createModelManager(opts: ModelManagerOptions): ModelManager {
  const log = opts.logger;
  const keep = opts.cacheVersions ?? 3;
  const limits = { frames: opts.probationFrames ?? 20, errors: opts.probationErrors ?? 3 };
  const fetcher = createArtifactFetcher({
    dataDir: opts.dataDir,
    ...(opts.publicKey ? { publicKey: opts.publicKey } : {}),
    ...(opts.trustedKeys ? { trustedKeys: opts.trustedKeys } : {}),
    allowPlugins: opts.allowPlugins === true,
    loadModel:
      opts.loadModel ??
      ((dir: string) => loadModelPackage(dir, { allowPlugins: opts.allowPlugins === true, ...(opts.maxPixels ? { maxPixels: opts.maxPixels } : {}) })),
    ...(opts.download ? { download: opts.download } : {}),
    logger: log,
  });
  const config = createConfigApplier({
    setThresholds: (t) => opts.slots.setThresholds(t),
    ...(opts.localThresholds ? { localThresholds: opts.localThresholds } : {}),
    logger: log,
    emit,
    ...(opts.onConfigApplied ? { onConfigApplied: opts.onConfigApplied } : {}),
  });
  const writer = createModelStateWriter(opts.dataDir, (err) => log.error({ err }, 'cannot persist model state'));

  // The local model is the manager's to close only when it can load it again.
  const localDir = opts.localModelDir !== undefined ? { dir: opts.localModelDir } : {};
  const loaded = new Map<string, Loaded>([[LOCAL, { key: LOCAL, runner: opts.localModel, owned: opts.loadLocalModel !== undefined, proven: true, ...localDir }]]);
  let activeKey = LOCAL;
  let previousKey: string | null = null;
  let shadowKey: string | null = null;
  let desired: DesiredMessage | null = null;
  const refused = new Map<string, Refusal>();
  const probation: { active?: ProbationState; shadow?: ProbationState } = {};
  let restorePrevious: ModelArtifact | undefined;

  let dirty = false;
  let looping: Promise<void> | undefined;
  // Aborts the reconcile pass in progress (its download; a model load cannot be interrupted).
  let current: AbortController | undefined;
  let early: DesiredMessage | undefined;
  // When the newest desired state arrived (performance.now()), to report how long acting on it took.
  let desiredAt = 0;
  let started = false;
  let closed = false;

  function emit(kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>): void {
    try {
      opts.onEvent?.(kind, level, message, data);
    } catch (err) {
      log.error({ err, kind }, 'event hook threw');
    }
  }

  function modelReady(role: ModelRole): void {
    try {
      opts.onModelReady?.(role);
    } catch (err) {
      log.error({ err, role }, 'model-ready hook threw');
    }
  }

  function stateChanged(): void {
    try {
      opts.onStateChange?.();
    } catch (err) {
      log.error({ err }, 'state hook threw');
    }
  }

  function refOf(key: string): ModelRef {
    const entry = loaded.get(key);
    if (entry?.artifact) return { name: entry.artifact.name, version: entry.artifact.version, sha256: entry.artifact.sha256 };
    const m = (entry?.runner ?? opts.localModel).manifest;
    return { name: m.name, version: m.version };
  }

  function snapshot(): PersistedModelState {
    const artifactOf = (key: string | null) => (key && key !== LOCAL ? (loaded.get(key)?.artifact ?? null) : null);
    return {
      v: 1,
      desired,
      active: artifactOf(activeKey),
      activeProven: loaded.get(activeKey)?.proven ?? true,
      previous: previousKey === LOCAL ? 'local' : artifactOf(previousKey),
      refused: [...refused.values()],
    };
  }

  /** Queues a write of the current state; writes run one after another, newest state last. */
  function persist(): void {
    writer.write(snapshot);
  }

  function refuse(artifact: ModelArtifact, role: ModelRole, err: OspreyError): void {
    const r: Refusal = {
      sha256: artifact.sha256,
      name: artifact.name,
      version: artifact.version,
      role,
      code: err.code,
      reason: oneLine(err).slice(0, 500),
      at: Date.now(),
    };
    refused.set(artifact.sha256, r);
    log.warn({ model: `${r.name}@${r.version}`, sha256: r.sha256, role, code: r.code, reason: r.reason }, 'model refused');
    emit('model-failed', 'error', `${r.name}@${r.version} refused: ${r.reason}`.slice(0, 1000), {
      name: r.name,
      version: r.version,
      sha256: r.sha256,
      role,
      code: r.code,
      reason: r.reason,
    });
    persist();
    stateChanged();
  }

  function watch(role: ModelRole, entry: Loaded): void {
    if (entry.proven) delete probation[role];
    else probation[role] = startProbation(entry.key, entry.runner.id, role);
  }

  function closeUnused(): void {
    for (const [key, entry] of loaded) {
      if (key === activeKey || key === previousKey || key === shadowKey) continue;
      if (!entry.owned) continue; // not ours to close; kept as the fallback
      loaded.delete(key);
      log.info({ model: entry.runner.id }, 'model unloaded');
      entry.runner.close().catch((err: unknown) => log.warn({ err, model: entry.runner.id }, 'model close failed'));
    }
  }

  /** The runner for `key` when it is loaded now. */
  const ready = (key: string) => loaded.get(key);

  async function ensureLocal(): Promise<Loaded> {
    const have = ready(LOCAL);
    if (have) return have;
    const runner = await opts.loadLocalModel!();
    const entry: Loaded = { key: LOCAL, runner, owned: true, proven: true, ...localDir };
    loaded.set(LOCAL, entry);
    return entry;
  }

  /** Signature first (no byte is fetched for an artifact the fleet did not sign), then loaded, cached or downloaded. */
  async function ensureLoaded(a: ModelArtifact, role: ModelRole, signal: AbortSignal): Promise<Loaded> {
    fetcher.verify(a);
    const have = ready(a.sha256);
    if (have) return have;
    const runner = await fetcher.fetch(a, role, signal);
    const entry: Loaded = { key: a.sha256, runner, artifact: a, owned: true, proven: false, dir: fetcher.packageDir(a.sha256) };
    loaded.set(a.sha256, entry);
    return entry;
  }

  /** Makes `entry` the active model in one step; the displaced one becomes previous. */
  function activate(entry: Loaded, how: 'desired' | 'restored'): void {
    if (entry.key === activeKey) return;
    const displaced = activeKey;
    const rollback = entry.key === previousKey;
    const t0 = performance.now();
    opts.slots.setModel(entry.runner);
    const switchMs = Math.round((performance.now() - t0) * 1000) / 1000;
    activeKey = entry.key;
    previousKey = displaced;
    watch('active', entry);
    if (probation.shadow?.key === entry.key) delete probation.shadow;
    const ref = refOf(entry.key);
    const prev = refOf(displaced);
    const sinceDesiredMs = how === 'desired' ? Math.round((performance.now() - desiredAt) * 1000) / 1000 : undefined;
    log.info({ model: entry.runner.id, previous: `${prev.name}@${prev.version}`, rollback, switchMs, sinceDesiredMs, how }, 'model activated');
    emit('model-activated', 'info', `${ref.name}@${ref.version} active${rollback ? ' (back to the previous version)' : ''}`, {
      ...ref,
      role: 'active',
      previous: prev,
      rollback,
      switchMs,
      ...(sinceDesiredMs !== undefined ? { sinceDesiredMs } : { restored: true }),
    });
    persist();
    stateChanged();
    modelReady('active');
  }

  /** Local self-protection: the active model failed its probation; back to the previous version. */
  function revertActive(p: ProbationState): void {
    const bad = loaded.get(p.key);
    delete probation.active;
    if (!bad?.artifact || activeKey !== p.key) return;
    const artifact = bad.artifact;
    const err = new OspreyError('OSP_ERR_MODEL_PROBATION', probationFailure(p));
    const back = previousKey !== null ? loaded.get(previousKey) : undefined;
    const switchTo = (target: Loaded) => {
      if (activeKey !== p.key) return; // the fleet moved on meanwhile
      const t0 = performance.now();
      opts.slots.setModel(target.runner);
      const switchMs = Math.round((performance.now() - t0) * 1000) / 1000;
      activeKey = target.key;
      previousKey = null;
      refuse(artifact, 'active', err);
      const to = refOf(target.key);
      log.warn({ model: bad.runner.id, to: `${to.name}@${to.version}`, switchMs, code: err.code }, 'model rolled back locally');
      emit('model-rolled-back', 'warn', `${bad.runner.id} reverted to ${to.name}@${to.version}: ${err.message}`, {
        name: artifact.name,
        version: artifact.version,
        sha256: artifact.sha256,
        code: err.code,
        reason: err.message,
        to,
        switchMs,
      });
      closeUnused();
      persist();
      stateChanged();
    };
    if (back) switchTo(back);
    else {
      // No previous version loaded (cannot normally happen): fall back to the local model.
      ensureLocal().then(switchTo, (loadErr: unknown) => {
        log.error({ err: loadErr }, 'cannot load the local model to revert to');
        refuse(artifact, 'active', err);
      });
    }
  }

  function dropShadow(p: ProbationState): void {
    const bad = loaded.get(p.key);
    delete probation.shadow;
    if (!bad?.artifact || shadowKey !== p.key) return;
    opts.slots.setShadow(undefined);
    shadowKey = null;
    refuse(bad.artifact, 'shadow', new OspreyError('OSP_ERR_MODEL_PROBATION', probationFailure(p)));
    closeUnused();
  }

  /** One frame's outcome for the model on probation in `role`; acts on the verdict. */
  function countProbation(role: ModelRole, event: ProbationEvent): void {
    const p = probation[role];
    if (!p) return;
    const { state, verdict } = stepProbation(p, event, limits);
    probation[role] = state;
    if (verdict === 'failed') {
      if (role === 'active') revertActive(state);
      else dropShadow(state);
    } else if (verdict === 'passed') {
      const entry = loaded.get(state.key);
      if (entry) entry.proven = true;
      delete probation[role];
      log.info({ model: state.id, role, frames: state.frames, errors: state.errors }, 'model passed probation');
      if (role === 'active') persist();
    }
  }

  async function reconcileActive(d: DesiredMessage | null, signal: AbortSignal): Promise<void> {
    const target = d?.active ?? null;
    const key = target ? target.sha256 : LOCAL;
    if (key === activeKey || refused.has(key)) return;
    let entry: Loaded;
    if (!target) entry = await ensureLocal();
    else {
      try {
        entry = await ensureLoaded(target, 'active', signal);
      } catch (err) {
        if (signal.aborted || closed) return;
        refuse(target, 'active', toOspreyError(err, 'OSP_ERR_MODEL_LOAD'));
        return;
      }
    }
    // A newer desired state may have arrived while this one loaded.
    const now = desired?.active ? desired.active.sha256 : LOCAL;
    if (now === key && !closed) activate(entry, 'desired');
  }

  async function reconcileShadow(d: DesiredMessage | null, signal: AbortSignal): Promise<void> {
    const target = d?.shadow ?? null;
    const key = target?.sha256 ?? null;
    if (key === shadowKey) return;
    if (!target || refused.has(target.sha256)) {
      if (shadowKey !== null) {
        opts.slots.setShadow(undefined);
        log.info({ model: loaded.get(shadowKey)?.runner.id }, 'shadow stopped');
        shadowKey = null;
        delete probation.shadow;
        stateChanged();
      }
      return;
    }
    let entry: Loaded;
    try {
      entry = await ensureLoaded(target, 'shadow', signal);
    } catch (err) {
      if (signal.aborted || closed) return;
      refuse(target, 'shadow', toOspreyError(err, 'OSP_ERR_MODEL_LOAD'));
      return;
    }
    if (desired?.shadow?.sha256 !== target.sha256 || closed) return;
    opts.slots.setShadow(entry.runner);
    shadowKey = target.sha256;
    watch('shadow', entry);
    const ref = refOf(entry.key);
    emit('model-activated', 'info', `${ref.name}@${ref.version} running in shadow`, { ...ref, role: 'shadow' });
    stateChanged();
    modelReady('shadow');
  }

  /** Loads the previous version remembered from before a restart, so a rollback stays a switch. */
  async function restorePreviousVersion(signal: AbortSignal): Promise<void> {
    const a = restorePrevious;
    restorePrevious = undefined;
    if (!a || a.sha256 === activeKey || refused.has(a.sha256) || !(await fetcher.has(a.sha256))) return;
    try {
      const entry = await ensureLoaded(a, 'active', signal);
      entry.proven = true;
      if (activeKey !== entry.key) {
        previousKey = entry.key;
        stateChanged();
      }
    } catch (err) {
      log.warn({ err, sha256: a.sha256 }, 'previous version not restored');
    }
  }

  async function loop(): Promise<void> {
    while (dirty && !closed) {
      dirty = false;
      const d = desired;
      const abort = new AbortController();
      current = abort;
      try {
        await restorePreviousVersion(abort.signal);
        await reconcileActive(d, abort.signal);
        await reconcileShadow(d, abort.signal);
      } catch (err) {
        if (!abort.signal.aborted) log.error({ err }, 'model reconcile failed');
      } finally {
        current = undefined;
      }
      closeUnused();
      const protect = new Set<string>(
        [activeKey, previousKey, shadowKey, desired?.active?.sha256, desired?.shadow?.sha256].filter(
          (k): k is string => typeof k === 'string' && k !== LOCAL,
        ),
      );
      try {
        const removed = await fetcher.prune(keep, protect);
        if (removed.length > 0) log.info({ removed }, 'model cache pruned');
      } catch (err) {
        log.warn({ err }, 'model cache prune failed');
      }
    }
  }

  function kick(): void {
    dirty = true;
    if (!started || closed) return;
    looping ??= loop().finally(() => {
      looping = undefined;
      if (dirty && !closed) kick();
    });
  }

  function applyDesired(d: DesiredMessage): void {
    if (closed || sameDesired(desired, d)) return;
    if (!started) {
      early = d; // applied at the end of start(), after the persisted state
      return;
    }
    desired = d;
    desiredAt = performance.now();
    for (const sha of [...refused.keys()]) if (!named(d, sha)) refused.delete(sha);
    // A download the new state no longer needs stops now (its partial file stays for a resume).
    const downloading = fetcher.downloading;
    if (current && downloading && !named(d, downloading.sha256)) current.abort();
    config.apply(d);
    persist();
    stateChanged();
    kick();
  }

  return {
    async start() {
      if (started) return;
      await fetcher.open();
      const saved = await readModelState(opts.dataDir, (reason) => log.warn({ reason }, 'model state file ignored'));
      if (saved) {
        desired = saved.desired;
        for (const r of saved.refused) {
          // Refusals by the edge's own config (keys, origins, plug-ins) are retried: a restart may have changed it.
          if (!CONFIG_REFUSALS.has(r.code) && named(desired, r.sha256)) refused.set(r.sha256, r);
        }
        if (desired) config.apply(desired, true);
        const a = saved.active;
        if (a && !refused.has(a.sha256) && (await fetcher.has(a.sha256))) {
          const abort = new AbortController();
          try {
            const entry = await ensureLoaded(a, 'active', abort.signal);
            entry.proven = saved.activeProven;
            activate(entry, 'restored');
          } catch (err) {
            refuse(a, 'active', toOspreyError(err, 'OSP_ERR_MODEL_LOAD'));
          }
        }
        if (saved.previous && saved.previous !== 'local') restorePrevious = saved.previous;
        log.info({ configVersion: desired?.configVersion ?? null, active: refOf(activeKey), refused: refused.size }, 'model state restored');
      }
      started = true;
      kick();
      if (early) applyDesired(early);
      early = undefined;
    },
    applyDesired,
    observeResult(record) {
      for (const { role, event } of eventsOfResult(record, probation, isModelFault)) countProbation(role, event);
    },
    observeFailure(err, model) {
      const a = probation.active;
      if (a && model === a.id && isModelFault(err.code)) countProbation('active', { ok: false, code: err.code });
    },
    state() {
      const out: ModelManagerState = {
        active: refOf(activeKey),
        previous: previousKey !== null ? refOf(previousKey) : null,
        shadow: shadowKey !== null ? refOf(shadowKey) : null,
        errors: [...refused.values()].slice(-50).map((r) => `${r.name}@${r.version} ${r.sha256}: ${r.code}: ${r.reason}`),
      };
      if (config.version !== undefined) out.configVersion = config.version;
      return out;
    },
    status() {
      return {
        desiredConfigVersion: desired?.configVersion ?? null,
        downloading: fetcher.downloading ? { ...fetcher.downloading } : null,
        refused: [...refused.values()],
        loaded: [...loaded.values()].map((e) => e.runner.id),
        probation: [probation.active, probation.shadow]
          .filter((p): p is ProbationState => p !== undefined)
          .map((p) => ({ model: p.id, role: p.role, frames: p.frames, errors: p.errors })),
      };
    },
    serving() {
      const out: ServingModel[] = [];
      for (const [role, key] of [['active', activeKey], ['shadow', shadowKey]] as const) {
        const entry = key !== null ? loaded.get(key) : undefined;
        if (entry) out.push({ role, ref: refOf(entry.key), runner: entry.runner, ...(entry.dir !== undefined && { dir: entry.dir }) });
      }
      return out;
    },
    get settings() {
      return config.settings;
    },
    async idle() {
      while (looping) await looping;
    },
    async close() {
      if (closed) return;
      closed = true;
      current?.abort();
      await looping?.catch(() => undefined);
      await writer.flushed();
      const closing: Promise<unknown>[] = [];
      for (const entry of loaded.values()) {
        if (!entry.owned) continue;
        closing.push(entry.runner.close().catch((err: unknown) => log.warn({ err, model: entry.runner.id }, 'model close failed')));
      }
      loaded.clear();
      await Promise.all(closing);
    },
  };
}
