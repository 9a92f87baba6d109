/**
 * Content-addressed files (`root/ab/abcdef…`), shared by the model registry and the image
 * store: a blob's name is its sha256, so writing is idempotent.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/** Where the blob with this sha256 lives under root. */
export function blobPath(root: string, sha256: string): string {
  return join(root, sha256.slice(0, 2), sha256);
}

/**
 * Writes a blob once: temp file, fsync, rename, so a crash leaves the whole blob or none, and the
 * caller's database row (committed next) never points at missing bytes.
 */
export async function writeBlob(root: string, sha256: string, bytes: Buffer): Promise<void> {
  const file = blobPath(root, sha256);
  const existing = await stat(file).catch(() => undefined);
  if (existing?.size === bytes.length) return; // same name, same bytes
  await mkdir(join(root, sha256.slice(0, 2)), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(bytes);
    await fh.sync();
  } finally {
    await fh.close();
  }
  try {
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}
