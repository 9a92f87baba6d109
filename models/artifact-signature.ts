/**
 * Signing of model artifacts (Ed25519). The signed statement binds the package's identity to the
 * sha256 and size of its canonical archive and to the sha256 of its plug-in (or "none"), so one
 * flipped byte anywhere in the package fails verification, an edge knows before fetching a byte
 * how much it may write and whether the package carries code, and a signature by any other key
 * fails too. Keys have ids: a publisher signs with a key the fleet never holds (`osprey model
 * sign`), edges trust a set of keys by id (so keys rotate without re-enrolling edges), and the
 * fleet's own key is the entry `fleet` (docs/security-models.md).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { OspreyError } from '../protocol/errors.js';

/** The version line of the one statement format; a statement of any other format never verifies. */
export const STATEMENT_FORMAT = 'osprey-artifact/v2';
/** The key id of the fleet's own signing key (fleet.publicKey at the edge). */
export const FLEET_KEY_ID = 'fleet';
/** Key ids: short, printable, no separators a statement or a file name could be confused by. */
export const KEY_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$';

export interface ArtifactIdentity {
  name: string;
  version: string;
  /** sha256 (hex) of the canonical package archive. */
  sha256: string;
  /** Size in bytes of that archive: an edge never writes more. */
  size: number;
  /** sha256 (hex) of the package's plug-in module; null when it has none. */
  pluginSha256: string | null;
}

/** The signed identity of an artifact as a desired state names it (no pluginSha256: no plug-in). */
export function artifactIdentity(a: { name: string; version: string; sha256: string; size: number; pluginSha256?: string | undefined }): ArtifactIdentity {
  return { name: a.name, version: a.version, sha256: a.sha256, size: a.size, pluginSha256: a.pluginSha256 ?? null };
}

/** The exact bytes that are signed. */
export function signedStatement(a: ArtifactIdentity): Buffer {
  return Buffer.from(`${STATEMENT_FORMAT}\n${a.name}\n${a.version}\n${a.sha256}\n${a.size}\n${a.pluginSha256 ?? 'none'}`, 'utf8');
}

/** A new Ed25519 key pair as PEM strings. */
export function generateSigningKeys(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** Base64 Ed25519 signature of the artifact statement. */
export function signArtifact(a: ArtifactIdentity, privateKey: string | KeyObject): string {
  const key = typeof privateKey === 'string' ? createPrivateKey(privateKey) : privateKey;
  return sign(null, signedStatement(a), key).toString('base64');
}

/** Throws OSP_ERR_MODEL_SIGNATURE unless `signature` is the signature of `a` by `publicKey` (named `keyId` in messages). */
export function verifyArtifact(a: ArtifactIdentity, signature: string, publicKey: string | KeyObject, keyId = FLEET_KEY_ID): void {
  let ok = false;
  try {
    const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
    ok = verify(null, signedStatement(a), key, Buffer.from(signature, 'base64'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `cannot verify ${a.name}@${a.version}: ${(err as Error).message}`, { cause: err });
  }
  if (!ok) throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${a.name}@${a.version} (${a.sha256.slice(0, 12)}…) is not signed by key "${keyId}"`);
}

/** Public keys by id, as an edge or the fleet's registry trusts them. */
export type TrustedKeys = ReadonlyMap<string, KeyObject>;

/**
 * Throws OSP_ERR_MODEL_SIGNATURE unless `keyId` is in `trusted` and `signature` is that key's
 * signature of `a`. `where` names the setting that lists the keys, for the message.
 */
export function verifyTrusted(a: ArtifactIdentity, signature: string, keyId: string, trusted: TrustedKeys, where: string): void {
  const key = trusted.get(keyId);
  if (!key) {
    const known = [...trusted.keys()].join(', ') || 'none';
    throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${a.name}@${a.version} is signed by key "${keyId}", which is not in ${where} (trusted: ${known})`);
  }
  verifyArtifact(a, signature, key, keyId);
}
