/**
 * Signing of model artifacts by the fleet (Ed25519). The signed statement binds the package's
 * identity to the sha256 of its archive, so one flipped byte anywhere in the package — model,
 * manifest or plug-in — fails verification, and so does a signature by any other key.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { OspreyError } from '../protocol/errors.js';

export interface ArtifactIdentity {
  name: string;
  version: string;
  sha256: string;
}

/** The exact bytes that are signed. */
export function signedStatement(a: ArtifactIdentity): Buffer {
  return Buffer.from(`osprey-artifact/v1\n${a.name}\n${a.version}\n${a.sha256}`, 'utf8');
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

/** Throws OSP_ERR_MODEL_SIGNATURE unless `signature` is the fleet key's signature of `a`. */
export function verifyArtifact(a: ArtifactIdentity, signature: string, publicKey: string | KeyObject): void {
  let ok = false;
  try {
    const key = typeof publicKey === 'string' ? createPublicKey(publicKey) : publicKey;
    ok = verify(null, signedStatement(a), key, Buffer.from(signature, 'base64'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `cannot verify ${a.name}@${a.version}: ${(err as Error).message}`, { cause: err });
  }
  if (!ok) throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${a.name}@${a.version} (${a.sha256.slice(0, 12)}…) is not signed by the fleet key`);
}
