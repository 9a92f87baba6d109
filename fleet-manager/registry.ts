/**
 * The model registry: validates an uploaded package (manifest, checksums, and the model run once
 * in a bounded child process), checks the publisher's signature that came with it, stores its
 * canonical archive content-addressed on disk (`artifacts/ab/abcdef…`) and records the version
 * with that signature. Only when `requirePublisherSignature` is off does an unsigned upload get
 * signed here, with the fleet key (key id `fleet`). Versions are immutable: the same package
 * again is a no-op, a different one under an existing version is refused.
 */
import { mkdirSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { parseManifest } from '../models/manifest-check.js';
import { MANIFEST_FILE } from '../models/package-reader.js';
import type { KeyObject } from 'node:crypto';
import { createHash, createPublicKey, verify } from 'node:crypto';
import { FLEET_KEY_ID, signArtifact, verifyTrusted, type ArtifactIdentity } from '../models/artifact-signature.js';
import { checkModelInChild } from '../models/model-check.js';
import { parsePackageSignature, signedIdentity, SIGNATURE_FILE } from '../models/package-signature.js';
import { OspreyError, safeLine } from '../protocol/errors.js';
import { blobBytes, blobPath, moveIntoBlob, writeBlobFrom } from './blob-files.js';
import { ensureLocal } from './blob-cache.js';
import { FILES_ONLY_BLOBS, type BlobStore } from './blob-store.js';
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
  /** Refuse uploads without a valid publisher signature (registry.requirePublisherSignature; default true). */
  requirePublisherSignature?: boolean;
  /** Publisher keys by id an upload's signature.json may name (registry.publisherKeys). */
  publisherKeys?: ReadonlyMap<string, KeyObject>;
  /**
   * Sign packages the fleet packed from an uploaded ONNX file (the console's pack wizard) with the
   * fleet key when they come without a publisher signature (registry.allowFleetPacked; default
   * false: such a package needs a publisher's signature.json like any upload).
   */
  allowFleetPacked?: boolean;
  /** Bounds of the child process that runs each uploaded model once (registry.checkTimeoutMs / checkMaxRssBytes). */
  check?: { timeoutMs?: number; maxRssBytes?: number };
  /** Where each artifact's bytes are also stored before its version row (the storage's; files only by default). */
  blobs?: BlobStore;
}

export interface AddVersionResult {
  record: ModelVersionRecord;
  /** False when exactly this package was already registered under this version. */
  created: boolean;
}

export interface Registry {
  /** Validates, stores, signs and records a package as a version of `name`. */
  addVersion(name: string, upload: PackageUpload, opts?: { uploadedBy?: string }): Promise<AddVersionResult>;
  /**
   * The fleet's own artifact: a package a fleet training job wrote to `dir`. Checked like an
   * upload (manifest, checksums, the model run in a child) but signed with the fleet key instead
   * of needing a publisher signature, and recorded with its provenance (`trainedBy`
   * `training-job:ID`, `uploadedBy` the user who started the job). Not reachable from any upload
   * route (docs/SECURITY.md "Models are code").
   */
  addTrainedVersion(name: string, dir: string, provenance: { jobId: string; user: string }): Promise<AddVersionResult>;
  /**
   * A package the fleet packed in `dir` from an ONNX file a user uploaded (the pack wizard). With
   * a publisher's signature.json in `dir` it is checked like any upload; without one it is
   * refused (OSP_ERR_MODEL_SIGNATURE, naming the sha256 to sign) unless allowFleetPacked is on,
   * then signed with the fleet key and recorded with `trainedBy` `fleet-pack:SOURCE`
   * (docs/SECURITY.md "Models the fleet packed").
   */
  addPackedVersion(name: string, dir: string, provenance: { user: string; source: string }): Promise<AddVersionResult>;
  /**
   * Re-signs the versions the fleet key signed in the v1 statement format (before issue 14:
   * name, version and sha256 only) with the current one, so an upgrade keeps them deployable to
   * edges that trust the fleet key. Returns how many were re-signed.
   */
  resignLegacy(): Promise<number>;
  /**
   * The artifact's archive on this instance's disk, fetched from the blob store first when
   * missing (another instance stored it); OSP_ERR_NOT_FOUND when neither has it.
   */
  localArtifact(sha256: string): Promise<string>;
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
  const blobs = opts.blobs ?? FILES_ONLY_BLOBS;
  const maxBytes = opts.maxBytes ?? Infinity;
  const requireSigned = opts.requirePublisherSignature ?? true;
  const publisherKeys = opts.publisherKeys ?? new Map<string, KeyObject>();
  const allowFleetPacked = opts.allowFleetPacked ?? false;
  mkdirSync(root, { recursive: true });
  const uploadDir = join(opts.dataDir, 'uploads');
  prepareUploadDir(uploadDir);
  // Artifacts are never deleted yet, so the sum only grows from what is on disk now.
  let used = blobBytes(root);

  async function add(name: string, upload: PackageUpload, uploadedBy: string | null, trainedBy: string | null = null): Promise<AddVersionResult> {
    const source = 'files' in upload ? directorySource(upload.files) : await archiveFileSource(upload.archiveFile.file);
    const manifest = await checkPackage(name, source);
    // Canonical: the same package has one sha256 however it was tarred or uploaded.
    const { sha256, size } = await canonicalDigest(source);
    const identity: ArtifactIdentity = { name, version: manifest.version, sha256, size, pluginSha256: manifest.postprocess?.sha256 ?? null };
    // Only addTrainedVersion passes trainedBy: the fleet signs what it made itself.
    const signed = trainedBy !== null ? { signature: signArtifact(identity, keys.privateKey), keyId: FLEET_KEY_ID } : await signatureOf(source, identity);
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
    // Last of the checks, as the dearest: the model must load and compute, not merely hash right.
    await checkModelInChild({ ...source.location(manifest.model.file), manifest, ...opts.check });
    // An upload that is already the canonical archive is moved into place, not copied.
    if ('archiveFile' in upload && upload.archiveFile.sha256 === sha256) await moveIntoBlob(root, sha256, upload.archiveFile.file);
    else await writeBlobFrom(root, sha256, source.canonical());
    // The bytes where every instance finds them, committed before the row that names them.
    await blobs.put('artifacts', sha256, artifactPath(sha256));
    if (!stored) used += size;
    const record: ModelVersionRecord = {
      name,
      version: manifest.version,
      sha256,
      size,
      ...signed,
      manifest,
      createdAt: now(),
      uploadedBy,
      trainedBy,
    };
    if (!(await store.insertVersion(record))) {
      throw new OspreyError('OSP_ERR_CONFLICT', `${name}@${manifest.version} or an identical package is already registered`);
    }
    log.info({ model: name, version: manifest.version, sha256, size, keyId: record.keyId, uploadedBy, trainedBy, plugin: identity.pluginSha256 !== null }, 'model version registered');
    return { record, created: true };
  }

  /**
   * The signature the version is recorded with: the publisher's from the upload's signature.json,
   * checked against this very package and a key in publisherKeys; else, only when signatures are
   * not required, the fleet key's. OSP_ERR_MODEL_SIGNATURE (422) otherwise.
   */
  async function signatureOf(source: PackageSource, identity: ArtifactIdentity): Promise<{ signature: string; keyId: string }> {
    const bytes = await source.signatureBytes();
    if (!bytes) {
      if (requireSigned) {
        throw new OspreyError(
          'OSP_ERR_MODEL_SIGNATURE',
          `${identity.name}@${identity.version} (sha256 ${identity.sha256}) is not signed: upload it with the ${SIGNATURE_FILE} of \`osprey model sign\` (registry.requirePublisherSignature is on)`,
        );
      }
      return { signature: signArtifact(identity, keys.privateKey), keyId: FLEET_KEY_ID };
    }
    const s = parsePackageSignature(bytes);
    const stated = signedIdentity(s);
    for (const field of ['name', 'version', 'sha256', 'size', 'pluginSha256'] as const) {
      if (stated[field] !== identity[field]) {
        throw new OspreyError(
          'OSP_ERR_MODEL_SIGNATURE',
          `${SIGNATURE_FILE} ${field} is ${String(stated[field])} but the uploaded package's is ${String(identity[field])}: it signs another package`,
        );
      }
    }
    verifyTrusted(identity, s.signature, s.keyId, publisherKeys, 'registry.publisherKeys');
    return { signature: s.signature, keyId: s.keyId };
  }

  async function resignLegacy(): Promise<number> {
    const fleetKey = createPublicKey(keys.privateKey);
    let count = 0;
    for (const rec of await store.listFleetSignedVersions()) {
      const identity: ArtifactIdentity = { name: rec.name, version: rec.version, sha256: rec.sha256, size: rec.size, pluginSha256: rec.manifest.postprocess?.sha256 ?? null };
      // Only what this very key signed in the v1 format: a row edited in the database is never signed anew.
      if (!signedV1(rec, fleetKey)) continue;
      await store.setVersionSignature(rec.sha256, signArtifact(identity, keys.privateKey), FLEET_KEY_ID);
      count++;
    }
    if (count > 0) log.info({ versions: count }, 'fleet-signed versions re-signed in the current statement format');
    return count;
  }

  return {
    resignLegacy,
    publicKeyPem: keys.publicKeyPem,
    localArtifact: (sha256) => ensureLocal(blobs, 'artifacts', artifactPath(sha256), sha256),
    uploadDir,
    addVersion(name, upload, opts = {}) {
      const result = tail.then(() => add(name, upload, opts.uploadedBy ?? null));
      tail = result.catch(() => undefined);
      return result;
    },
    async addTrainedVersion(name, dir, provenance) {
      const files = await filesOf(dir);
      const result = tail.then(() => add(name, { files }, provenance.user, `training-job:${provenance.jobId}`));
      tail = result.catch(() => undefined);
      return result;
    },
    async addPackedVersion(name, dir, provenance) {
      const files = await filesOf(dir, true);
      const fleetSigns = allowFleetPacked && !files.files.has(SIGNATURE_FILE);
      const result = tail.then(() => add(name, { files }, provenance.user, fleetSigns ? `fleet-pack:${provenance.source}` : null));
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
        keyId: rec.keyId,
        ...(rec.manifest.postprocess ? { pluginSha256: rec.manifest.postprocess.sha256 } : {}),
      };
    },
  };
}

/** A package folder as the multipart upload form describes it (sizes and sha256 of each file). */
async function filesOf(dir: string, keepSignature = false): Promise<ReceivedFiles> {
  const files = new Map<string, { size: number; sha256: string }>();
  for (const name of await readdir(dir)) {
    if (name === SIGNATURE_FILE && !keepSignature) continue; // the fleet signs it; a stray signature.json is not the package's
    const bytes = await readFile(join(dir, name));
    files.set(name, { size: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });
  }
  return { dir, files };
}

/** Whether `rec.signature` is `key`'s signature of the pre-issue-14 statement (name, version, sha256). */
function signedV1(rec: ModelVersionRecord, key: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(`osprey-artifact/v1\n${rec.name}\n${rec.version}\n${rec.sha256}`, 'utf8'), key, Buffer.from(rec.signature, 'base64'));
  } catch {
    return false;
  }
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
