/**
 * Reads a model package directory and verifies it: manifest.json valid, model file (and plug-in
 * module, if any) present and matching its sha256. No onnxruntime here, so the fleet manager and `osprey model validate`
 * can use it without loading the model.
 */
import { createHash } from 'node:crypto';
import { open, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { OspreyError, safeLine } from '../protocol/errors.js';
import type { Manifest } from '../protocol/manifest.js';
import { parseManifest } from './manifest-check.js';

export const MANIFEST_FILE = 'manifest.json';

/** sha256 of bytes, lowercase hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * sha256 (hex) of a file, read through one 1 MiB buffer: neither a buffer the size of the file
 * nor a stream's garbage chunk per 64 KiB (a 47 MB model left 30 MB of them for the GC).
 */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  const handle = await open(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(1024 * 1024);
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, chunk.length, null);
      if (bytesRead === 0) break;
      hash.update(chunk.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** Reads and validates `dir/manifest.json`. Throws OSP_ERR_MODEL_MANIFEST. */
export async function readManifest(dir: string): Promise<Manifest> {
  const file = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message;
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `cannot read ${file}: ${why}`, { cause: err });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${file} is not JSON: ${safeLine((err as Error).message, 200)}`, { cause: err });
  }
  return parseManifest(value, file);
}

/**
 * Reads the package's model file and checks it against the manifest's sha256. The bytes are
 * returned so the session is created from exactly what was hashed (no re-read in between).
 */
export async function readVerifiedModel(dir: string, manifest: Manifest): Promise<Uint8Array> {
  const file = join(dir, manifest.model.file);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw unreadableModel(file, err);
  }
  checkModelSha(file, sha256Hex(bytes), manifest);
  return bytes;
}

/**
 * The same check as readVerifiedModel, streamed: for a caller that hands onnxruntime a file
 * derived from the model rather than its bytes. Returns the model's path and size.
 */
export async function verifyModelFile(dir: string, manifest: Manifest): Promise<{ file: string; size: number }> {
  const file = join(dir, manifest.model.file);
  let actual: string;
  let size: number;
  try {
    size = (await stat(file)).size;
    actual = await sha256File(file);
  } catch (err) {
    throw unreadableModel(file, err);
  }
  checkModelSha(file, actual, manifest);
  return { file, size };
}

function unreadableModel(file: string, err: unknown): OspreyError {
  const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message;
  return new OspreyError('OSP_ERR_MODEL_LOAD', `cannot read model file ${file}: ${why}`, { cause: err });
}

function checkModelSha(file: string, actual: string, manifest: Manifest): void {
  if (actual !== manifest.model.sha256) {
    throw new OspreyError('OSP_ERR_MODEL_CHECKSUM', `${file} has sha256 ${actual} but the manifest says ${manifest.model.sha256}`);
  }
}

/**
 * Checks the package's plug-in module (if any) against its sha256 in the manifest, so a signed
 * manifest covers the code the edge runs as well as the model. Returns the module's path.
 */
export async function verifyPlugin(dir: string, manifest: Manifest): Promise<string | undefined> {
  if (!manifest.postprocess) return undefined;
  const file = join(dir, manifest.postprocess.module);
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (err as Error).message;
    throw new OspreyError('OSP_ERR_MODEL_PLUGIN', `cannot read plug-in ${file}: ${why}`, { cause: err });
  }
  const actual = sha256Hex(bytes);
  if (actual !== manifest.postprocess.sha256) {
    throw new OspreyError(
      'OSP_ERR_MODEL_CHECKSUM',
      `${file} has sha256 ${actual} but the manifest says ${manifest.postprocess.sha256}`,
    );
  }
  return file;
}

/** Reads and verifies a whole package (manifest, model, plug-in) without loading it into onnxruntime. */
export async function verifyModelPackage(dir: string): Promise<{ manifest: Manifest; modelBytes: Uint8Array }> {
  const manifest = await readManifest(dir);
  const modelBytes = await readVerifiedModel(dir, manifest);
  await verifyPlugin(dir, manifest);
  return { manifest, modelBytes };
}
