/**
 * The model registry: validates an uploaded package, stores its canonical archive
 * content-addressed on disk (`artifacts/ab/abcdef…`), signs it with the fleet key and records the
 * version. Versions are immutable: the same package again is a no-op, a different one under an
 * existing version is refused.
 */
import { mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { parseManifest } from '../models/manifest-check.js';
import { MANIFEST_FILE } from '../models/package-reader.js';
import { signArtifact } from '../models/artifact-signature.js';
import { OspreyError, safeLine } from '../protocol/errors.js';
import { blobBytes, blobPath, moveIntoBlob, writeBlobFrom } from './blob-files.js';
import { archiveFileSource, canonicalDigest, directorySource, type PackageSource } from './package-source.js';
import type { ReceivedFiles } from './multipart-upload.js';
import { prepareUploadDir, type ReceivedFile } from './upload-file.js';
import type { Manifest } from '../protocol/manifest.js';
import type { ModelArtifact } from '../protocol/messages.js';
import type { ControlStore, ModelVersionRecord } from './control-store.js';
import type { SigningKeys } from './signing-keys.js';

/**
 * A package as uploaded: one archive received to a file (application/x-tar; the registry moves
 * it into place or the caller deletes it) or its files received to a directory (multipart; the
 * caller deletes it).
 */
export type PackageUpload = { archiveFile: ReceivedFile } | { files: ReceivedFiles };

export interface RegistryOptions {
  store: ControlStore;
  /** The fleet's data directory; artifacts go under `artifacts/`. */
  dataDir: string;
  keys: SigningKeys;
  logger: Logger;
  now?: () => number;
  /** Quota of the artifact store in bytes (registry.maxBytes); a package that would pass it is OSP_ERR_QUOTA. */
  maxBytes?: number;
}

export interface AddVersionResult {
  record: ModelVersionRecord;
  /** False when exactly this package was already registered under this version. */
  created: boolean;
}

export interface Registry {
  /** Validates, stores, signs and records a package as a version of `name`. */
  addVersion(name: string, upload: PackageUpload): Promise<AddVersionResult>;
  /** Path of an artifact's archive on disk (whether or not it exists). */
  artifactPath(sha256: string): string;
  /** Where uploads are received before addVersion takes them (beside the artifacts, so a move is a rename). */
  readonly uploadDir: string;
  /** The artifact as desired states name it, downloadable under `baseUrl`. */
  artifact(rec: ModelVersionRecord, baseUrl: string): ModelArtifact;
  readonly publicKeyPem: string;
}

/** Creates the registry over a control store and a data directory. */
export function createRegistry(opts: RegistryOptions): Registry {
  const { store, keys } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const root = join(opts.dataDir, 'artifacts');
  // One upload at a time: two racing uploads of one version must not both pass the immutability check.
  let tail: Promise<unknown> = Promise.resolve();

  const artifactPath = (sha256: string) => blobPath(root, sha256);
  const maxBytes = opts.maxBytes ?? Infinity;
  mkdirSync(root, { recursive: true });
  const uploadDir = join(opts.dataDir, 'uploads');
  prepareUploadDir(uploadDir);
  // Artifacts are never deleted yet, so the sum only grows from what is on disk now.
  let used = blobBytes(root);

  async function add(name: string, upload: PackageUpload): Promise<AddVersionResult> {
    const source = 'files' in upload ? directorySource(upload.files) : await archiveFileSource(upload.archiveFile.file);
    const manifest = await checkPackage(name, source);
    // Canonical: the same package has one sha256 however it was tarred or uploaded.
    const { sha256, size } = await canonicalDigest(source);
    const existing = await store.getVersion(name, manifest.version);
    if (existing) {
      if (existing.sha256 === sha256) return { record: existing, created: false };
      throw new OspreyError(
        'OSP_ERR_CONFLICT',
        `${name}@${manifest.version} already exists with a different package (sha256 ${existing.sha256.slice(0, 12)}…); versions are immutable, upload a new version`,
      );
    }
    const stored = await stat(artifactPath(sha256)).catch(() => undefined);
    if (!stored && used + size > maxBytes) {
      throw new OspreyError('OSP_ERR_QUOTA', `artifact store full: ${used} bytes used + ${size} would exceed registry.maxBytes (${maxBytes})`);
    }
    // An upload that is already the canonical archive is moved into place, not copied.
    if ('archiveFile' in upload && upload.archiveFile.sha256 === sha256) await moveIntoBlob(root, sha256, upload.archiveFile.file);
    else await writeBlobFrom(root, sha256, source.canonical());
    if (!stored) used += size;
    const record: ModelVersionRecord = {
      name,
      version: manifest.version,
      sha256,
      size,
      signature: signArtifact({ name, version: manifest.version, sha256 }, keys.privateKey),
      manifest,
      createdAt: now(),
    };
    if (!(await store.insertVersion(record))) {
      throw new OspreyError('OSP_ERR_CONFLICT', `${name}@${manifest.version} or an identical package is already registered`);
    }
    log.info({ model: name, version: manifest.version, sha256, size }, 'model version registered');
    return { record, created: true };
  }

  return {
    publicKeyPem: keys.publicKeyPem,
    artifactPath,
    uploadDir,
    addVersion(name, upload) {
      const result = tail.then(() => add(name, upload));
      tail = result.catch(() => undefined);
      return result;
    },
    artifact(rec, baseUrl) {
      return {
        name: rec.name,
        version: rec.version,
        sha256: rec.sha256,
        size: rec.size,
        url: `${baseUrl}/api/artifacts/${rec.sha256}`,
        signature: rec.signature,
      };
    },
  };
}

/**
 * What makes a package acceptable: a valid manifest naming this model, and every file it names
 * present with the sha256 it states (model and plug-in), so an edge never receives a package
 * that could not load.
 */
export async function checkPackage(name: string, source: PackageSource): Promise<Manifest> {
  const text = await source.manifestBytes();
  if (!text) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `the package has no ${MANIFEST_FILE} (files: ${[...source.sizes.keys()].join(', ') || 'none'})`);
  let value: unknown;
  try {
    value = JSON.parse(text.toString('utf8'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${MANIFEST_FILE} is not JSON: ${safeLine((err as Error).message, 200)}`, { cause: err });
  }
  const manifest = parseManifest(value, MANIFEST_FILE);
  if (manifest.name !== name) {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `the manifest names model "${manifest.name}", not "${name}"`);
  }
  const named: [string, string, string][] = [['model.file', manifest.model.file, manifest.model.sha256]];
  if (manifest.postprocess) named.push(['postprocess.module', manifest.postprocess.module, manifest.postprocess.sha256]);
  for (const [field, file, expected] of named) {
    if (!source.sizes.has(file)) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${field} "${file}" is not in the package`);
    const actual = await source.sha256(file);
    if (actual !== expected) {
      throw new OspreyError('OSP_ERR_MODEL_CHECKSUM', `${file} has sha256 ${actual} but the manifest says ${expected}`);
    }
  }
  return manifest;
}
