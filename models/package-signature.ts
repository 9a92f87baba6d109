/**
 * The publisher's detached signature of a model package: `signature.json`, written beside the
 * package's files by `osprey model sign` and uploaded with them (a file of the tar or multipart
 * upload). It is not part of the package: the signed sha256 and size are those of the canonical
 * archive of every other file, as the registry stores it and edges download it.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import type { KeyObject } from 'node:crypto';
import { OspreyError } from '../protocol/errors.js';
import { validatorFor } from '../protocol/validator.js';
import { KEY_ID_PATTERN, STATEMENT_FORMAT, signArtifact, type ArtifactIdentity } from './artifact-signature.js';
import { parseManifest } from './manifest-check.js';
import { packArchive } from './package-archive.js';
import { MANIFEST_FILE, sha256Hex } from './package-reader.js';

/** The signature's file name inside an upload (never part of the stored package). */
export const SIGNATURE_FILE = 'signature.json';
/** Largest signature.json read. */
export const MAX_SIGNATURE_BYTES = 16 * 1024;

const Hex64 = Type.String({ pattern: '^[0-9a-f]{64}$' });

export const PackageSignatureSchema = Type.Object(
  {
    format: Type.Literal(STATEMENT_FORMAT),
    keyId: Type.String({ pattern: KEY_ID_PATTERN }),
    name: Type.String({ minLength: 1, maxLength: 128 }),
    version: Type.String({ minLength: 1, maxLength: 64 }),
    sha256: Hex64,
    size: Type.Integer({ minimum: 0 }),
    pluginSha256: Type.Union([Hex64, Type.Null()]),
    signature: Type.String({ minLength: 1, maxLength: 1024 }),
  },
  { $id: 'osprey.v1.packageSignature', additionalProperties: false },
);
export type PackageSignature = Static<typeof PackageSignatureSchema>;

/** Parses signature.json; OSP_ERR_MODEL_SIGNATURE with a one-line reason naming the field. */
export function parsePackageSignature(bytes: Uint8Array, where = SIGNATURE_FILE): PackageSignature {
  if (bytes.length > MAX_SIGNATURE_BYTES) throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${where} is ${bytes.length} bytes, more than ${MAX_SIGNATURE_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${where} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const validate = validatorFor(PackageSignatureSchema);
  if (!validate(value)) {
    const e = validate.errors?.[0];
    const field = e ? e.instancePath.replace(/^\//, '').replace(/\//g, '.') || (e.params as { missingProperty?: string }).missingProperty || '(root)' : '(root)';
    throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${where} ${field}: ${e?.message ?? 'invalid'}`);
  }
  return value;
}

/** The identity a signature states. */
export function signedIdentity(s: PackageSignature): ArtifactIdentity {
  return { name: s.name, version: s.version, sha256: s.sha256, size: s.size, pluginSha256: s.pluginSha256 };
}

/**
 * The identity of a package given as its files (signature.json, if there, left out): name and
 * version from the manifest, sha256 and size of the canonical archive, the plug-in's sha256.
 */
export function identityOfFiles(files: ReadonlyMap<string, Uint8Array>): ArtifactIdentity {
  const pkg = new Map([...files].filter(([n]) => n !== SIGNATURE_FILE));
  const text = pkg.get(MANIFEST_FILE);
  if (!text) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `the package has no ${MANIFEST_FILE}`);
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(text).toString('utf8'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${MANIFEST_FILE} is not JSON: ${(err as Error).message}`, { cause: err });
  }
  const manifest = parseManifest(value, MANIFEST_FILE);
  const archive = packArchive(pkg);
  return { name: manifest.name, version: manifest.version, sha256: sha256Hex(archive), size: archive.length, pluginSha256: manifest.postprocess?.sha256 ?? null };
}

/** Signs a package given as its files with the publisher key `keyId`. */
export function signPackageFiles(files: ReadonlyMap<string, Uint8Array>, keyId: string, privateKey: string | KeyObject): PackageSignature {
  if (!new RegExp(KEY_ID_PATTERN).test(keyId)) throw new OspreyError('OSP_ERR_USAGE', `key id "${keyId}" must match ${KEY_ID_PATTERN}`);
  const identity = identityOfFiles(files);
  return { format: STATEMENT_FORMAT, keyId, ...identity, signature: signArtifact(identity, privateKey) };
}

/** Every regular file of a flat package directory, signature.json left out. */
export async function readPackageDirectory(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for (const name of (await readdir(dir)).sort()) {
    if (name === SIGNATURE_FILE) continue;
    if (!(await stat(join(dir, name))).isFile()) continue;
    files.set(name, await readFile(join(dir, name)));
  }
  return files;
}
