/**
 * Content-addressed files (`root/ab/abcdef…`), shared by the model registry and the image
 * store: a blob's name is its sha256, so writing is idempotent.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
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

/** Like writeBlob, from chunks (a blob too large to hold in memory). */
export async function writeBlobFrom(root: string, sha256: string, chunks: AsyncIterable<Uint8Array>): Promise<void> {
  const file = blobPath(root, sha256);
  if (await stat(file).catch(() => undefined)) return; // content-addressed: already there
  await mkdir(join(root, sha256.slice(0, 2)), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fh = await open(tmp, 'w');
    try {
      for await (const c of chunks) await fh.write(c);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
}

/** Moves a complete, synced file (on the same filesystem) into place as a blob; an existing blob wins. */
export async function moveIntoBlob(root: string, sha256: string, source: string): Promise<void> {
  const file = blobPath(root, sha256);
  if (await stat(file).catch(() => undefined)) {
    await unlink(source).catch(() => undefined);
    return;
  }
  await mkdir(join(root, sha256.slice(0, 2)), { recursive: true });
  await rename(source, file);
}

/** Bytes of the blobs under root (temp files of interrupted writes not counted). */
export function blobBytes(root: string): number {
  let total = 0;
  for (const dir of readdirSync(root, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue;
    for (const f of readdirSync(join(root, dir.name))) if (!f.endsWith('.tmp')) total += statSync(join(root, dir.name, f)).size;
  }
  return total;
}
