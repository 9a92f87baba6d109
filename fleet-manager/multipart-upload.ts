/**
 * A multipart/form-data package upload received straight to disk: busboy parses the request as
 * it arrives, each file part is written (and hashed) into a per-upload temp directory, and the
 * parts together are capped at a size, so an upload costs a few chunks of memory whatever its
 * size. The package is flat: every part is a file with an allowed package file name, once. On any
 * failure (too large, a bad part, the client gone, a disk error) the directory is deleted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { isPackageFileName, MAX_PACKAGE_FILES } from '../models/package-archive.js';
import { OspreyError } from '../protocol/errors.js';
import { UPLOAD_SUFFIX } from './upload-file.js';

/** The files of an upload on disk: the caller owns `dir` (deletes it when done). */
export interface ReceivedFiles {
  dir: string;
  /** Size and sha256 of each file, by file name (the file is `dir/name`). */
  files: ReadonlyMap<string, { size: number; sha256: string }>;
}

const badRequest = (message: string) => new OspreyError('OSP_ERR_BAD_REQUEST', message);

/**
 * Receives a multipart/form-data `body` into a new directory under `uploadDir`; `limit` names the
 * setting in the error when the file bytes pass `maxBytes` (OSP_ERR_TOO_LARGE).
 */
export async function receiveMultipart(body: Readable, headers: IncomingHttpHeaders, uploadDir: string, maxBytes: number, limit: string): Promise<ReceivedFiles> {
  const dir = join(uploadDir, `${randomBytes(8).toString('hex')}${UPLOAD_SUFFIX}`);
  await mkdir(dir);
  const files = new Map<string, { size: number; sha256: string }>();
  try {
    await new Promise<void>((resolve, reject) => {
      let parser: busboy.Busboy;
      try {
        // preservePath: see the name as sent, so "../x" is refused instead of quietly becoming "x".
        // A file cap: each part is an open file, so 30 000 one-byte parts ran the fleet out of descriptors.
        parser = busboy({ headers, preservePath: true, limits: { files: MAX_PACKAGE_FILES } });
      } catch (err) {
        return reject(badRequest(`body is not valid multipart/form-data: ${(err as Error).message}`));
      }
      let total = 0;
      let failed = false;
      const writes: Promise<void>[] = [];
      const fail = (err: Error) => {
        if (failed) return;
        failed = true;
        // Leave the rest unread: the error answer closes the connection.
        body.unpipe(parser);
        body.pause();
        parser.removeAllListeners('file').removeAllListeners('field');
        // Ends the part being written; the directory is deleted once no write is left.
        parser.destroy(err);
        void Promise.allSettled(writes).then(() => reject(err));
      };
      parser.on('field', (field: string) => fail(badRequest(`multipart field "${field}" is not a file; send each package file as a file part`)));
      parser.on('file', (field: string, stream: Readable, info: busboy.FileInfo) => {
        // Its errors are the pipeline's below, or moot once the upload failed (destroying the parser destroys the part).
        stream.on('error', () => undefined);
        const name = info.filename;
        if (!name) return fail(badRequest(`multipart field "${field}" has no file name`));
        if (!isPackageFileName(name)) return fail(new OspreyError('OSP_ERR_MODEL_MANIFEST', `package file name "${name}" is not allowed`));
        if (files.has(name)) return fail(badRequest(`file ${name} appears twice in the upload`));
        const entry = { size: 0, sha256: '' };
        files.set(name, entry);
        const hash = createHash('sha256');
        const count = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            total += chunk.length;
            if (total > maxBytes) return cb(new OspreyError('OSP_ERR_TOO_LARGE', `upload exceeds ${limit} (${maxBytes} bytes)`));
            entry.size += chunk.length;
            hash.update(chunk);
            cb(null, chunk);
          },
        });
        const written = pipeline(stream, count, createWriteStream(join(dir, name), { flags: 'wx' })).then(() => {
          entry.sha256 = hash.digest('hex');
        });
        written.catch(fail);
        writes.push(written);
      });
      parser.on('filesLimit', () => fail(new OspreyError('OSP_ERR_MODEL_MANIFEST', `the upload holds more than ${MAX_PACKAGE_FILES} files`)));
      parser.on('error', (err: Error) => fail(badRequest(`body is not valid multipart/form-data: ${err.message}`)));
      parser.on('close', () => {
        Promise.all(writes).then(() => {
          if (failed) return;
          if (files.size === 0) return fail(badRequest('the upload holds no files'));
          resolve();
        }, fail);
      });
      body.once('aborted', () => fail(badRequest('the upload was aborted by the client')));
      body.on('error', fail);
      body.pipe(parser);
    });
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  return { dir, files };
}
