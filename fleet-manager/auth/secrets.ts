/**
 * Bearer secrets (API tokens, edge credentials, sessions, enrollment tokens): `<prefix>_<id>.<secret>`.
 * The id finds the stored row; only sha256(secret) is stored, compared in constant time. The
 * secrets are 256 random bits, so a fast hash is enough (a password needs a slow one: password.ts).
 */
import { createHash, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

export const SECRET_PREFIXES = {
  apiToken: 'ospt',
  edgeCredential: 'ospe',
  session: 'osps',
  enrollment: 'ospn',
} as const;
export type SecretKind = keyof typeof SECRET_PREFIXES;

export interface MintedSecret {
  id: string;
  /** The whole bearer string, shown once to its owner and never stored. */
  token: string;
  /** sha256 (hex) of the secret part: what the store keeps. */
  hash: string;
}

/** A new id and secret of the given kind. */
export function mintSecret(kind: SecretKind): MintedSecret {
  const id = randomBytes(9).toString('base64url');
  const secret = randomBytes(32).toString('base64url');
  return { id, token: `${SECRET_PREFIXES[kind]}_${id}.${secret}`, hash: hashSecret(secret) };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

const TOKEN = /^([a-z]{4})_([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{43})$/;

/** The id and secret of a bearer string of this kind; null for anything else (never throws). */
export function parseSecret(kind: SecretKind, token: unknown): { id: string; secret: string } | null {
  if (typeof token !== 'string' || token.length > 128) return null;
  const m = TOKEN.exec(token);
  if (!m || m[1] !== SECRET_PREFIXES[kind]) return null;
  return { id: m[2]!, secret: m[3]! };
}

/** Constant-time check of a secret against its stored sha256 hex. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Mosquitto's password-file hash of a secret (`$7$`: PBKDF2-SHA512, as `mosquitto_passwd`
 * writes it), kept beside the sha256 so `osprey fleet broker-config` can write Mosquitto's
 * password file without the secret itself.
 */
export function mosquittoHash(secret: string, iterations = 101): string {
  const salt = randomBytes(12);
  const hash = pbkdf2Sync(secret, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${hash.toString('base64')}`;
}
