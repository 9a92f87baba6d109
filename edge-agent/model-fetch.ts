/**
 * Artifact fetching for the model manager: before a byte is fetched, the signature is checked
 * against the edge's trusted keys (the statement covers name, version, sha256, size and the
 * plug-in's hash), the URL against the edge's fleet origin(s), and a plug-in against
 * model.allowPlugins; then the content-addressed cache (artifact-cache.ts) or a download with resume and
 * backoff (artifact-download.ts), checked against the desired sha256, extracted, and loaded.
 * Knows nothing of slots, probation or desired state.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { OspreyError, isOspreyError, oneLine, type ErrorCode } from '../protocol/errors.js';
import type { EventMessage, ModelArtifact } from '../protocol/messages.js';
import { artifactIdentity, FLEET_KEY_ID, verifyTrusted } from '../models/artifact-signature.js';
import { readManifest } from '../models/package-reader.js';
import type { ModelRunner } from '../models/types.js';
import { openArtifactCache, type ArtifactCache } from './artifact-cache.js';
import { downloadArtifact } from './artifact-download.js';
import type { ModelRole } from './model-probation.js';

/** Where model and config events go (the fleet link). */
export type ModelEventSink = (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data: Record<string, unknown>) => void;

export interface DownloadOptions {
  dispatcher?: Dispatcher;
  attemptTimeoutMs?: number;
  idleTimeoutMs?: number;
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Free bytes the disk keeps: a download that would take it lower is refused (disk-space.ts). */
  minFreeBytes?: number;
  /** Base for artifact URLs that are relative (the fleet's HTTP URL); its origin may be downloaded from. */
  baseUrl?: string;
  /** Headers a download from `url` carries (the edge credential, to the fleet's origin only). */
  authHeaders?: (url: string) => Record<string, string>;
  /** Further origins artifacts may be downloaded from (fleet.artifactOrigins); any other URL is refused unfetched. */
  origins?: readonly string[];
}

export interface Downloading {
  name: string;
  version: string;
  sha256: string;
  role: ModelRole;
  failedAttempts: number;
  lastError?: string;
}

export interface ArtifactFetcherOptions {
  /** The cache lives in `dataDir/models`. */
  dataDir: string;
  /** The fleet's Ed25519 public key (PEM): the trusted key "fleet". */
  publicKey?: string;
  /** Trusted keys by id (fleet.trustedKeys); none at all: every artifact is refused (OSP_ERR_MODEL_SIGNATURE). */
  trustedKeys?: ReadonlyMap<string, KeyObject>;
  /** Packages with a plug-in are refused unfetched unless true (model.allowPlugins). */
  allowPlugins?: boolean;
  loadModel(dir: string): Promise<ModelRunner>;
  download?: DownloadOptions;
  logger: Logger;
}

export interface ArtifactFetcher {
  /** Opens (creating) the cache. */
  open(): Promise<void>;
  /**
   * Throws unless this artifact may be fetched at all: OSP_ERR_MODEL_SIGNATURE (not signed by a
   * trusted key), OSP_ERR_MODEL_ORIGIN (URL outside the fleet origins), OSP_ERR_MODEL_PLUGIN
   * (a plug-in on an edge that does not allow them).
   */
  verify(a: ModelArtifact): void;
  /** The package in the cache, or downloaded and installed there, loaded; its runner reports `name@version`. */
  fetch(a: ModelArtifact, role: ModelRole, signal: AbortSignal): Promise<ModelRunner>;
  /** True when the package is in the cache. */
  has(sha256: string): Promise<boolean>;
  /** Where the package of this archive is extracted in the cache. */
  packageDir(sha256: string): string;
  /** Keeps at most `keep` packages, `protect` always among them; returns what was removed. */
  prune(keep: number, protect: ReadonlySet<string>): Promise<string[]>;
  /** The download in progress, with failed attempts so far. */
  readonly downloading: Downloading | null;
}

/** Wraps anything thrown into an OspreyError with `code` (an OspreyError is kept as is). */
export function toOspreyError(err: unknown, code: ErrorCode): OspreyError {
  return isOspreyError(err) ? err : new OspreyError(code, oneLine(err), { cause: err });
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

/** Creates the fetcher; throws OSP_ERR_CONFIG for a public key that does not parse. */
export function createArtifactFetcher(opts: ArtifactFetcherOptions): ArtifactFetcher {
  const log = opts.logger;
  const dl = opts.download ?? {};
  // Parsed once: a rollback's signature check then costs a few microseconds.
  const trusted = new Map<string, KeyObject>(opts.trustedKeys ?? []);
  try {
    if (opts.publicKey) trusted.set(FLEET_KEY_ID, createPublicKey(opts.publicKey));
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `fleet public key: ${oneLine(err)}`, { cause: err });
  }
  const origins = new Set<string>();
  for (const u of [...(dl.baseUrl ? [dl.baseUrl] : []), ...(dl.origins ?? [])]) {
    try {
      origins.add(new URL(u).origin);
    } catch (err) {
      throw new OspreyError('OSP_ERR_CONFIG', `artifact origin "${u}" is not a URL`, { cause: err });
    }
  }
  let cache: ArtifactCache | undefined;
  let downloading: Downloading | null = null;

  const opened = (): ArtifactCache => {
    if (!cache) throw new Error('artifact fetcher not opened');
    return cache;
  };

  function artifactUrl(a: ModelArtifact): string {
    try {
      return new URL(a.url, dl.baseUrl).toString();
    } catch (err) {
      throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `artifact URL "${a.url}" is not absolute and no fleet.httpUrl is configured`, { cause: err });
    }
  }

  async function download(c: ArtifactCache, a: ModelArtifact, role: ModelRole, signal: AbortSignal): Promise<void> {
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
        ...(dl.dispatcher ? { dispatcher: dl.dispatcher } : {}),
        ...(dl.attemptTimeoutMs !== undefined ? { attemptTimeoutMs: dl.attemptTimeoutMs } : {}),
        ...(dl.idleTimeoutMs !== undefined ? { idleTimeoutMs: dl.idleTimeoutMs } : {}),
        ...(dl.retryBaseMs !== undefined ? { retryBaseMs: dl.retryBaseMs } : {}),
        ...(dl.retryMaxMs !== undefined ? { retryMaxMs: dl.retryMaxMs } : {}),
        ...(dl.minFreeBytes !== undefined ? { minFreeBytes: dl.minFreeBytes } : {}),
        ...(dl.authHeaders ? { headers: dl.authHeaders(url) } : {}),
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

  return {
    async open() {
      cache ??= await openArtifactCache(path.join(opts.dataDir, 'models'));
    },
    verify(a) {
      const id = `${a.name}@${a.version}`;
      if (trusted.size === 0) {
        throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${id}: no trusted key configured (fleet.publicKey, fleet.trustedKeys)`);
      }
      verifyTrusted(artifactIdentity(a), a.signature, a.keyId ?? FLEET_KEY_ID, trusted, 'fleet.trustedKeys');
      const origin = new URL(artifactUrl(a)).origin;
      if (!origins.has(origin)) {
        throw new OspreyError(
          'OSP_ERR_MODEL_ORIGIN',
          `${id}: artifact URL origin ${origin} is not a fleet origin (allowed: ${[...origins].join(', ') || 'none'}; fleet.httpUrl, fleet.artifactOrigins); nothing fetched`,
        );
      }
      if (a.pluginSha256 !== undefined && opts.allowPlugins !== true) {
        throw new OspreyError('OSP_ERR_MODEL_PLUGIN', `${id} has a plug-in (code) and this edge does not allow plug-ins (model.allowPlugins); current model kept`);
      }
    },
    async fetch(a, role, signal) {
      const c = opened();
      if (!(await c.has(a.sha256))) await download(c, a, role, signal);
      await c.touch(a.sha256);
      signal.throwIfAborted();
      const t0 = performance.now();
      let runner: ModelRunner;
      try {
        // The signed statement names the plug-in (or none); the package must agree before anything of it is imported.
        const manifest = await readManifest(c.packageDir(a.sha256));
        if ((manifest.postprocess?.sha256 ?? null) !== (a.pluginSha256 ?? null)) {
          throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${a.name}@${a.version}: the package's plug-in is not the one its signature names`);
        }
        runner = await opts.loadModel(c.packageDir(a.sha256));
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
      log.info({ model: id, sha256: a.sha256, role, ms: Math.round(performance.now() - t0) }, 'model loaded');
      return runner;
    },
    packageDir(sha256) {
      return opened().packageDir(sha256);
    },
    has(sha256) {
      return opened().has(sha256);
    },
    prune(keep, protect) {
      return opened().prune(keep, protect);
    },
    get downloading() {
      return downloading;
    },
  };
}
