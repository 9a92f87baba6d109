/**
 * An enrolled edge's credential file for tests, made through the identity store's real
 * enrollment (test/helpers/identity.ts) and written the way `osprey edge enroll` writes it (0600).
 */
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { TestIdentity } from './identity.js';

/** Enrolls `edgeId` and writes its credential to `file` (mode 0600); returns `file`. */
export async function enrolledCredentialFile(creds: TestIdentity, edgeId: string, file: string): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, `${await creds.enrollEdge(edgeId)}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return file;
}
