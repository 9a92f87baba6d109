/**
 * Backbones kept in the fleet (issue 15), so plants without internet train too: an uploaded
 * ONNX file is checked by decoding it (models/onnx-inspect.ts), stored content-addressed under
 * `dataDir/backbones/ab/abcdef…` and recorded by name (backbone-store.ts). Training jobs name a
 * backbone; the runner hands its file to `osprey train --backbone`.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { readFile, stat, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Logger } from 'pino';
import { OspreyError, safeLine } from '../protocol/errors.js';
import { blobPath, moveIntoBlob, writeBlob } from './blob-files.js';
import { ensureLocal } from './blob-cache.js';
import { FILES_ONLY_BLOBS, type BlobStore } from './blob-store.js';
import type { BackboneRecord, BackboneStore } from './backbone-store.js';
import { prepareUploadDir } from './upload-file.js';

/** Backbone names: like model names. */
/**
 * Refuses bytes that do not decode as ONNX (one line naming `label`). onnx-proto is loaded here,
 * on the first upload, not when the fleet starts: the daemons load only the runtime part of
 * models/ (test/models/daemon-imports.test.ts).
 */
async function checkOnnx(bytes: Uint8Array, label: string): Promise<void> {
  const { decodeOnnx } = await import('../models/onnx-inspect.js');
  decodeOnnx(bytes, label);
}

export const BACKBONE_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$';
const NAME = new RegExp(BACKBONE_NAME_PATTERN);

export interface Backbones {
  /** Where uploads are received before `add` takes them. */
  readonly uploadDir: string;
  /** Checks the received file is ONNX and records it as `name` (the file is moved or deleted). */
  add(name: string, file: string, uploadedBy: string): Promise<BackboneRecord>;
  list(): Promise<BackboneRecord[]>;
  /** The record and its file, or OSP_ERR_NOT_FOUND naming the backbone. */
  resolve(name: string): Promise<{ record: BackboneRecord; file: string }>;
  /** Deletes the name (and the file when no other name shares it). */
  remove(name: string): Promise<BackboneRecord | null>;
  /**
   * At start: registers the configured default (`training.defaultBackbone`: a name, or a path to
   * an ONNX file or a package folder, registered under its folder or file name) and returns its
   * name; with none configured, registers the SqueezeNet at `$OSPREY_DATA/models/squeezenet-fp16`
   * when OSPREY_DATA is set and the fleet has no backbone yet, and returns null.
   */
  ensureDefault(configured: string | null, ospreyData: string | undefined): Promise<string | null>;
  /** The backbone jobs get when they name none: `configured`, else the oldest in the fleet; null when there is none. */
  defaultName(configured: string | null): Promise<string | null>;
}

/**
 * Opens the backbone registry over its store and the fleet data directory; `blobs` (the
 * storage's; files only by default) keeps each file's bytes too, before its record.
 */
export function createBackbones(opts: { store: BackboneStore; dataDir: string; logger: Logger; now?: () => number; blobs?: BlobStore }): Backbones {
  const root = join(opts.dataDir, 'backbones');
  const uploadDir = join(opts.dataDir, 'backbone-uploads');
  mkdirSync(root, { recursive: true });
  prepareUploadDir(uploadDir);
  const now = opts.now ?? Date.now;
  const log = opts.logger;
  const blobs = opts.blobs ?? FILES_ONLY_BLOBS;

  function checkName(name: string): void {
    if (!NAME.test(name)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `backbone name "${safeLine(name, 80)}" must match ${BACKBONE_NAME_PATTERN}`);
  }

  async function record(name: string, sha256: string, size: number, uploadedBy: string): Promise<BackboneRecord> {
    const rec: BackboneRecord = { name, sha256, size, uploadedBy, createdAt: now() };
    if (!(await opts.store.insert(rec))) {
      const existing = (await opts.store.get(name))!;
      if (existing.sha256 === sha256) return existing;
      throw new OspreyError('OSP_ERR_CONFLICT', `backbone ${name} already exists with another file (sha256 ${existing.sha256.slice(0, 12)}…); delete it first or use another name`);
    }
    log.info({ backbone: name, sha256, size, uploadedBy }, 'backbone registered');
    return rec;
  }

  async function addBytes(name: string, bytes: Buffer, uploadedBy: string, label: string): Promise<BackboneRecord> {
    checkName(name);
    await checkOnnx(bytes, label);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    await writeBlob(root, sha256, bytes);
    await blobs.put('backbones', sha256, bytes);
    return record(name, sha256, bytes.length, uploadedBy);
  }

  return {
    uploadDir,
    async add(name, file, uploadedBy) {
      try {
        checkName(name);
        const bytes = await readFile(file);
        await checkOnnx(bytes, `backbone ${name}`);
        const sha256 = createHash('sha256').update(bytes).digest('hex');
        await moveIntoBlob(root, sha256, file);
        await blobs.put('backbones', sha256, bytes);
        return await record(name, sha256, bytes.length, uploadedBy);
      } finally {
        await unlink(file).catch(() => undefined);
      }
    },
    list: () => opts.store.list(),
    async resolve(name) {
      const rec = await opts.store.get(name);
      if (!rec) throw new OspreyError('OSP_ERR_NOT_FOUND', `backbone ${safeLine(name, 80)} is not in the fleet (GET /api/backbones lists them)`);
      return { record: rec, file: await ensureLocal(blobs, 'backbones', blobPath(root, rec.sha256), rec.sha256) };
    },
    async remove(name) {
      const rec = await opts.store.delete(name);
      if (rec && (await opts.store.countSha(rec.sha256)) === 0) {
        // Other instances' cached copies stay until their own files are cleared (docs/storage.md).
        await blobs.delete('backbones', rec.sha256);
        await unlink(blobPath(root, rec.sha256)).catch(() => undefined);
      }
      return rec;
    },
    async defaultName(configured) {
      if (configured !== null) return configured;
      return (await opts.store.list())[0]?.name ?? null;
    },
    async ensureDefault(configured, ospreyData) {
      let path: string | undefined;
      if (configured !== null) {
        if (NAME.test(configured) && (await opts.store.get(configured))) return configured;
        path = configured;
      } else {
        if ((await opts.store.list()).length > 0 || !ospreyData) return null;
        path = join(ospreyData, 'models', 'squeezenet-fp16');
      }
      const s = await stat(path).catch(() => undefined);
      if (!s) {
        if (configured !== null) throw new OspreyError('OSP_ERR_CONFIG', `training.defaultBackbone ${safeLine(configured, 200)} is neither a backbone in the fleet nor a file`);
        return null;
      }
      const file = s.isDirectory() ? join(path, 'model.onnx') : path;
      const name = basename(path).replace(/\.onnx$/i, '');
      if (!(await opts.store.get(name))) await addBytes(name, await readFile(file), 'fleet', file);
      return configured !== null ? name : null;
    },
  };
}
