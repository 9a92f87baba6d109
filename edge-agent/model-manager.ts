/**
 * The edge side of rollouts (issue 4): turns the fleet's desired state into the models and
 * thresholds the pipeline uses, and protects the line on its own while doing so.
 *
 * - The last desired state is persisted (model-state.json) and acted on at start-up, offline
 *   and across restarts; the fleet's retained message brings the newest one on every connect.
 * - Artifacts are checked against the fleet's signature before a byte is fetched, downloaded
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
 * One manager per edge and no module state: a simulator can run many in one process.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { OspreyError, isOspreyError, oneLine, type ErrorCode } from '../protocol/errors.js';
import type { DesiredMessage, EdgeSettings, EventMessage, ModelArtifact, ModelRef, ResultRecord, Thresholds } from '../protocol/messages.js';
import { verifyArtifact } from '../models/artifact-signature.js';
import { loadModelPackage } from '../models/package.js';
import type { ModelRunner } from '../models/types.js';
import { openArtifactCache, type ArtifactCache } from './artifact-cache.js';
import { downloadArtifact } from './artifact-download.js';
import { readModelState, writeModelState, type PersistedModelState, type Refusal } from './model-state-file.js';

/** What the manager drives: the pipeline, or anything shaped like it (a simulator's fake line). */
export interface ModelSlots {
  setModel(runner: ModelRunner): ModelRunner;
  setShadow(runner: ModelRunner | undefined): ModelRunner | undefined;
  setThresholds(thresholds: Thresholds | undefined): void;
}

export type ModelRole = 'active' | 'shadow';

export interface ModelManagerOptions {
  /** model-state.json and the cache (`models/`) live here. */
  dataDir: string;
  slots: ModelSlots;
  /** The model the pipeline starts with (config `model.dir`): used while the desired state names none. */
  localModel: ModelRunner;
  /** Reloads the local model after the manager closed it; absent: the local model is never closed. */
  loadLocalModel?: () => Promise<ModelRunner>;
  /** Thresholds from the edge's own config, used while the desired config has none. */
  localThresholds?: Thresholds;
  /** The fleet's Ed25519 public key (PEM). Absent: every artifact is refused (OSP_ERR_MODEL_SIGNATURE). */
  publicKey?: string;
  /** Loads a package directory (default: loadModelPackage with one intra-op thread and `maxPixels`). */
  loadModel?: (dir: string) => Promise<ModelRunner>;
  maxPixels?: number;
  /** Packages kept on disk, active/previous/shadow included (default 3; those three are never deleted). */
  cacheVersions?: number;
  /** First frames of a new model watched for model errors (default 20). */
  probationFrames?: number;
  /** Model errors among them that revert an active model or drop a shadow (default 3). */
  probationErrors?: number;
  download?: {
    dispatcher?: Dispatcher;
    attemptTimeoutMs?: number;
    idleTimeoutMs?: number;
    retryBaseMs?: number;
    retryMaxMs?: number;
    /** Free bytes the disk keeps: a download that would take it lower is refused (disk-space.ts). */
    minFreeBytes?: number;
    /** Base for artifact URLs that are relative (the fleet's HTTP URL). */
    baseUrl?: string;
  };
  logger: Logger;
  /** Model and config events for the fleet (model-activated, model-failed, model-rolled-back, config-applied). */
  onEvent?: (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>) => void;
  /** The reported state changed (publish it). */
  onStateChange?: () => void;
  /** A desired config was applied (thresholds are already in the slots; sampling is for the caller). */
  onConfigApplied?: (settings: EdgeSettings, configVersion: number) => void;
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
  downloading: { name: string; version: string; sha256: string; role: ModelRole; failedAttempts: number; lastError?: string } | null;
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
}

interface Probation {
  key: string;
  id: string;
  role: ModelRole;
  frames: number;
  errors: number;
  lastCode?: string;
}

/** A runner reporting `id` instead of its manifest's name@version. */
function withId(runner: ModelRunner, id: string): ModelRunner {
  return {
    manifest: runner.manifest,
    id,
    inspect: (image, options) => runner.inspect(image, options),
    close: () => runner.close(),
  };
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

function toOspreyError(err: unknown, code: ErrorCode): OspreyError {
  return isOspreyError(err) ? err : new OspreyError(code, oneLine(err), { cause: err });
}

/** Creates a manager; nothing happens until start(). */
export function createModelManager(opts: ModelManagerOptions): ModelManager {
  const log = opts.logger;
  const keep = opts.cacheVersions ?? 3;
  const probationFrames = opts.probationFrames ?? 20;
  const probationErrors = opts.probationErrors ?? 3;
  // Parsed once: a rollback's signature check then costs a few microseconds.
  let fleetKey: KeyObject | undefined;
  try {
    fleetKey = opts.publicKey ? createPublicKey(opts.publicKey) : undefined;
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `fleet public key: ${oneLine(err)}`, { cause: err });
  }
  const loadModel = opts.loadModel ?? ((dir: string) => loadModelPackage(dir, { ...(opts.maxPixels ? { maxPixels: opts.maxPixels } : {}) }));

  // The local model is the manager's to close only when it can load it again.
  const loaded = new Map<string, Loaded>([[LOCAL, { key: LOCAL, runner: opts.localModel, owned: opts.loadLocalModel !== undefined, proven: true }]]);
  let activeKey = LOCAL;
  let previousKey: string | null = null;
  let shadowKey: string | null = null;
  let desired: DesiredMessage | null = null;
  const refused = new Map<string, Refusal>();
  const probation: { active?: Probation; shadow?: Probation } = {};
  let appliedConfigVersion: number | undefined;
  let settings: EdgeSettings | undefined;
  let cache: ArtifactCache | undefined;
  let restorePrevious: ModelArtifact | undefined;

  let dirty = false;
  let looping: Promise<void> | undefined;
  // Aborts the reconcile pass in progress (its download; a model load cannot be interrupted).
  let current: AbortController | undefined;
  let early: DesiredMessage | undefined;
  // When the newest desired state arrived (performance.now()), to report how long acting on it took.
  let desiredAt = 0;
  let downloading: ModelManagerStatus['downloading'] = null;
  let writes: Promise<void> = Promise.resolve();
  let started = false;
  let closed = false;

  function emit(kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>): void {
    try {
      opts.onEvent?.(kind, level, message, data);
    } catch (err) {
      log.error({ err, kind }, 'event hook threw');
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
    writes = writes
      .then(() => writeModelState(opts.dataDir, snapshot()))
      .catch((err: unknown) => log.error({ err }, 'cannot persist model state'));
  }

  function applyConfig(d: DesiredMessage, quiet = false): void {
    const changed = d.configVersion !== appliedConfigVersion || JSON.stringify(d.config) !== JSON.stringify(settings);
    if (!changed) return;
    // The fleet's effective config replaces the file's thresholds when it has any.
    const thresholds = d.config.thresholds ?? opts.localThresholds;
    opts.slots.setThresholds(thresholds);
    appliedConfigVersion = d.configVersion;
    settings = d.config;
    log.info({ configVersion: d.configVersion }, 'config applied');
    if (!quiet) emit('config-applied', 'info', `config version ${d.configVersion} applied`, { configVersion: d.configVersion, thresholds: thresholds ?? null });
    try {
      opts.onConfigApplied?.(d.config, d.configVersion);
    } catch (err) {
      log.error({ err }, 'config hook threw');
    }
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

  function startProbation(role: ModelRole, entry: Loaded): void {
    if (entry.proven) {
      delete probation[role];
      return;
    }
    probation[role] = { key: entry.key, id: entry.runner.id, role, frames: 0, errors: 0 };
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
    const entry: Loaded = { key: LOCAL, runner, owned: true, proven: true };
    loaded.set(LOCAL, entry);
    return entry;
  }

  function artifactUrl(a: ModelArtifact): string {
    try {
      return new URL(a.url, opts.download?.baseUrl).toString();
    } catch (err) {
      throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `artifact URL "${a.url}" is not absolute and no fleet.httpUrl is configured`, { cause: err });
    }
  }

  /** Signature first (no byte is fetched for an artifact the fleet did not sign), then cache or download, then load. */
  async function ensureLoaded(a: ModelArtifact, role: ModelRole, signal: AbortSignal): Promise<Loaded> {
    if (!fleetKey) {
      throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${a.name}@${a.version}: no fleet public key configured (fleet.publicKey)`);
    }
    verifyArtifact(a, a.signature, fleetKey);
    const have = ready(a.sha256);
    if (have) return have;
    const c = cache!;
    if (!(await c.has(a.sha256))) {
      const url = artifactUrl(a);
      downloading = { name: a.name, version: a.version, sha256: a.sha256, role, failedAttempts: 0 };
      try {
        await downloadArtifact({
          url,
          sha256: a.sha256,
          size: a.size,
          file: c.partFile(a.sha256),
          signal,
          logger: log,
          ...(opts.download?.dispatcher ? { dispatcher: opts.download.dispatcher } : {}),
          ...(opts.download?.attemptTimeoutMs !== undefined ? { attemptTimeoutMs: opts.download.attemptTimeoutMs } : {}),
          ...(opts.download?.idleTimeoutMs !== undefined ? { idleTimeoutMs: opts.download.idleTimeoutMs } : {}),
          ...(opts.download?.retryBaseMs !== undefined ? { retryBaseMs: opts.download.retryBaseMs } : {}),
          ...(opts.download?.retryMaxMs !== undefined ? { retryMaxMs: opts.download.retryMaxMs } : {}),
          ...(opts.download?.minFreeBytes !== undefined ? { minFreeBytes: opts.download.minFreeBytes } : {}),
          onAttemptFailed: ({ attempt, err }) => {
            if (downloading) {
              downloading.failedAttempts = attempt;
              downloading.lastError = `${err.code}: ${oneLine(err)}`;
            }
          },
        });
      } finally {
        downloading = null;
      }
      signal.throwIfAborted();
      try {
        await c.install(a.sha256);
      } catch (err) {
        throw toOspreyError(err, 'OSP_ERR_MODEL_MANIFEST');
      }
    }
    await c.touch(a.sha256);
    signal.throwIfAborted();
    const t0 = performance.now();
    let runner: ModelRunner;
    try {
      runner = await loadModel(c.packageDir(a.sha256));
    } catch (err) {
      // Whether the package is bad or the copy on disk was damaged, a later try starts from a download.
      await c.remove(a.sha256).catch(() => undefined);
      throw err;
    }
    const id = `${a.name}@${a.version}`;
    if (runner.id !== id) {
      // Results are attributed to the version the fleet rolled out, whatever the manifest says.
      log.warn({ manifest: runner.id, artifact: id }, 'package manifest names another version');
      runner = withId(runner, id);
    }
    const entry: Loaded = { key: a.sha256, runner, artifact: a, owned: true, proven: false };
    loaded.set(a.sha256, entry);
    log.info({ model: id, sha256: a.sha256, role, ms: Math.round(performance.now() - t0) }, 'model loaded');
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
    startProbation('active', entry);
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
  }

  /** Local self-protection: the active model failed its probation; back to the previous version. */
  function revertActive(p: Probation): void {
    const bad = loaded.get(p.key);
    delete probation.active;
    if (!bad?.artifact || activeKey !== p.key) return;
    const artifact = bad.artifact;
    const err = new OspreyError(
      'OSP_ERR_MODEL_PROBATION',
      `${p.errors} of its first ${p.frames + p.errors} frames failed (last ${p.lastCode ?? 'error'})`,
    );
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

  function dropShadow(p: Probation): void {
    const bad = loaded.get(p.key);
    delete probation.shadow;
    if (!bad?.artifact || shadowKey !== p.key) return;
    opts.slots.setShadow(undefined);
    shadowKey = null;
    refuse(bad.artifact, 'shadow', new OspreyError('OSP_ERR_MODEL_PROBATION', `shadow: ${p.errors} of its first ${p.frames + p.errors} frames failed (last ${p.lastCode ?? 'error'})`));
    closeUnused();
  }

  function countProbation(role: ModelRole, ok: boolean, code?: string): void {
    const p = probation[role];
    if (!p) return;
    if (ok) p.frames++;
    else {
      p.errors++;
      p.lastCode = code;
    }
    if (p.errors >= probationErrors) {
      if (role === 'active') revertActive(p);
      else dropShadow(p);
    } else if (p.frames + p.errors >= probationFrames) {
      const entry = loaded.get(p.key);
      if (entry) entry.proven = true;
      delete probation[role];
      log.info({ model: p.id, role, frames: p.frames, errors: p.errors }, 'model passed probation');
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
    startProbation('shadow', entry);
    const ref = refOf(entry.key);
    emit('model-activated', 'info', `${ref.name}@${ref.version} running in shadow`, { ...ref, role: 'shadow' });
    stateChanged();
  }

  /** Loads the previous version remembered from before a restart, so a rollback stays a switch. */
  async function restorePreviousVersion(signal: AbortSignal): Promise<void> {
    const a = restorePrevious;
    restorePrevious = undefined;
    if (!a || a.sha256 === activeKey || refused.has(a.sha256) || !(await cache!.has(a.sha256))) return;
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
        const removed = await cache!.prune(keep, protect);
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
    if (current && downloading && !named(d, downloading.sha256)) current.abort();
    applyConfig(d);
    persist();
    stateChanged();
    kick();
  }

  return {
    async start() {
      if (started) return;
      cache = await openArtifactCache(path.join(opts.dataDir, 'models'));
      const saved = await readModelState(opts.dataDir, (reason) => log.warn({ reason }, 'model state file ignored'));
      if (saved) {
        desired = saved.desired;
        for (const r of saved.refused) {
          // A signature refusal may come from the key in the config, which a restart may have fixed.
          if (r.code !== 'OSP_ERR_MODEL_SIGNATURE' && named(desired, r.sha256)) refused.set(r.sha256, r);
        }
        if (desired) applyConfig(desired, true);
        const a = saved.active;
        if (a && !refused.has(a.sha256) && (await cache.has(a.sha256))) {
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
      const a = probation.active;
      if (a && record.model === a.id) countProbation('active', true);
      const s = probation.shadow;
      if (s && record.shadow?.model === s.id) {
        const code = record.shadow.error;
        if (code === undefined) countProbation('shadow', true);
        else if (isModelFault(code)) countProbation('shadow', false, code);
      }
    },
    observeFailure(err, model) {
      const a = probation.active;
      if (a && model === a.id && isModelFault(err.code)) countProbation('active', false, err.code);
    },
    state() {
      const out: ModelManagerState = {
        active: refOf(activeKey),
        previous: previousKey !== null ? refOf(previousKey) : null,
        shadow: shadowKey !== null ? refOf(shadowKey) : null,
        errors: [...refused.values()].slice(-50).map((r) => `${r.name}@${r.version} ${r.sha256}: ${r.code}: ${r.reason}`),
      };
      if (appliedConfigVersion !== undefined) out.configVersion = appliedConfigVersion;
      return out;
    },
    status() {
      return {
        desiredConfigVersion: desired?.configVersion ?? null,
        downloading: downloading ? { ...downloading } : null,
        refused: [...refused.values()],
        loaded: [...loaded.values()].map((e) => e.runner.id),
        probation: [probation.active, probation.shadow]
          .filter((p): p is Probation => p !== undefined)
          .map((p) => ({ model: p.id, role: p.role, frames: p.frames, errors: p.errors })),
      };
    },
    get settings() {
      return settings;
    },
    async idle() {
      while (looping) await looping;
    },
    async close() {
      if (closed) return;
      closed = true;
      current?.abort();
      await looping?.catch(() => undefined);
      await writes;
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
