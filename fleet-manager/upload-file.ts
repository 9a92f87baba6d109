/**
 * Request bodies received straight to disk: written chunk by chunk to a temp file, hashed as
 * they arrive and capped at a size, so an upload costs a chunk of memory whatever its size. On
 * any failure (too large, empty, the client gone, a disk error) the temp file is deleted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { OspreyError } from '../protocol/errors.js';

/** A body on disk: the caller owns `file` (renames it into place or deletes it). */
export interface ReceivedFile {
  file: string;
  bytes: number;
  sha256: string;
}

/** Ends the name of every upload in progress (a file, or a multipart upload's directory). */
export const UPLOAD_SUFFIX = '.upload';

/** Creates `dir` and deletes uploads (files and directories) a crash left there; call once at start. */
export function prepareUploadDir(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const name of readdirSync(dir)) if (name.endsWith(UPLOAD_SUFFIX)) rmSync(join(dir, name), { recursive: true, force: true });
}

/**
 * Writes `body` to a new file in `dir`; `limit` names the setting in the error when the body
 * passes `maxBytes` (OSP_ERR_TOO_LARGE). An empty body is OSP_ERR_BAD_REQUEST.
 */
export async function receiveFile(body: Readable, dir: string, maxBytes: number, limit: string): Promise<ReceivedFile> {
  const file = join(dir, `${randomBytes(8).toString('hex')}${UPLOAD_SUFFIX}`);
  const fh = await open(file, 'wx');
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    try {
      // Not for-await: leaving it early would destroy the request, and the socket the error answer needs.
      await new Promise<void>((resolve, reject) => {
        const fail = (err: Error) => {
          body.off('data', onData).off('end', resolve).off('error', fail);
          body.pause();
          reject(err);
        };
        const onData = (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > maxBytes) return fail(new OspreyError('OSP_ERR_TOO_LARGE', `upload exceeds ${limit} (${maxBytes} bytes)`));
          hash.update(chunk);
          body.pause();
          fh.write(chunk).then(() => body.resume(), fail);
        };
        body.on('data', onData).on('end', resolve).on('error', fail);
        body.once('aborted', () => fail(new OspreyError('OSP_ERR_BAD_REQUEST', 'the upload was aborted by the client')));
      });
      if (bytes === 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'the upload is empty');
      // Renamed into a store next: the bytes must be on disk before any record names them.
      await fh.sync();
    } finally {
      await fh.close();
    }
  } catch (err) {
    await unlink(file).catch(() => undefined);
    throw err;
  }
  return { file, bytes, sha256: hash.digest('hex') };
}
