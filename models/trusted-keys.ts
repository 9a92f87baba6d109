/**
 * Sets of trusted Ed25519 public keys, each with an id: the publisher keys an edge accepts model
 * packages from (`fleet.trustedKeys`) and those the fleet's registry accepts uploads signed by
 * (`registry.publisherKeys`). A key is given inline (PEM) or as a file; ids are unique. Adding a
 * key and later removing the old one rotates keys without touching anything else.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../protocol/errors.js';
import { KEY_ID_PATTERN } from './artifact-signature.js';

/** One trusted key in a config file. */
export const TrustedKeySchema = Type.Object(
  {
    id: Type.String({ pattern: KEY_ID_PATTERN, description: 'the key id signatures name (osprey model keygen --id)' }),
    publicKey: Type.Optional(Type.String({ minLength: 1, maxLength: 16_384, description: 'Ed25519 public key (PEM)' })),
    publicKeyFile: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'file holding the key (PEM); relative to the config file' })),
  },
  { additionalProperties: false },
);
export type TrustedKeyEntry = Static<typeof TrustedKeySchema>;

/** Up to 32 keys: a handful of publishers, each rotating now and then. */
export const TrustedKeyListSchema = (description: string) => Type.Array(TrustedKeySchema, { maxItems: 32, description });

/** Throws OSP_ERR_CONFIG unless `pem` is an Ed25519 public key; returns it parsed. */
export function parseEd25519PublicKey(pem: string, what: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `${what}: not a PEM public key (${(err as Error).message})`, { cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new OspreyError('OSP_ERR_CONFIG', `${what}: must be an Ed25519 key, got ${key.asymmetricKeyType ?? 'unknown'}`);
  return key;
}

/**
 * Checks a key list's shape (one of publicKey / publicKeyFile each, unique ids, inline keys
 * parse) and resolves file names against `baseDir`. OSP_ERR_CONFIG naming `where[i]` (and `source`, e.g. " (file)").
 */
export function checkTrustedKeyEntries(entries: readonly TrustedKeyEntry[], where: string, baseDir: string, source = ''): TrustedKeyEntry[] {
  const seen = new Set<string>();
  return entries.map((e, i) => {
    const at = `${where}[${i}]`;
    if ((e.publicKey === undefined) === (e.publicKeyFile === undefined)) throw new OspreyError('OSP_ERR_CONFIG', `config ${at}: set publicKey or publicKeyFile (one of the two)${source}`);
    if (seen.has(e.id)) throw new OspreyError('OSP_ERR_CONFIG', `config ${at}.id: "${e.id}" is listed twice${source}`);
    seen.add(e.id);
    if (e.publicKey !== undefined) parseEd25519PublicKey(e.publicKey, `config ${at}.publicKey${source}`);
    return e.publicKeyFile !== undefined ? { ...e, publicKeyFile: resolve(baseDir, e.publicKeyFile) } : { ...e };
  });
}

/** Reads every key of a checked list (files read now): id → key. OSP_ERR_CONFIG naming the entry. */
export async function loadTrustedKeys(entries: readonly TrustedKeyEntry[], where: string): Promise<Map<string, KeyObject>> {
  const keys = new Map<string, KeyObject>();
  for (const [i, e] of entries.entries()) {
    const at = `config ${where}[${i}]`;
    let pem = e.publicKey;
    if (pem === undefined) {
      try {
        pem = await readFile(e.publicKeyFile!, 'utf8');
      } catch (err) {
        throw new OspreyError('OSP_ERR_CONFIG', `${at}.publicKeyFile: cannot read ${e.publicKeyFile} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
      }
    }
    if (keys.has(e.id)) throw new OspreyError('OSP_ERR_CONFIG', `${at}.id: "${e.id}" is listed twice`);
    keys.set(e.id, parseEd25519PublicKey(pem, e.publicKeyFile !== undefined ? `${at}.publicKeyFile (${e.publicKeyFile})` : `${at}.publicKey`));
  }
  return keys;
}
