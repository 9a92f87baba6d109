/**
 * The fleet's Ed25519 artifact-signing key pair, generated on first start and kept in the data
 * directory (`keys/fleet-signing.key`, mode 0600, and `keys/fleet-signing.pub`). Edges hold the
 * public key in their config and refuse any artifact it did not sign.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { generateSigningKeys } from '../models/artifact-signature.js';
import { OspreyError } from '../protocol/errors.js';

export interface SigningKeys {
  privateKey: KeyObject;
  /** SPKI PEM, as served at GET /api/fleet/public-key and put in edge configs. */
  publicKeyPem: string;
}

export const PRIVATE_KEY_FILE = join('keys', 'fleet-signing.key');
export const PUBLIC_KEY_FILE = join('keys', 'fleet-signing.pub');

/**
 * Loads the key pair from `dataDir`, creating it when absent. The private key is published with
 * a hard link from a temp file, so two processes starting on one data dir never end up with two
 * different keys (the second link fails and that process reads the first one's key).
 */
export async function loadOrCreateSigningKeys(dataDir: string, log: Logger): Promise<SigningKeys> {
  const keyFile = join(dataDir, PRIVATE_KEY_FILE);
  const pubFile = join(dataDir, PUBLIC_KEY_FILE);
  let pem = await readFile(keyFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return null;
    throw new OspreyError('OSP_ERR_CONFIG', `cannot read the signing key ${keyFile}: ${err.message}`, { cause: err });
  });
  if (pem === null) {
    await mkdir(join(dataDir, 'keys'), { recursive: true, mode: 0o700 });
    const generated = generateSigningKeys();
    const tmp = `${keyFile}.${process.pid}.tmp`;
    await writeFile(tmp, generated.privateKeyPem, { mode: 0o600 });
    await chmod(tmp, 0o600); // the umask may have narrowed more, never widened; be explicit
    try {
      await link(tmp, keyFile);
      pem = generated.privateKeyPem;
      log.info({ keyFile }, 'signing key created');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      pem = await readFile(keyFile, 'utf8');
    } finally {
      await rm(tmp, { force: true });
    }
  }
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `the signing key ${keyFile} is not a valid private key: ${(err as Error).message}`, { cause: err });
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new OspreyError('OSP_ERR_CONFIG', `the signing key ${keyFile} is ${privateKey.asymmetricKeyType}, not ed25519`);
  }
  const publicKeyPem = createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString();
  // The .pub file is a convenience for operators; it is always rewritten from the private key.
  const pub = await readFile(pubFile, 'utf8').catch(() => null);
  if (pub !== publicKeyPem) await writeFile(pubFile, publicKeyPem, { mode: 0o644 });
  return { privateKey, publicKeyPem };
}
