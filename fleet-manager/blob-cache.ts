/**
 * Each instance's blob files as a cache of the blob store (blob-store.ts): `ensureLocal` returns
 * a blob's file, first fetching it from the store when this instance does not have it — into a
 * temp file, checked against its sha256, then renamed into place, so concurrent fetches of one
 * blob are safe and a corrupt copy never lands under its name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, stat, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import { OspreyError } from '../protocol/errors.js';
import type { BlobScope, BlobStore } from './blob-store.js';
import type { FleetImageStore, StoredImage } from './image-store.js';

/**
 * The blob's file (`file`, its path under the scope's folder), fetched from `blobs` when missing.
 * With files only (SQLite) it is returned as is, as before. OSP_ERR_NOT_FOUND when neither this
 * instance nor the store has the blob; a copy from the store that does not hash to `sha256` is
 * an error naming the blob, and nothing is left in place.
 */
export async function ensureLocal(blobs: BlobStore, scope: BlobScope, file: string, sha256: string): Promise<string> {
  if (blobs.kind === 'files') return file;
  if (await stat(file).catch(() => undefined)) return file;
  const parts = await blobs.read(scope, sha256);
  if (!parts) throw new OspreyError('OSP_ERR_NOT_FOUND', `${scope} blob ${sha256} is neither in this instance's files nor in the database`);
  await mkdir(dirname(file), { recursive: true });
  const tmp = `${file}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const hash = createHash('sha256');
    const fh = await open(tmp, 'w');
    try {
      for await (const part of parts) {
        hash.update(part);
        await fh.write(part);
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    const got = hash.digest('hex');
    if (got !== sha256) throw new Error(`${scope} blob ${sha256} read from the database hashes to ${got}: its stored parts are corrupt`);
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return file;
}

/** The image store whose get/find hand out images whose files are on this instance (fetched from `blobs` when missing). */
export function withLocalImages(images: FleetImageStore, blobs: BlobStore): FleetImageStore {
  if (blobs.kind === 'files') return images;
  const local = async (image: StoredImage): Promise<StoredImage> => ({ ...image, file: await ensureLocal(blobs, 'images', image.file, image.sha256) });
  return {
    ...images,
    async get(key, kind) {
      const image = await images.get(key, kind);
      return image ? local(image) : null;
    },
    async find(edgeId, seq, kind) {
      return Promise.all((await images.find(edgeId, seq, kind)).map(local));
    },
  };
}
