/**
 * The fleet's password on an external broker (Mosquitto): made once by `osprey fleet
 * broker-config`, kept in `dataDir/keys/broker-fleet.secret` (mode 0600), read by the fleet
 * manager when `brokerUrl` is set. The embedded broker needs no file: its secret is made at
 * each start and never leaves the process.
 */
import { randomBytes } from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { OspreyError } from '../protocol/errors.js';

export const BROKER_SECRET_FILE = join('keys', 'broker-fleet.secret');

/** A new random broker password (256 bits, base64url). */
export function newBrokerSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The password kept in `file`; null when the file does not exist. A bad file throws OSP_ERR_CONFIG naming it. */
export async function readBrokerSecret(file: string): Promise<string | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new OspreyError('OSP_ERR_CONFIG', `cannot read the broker password file ${file}: ${(err as Error).message}`, { cause: err });
  }
  const secret = text.trim();
  if (!/^[\x21-\x7e]{16,512}$/.test(secret)) throw new OspreyError('OSP_ERR_CONFIG', `the broker password file ${file} must hold one line of 16 to 512 printable characters`);
  return secret;
}

/**
 * The password in `file`, created (0600, its folder 0700) when absent. Published with a hard
 * link from a temp file, so two concurrent runs never end up with two passwords.
 */
export async function loadOrCreateBrokerSecret(file: string): Promise<{ secret: string; created: boolean }> {
  const existing = await readBrokerSecret(file);
  if (existing !== null) return { secret: existing, created: false };
  await mkdir(dirname(file), { recursive: true, mode: 0o700 });
  const secret = newBrokerSecret();
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, `${secret}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  try {
    await link(tmp, file);
    return { secret, created: true };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return { secret: (await readBrokerSecret(file))!, created: false };
  } finally {
    await rm(tmp, { force: true });
  }
}
