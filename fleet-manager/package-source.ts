/**
 * What the registry needs of an uploaded package, from either upload form, without holding the
 * package in memory: its file names and sizes, the manifest's bytes, each file's sha256, and its
 * canonical archive (packArchive's bytes) streamed out. An archive on disk is indexed by reading
 * its 512-byte headers only; file bytes are streamed from their ranges.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { ARCHIVE_BLOCK, header, parseHeader } from '../models/package-archive.js';
import { MANIFEST_FILE } from '../models/package-reader.js';
import { MAX_SIGNATURE_BYTES, SIGNATURE_FILE } from '../models/package-signature.js';
import { OspreyError } from '../protocol/errors.js';
import type { ReceivedFiles } from './multipart-upload.js';

/** Largest manifest.json read into memory. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

export interface PackageSource {
  /** Sizes by file name (signature.json, which is not part of the package, left out). */
  readonly sizes: ReadonlyMap<string, number>;
  /** The publisher's signature.json that came with the upload, if any. */
  signatureBytes(): Promise<Buffer | undefined>;
  /** Where a file's bytes lie on disk (for a child process that reads them). */
  location(name: string): { file: string; start: number; size: number };
  manifestBytes(): Promise<Buffer | undefined>;
  sha256(name: string): Promise<string>;
  /** The canonical archive (sorted names, packArchive's headers), chunk by chunk. */
  canonical(): AsyncIterable<Buffer>;
}

const sorted = (names: Iterable<string>) => [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
const padding = (size: number) => Buffer.alloc((ARCHIVE_BLOCK - (size % ARCHIVE_BLOCK)) % ARCHIVE_BLOCK);

async function* canonicalOf(sizes: ReadonlyMap<string, number>, bytesOf: (name: string) => AsyncIterable<Buffer>): AsyncIterable<Buffer> {
  for (const name of sorted(sizes.keys())) {
    const size = sizes.get(name)!;
    yield header(name, size, 0);
    yield* bytesOf(name);
    const pad = padding(size);
    if (pad.length) yield pad;
  }
  yield Buffer.alloc(ARCHIVE_BLOCK * 2);
}

async function hashOf(chunks: AsyncIterable<Buffer>): Promise<string> {
  const h = createHash('sha256');
  for await (const c of chunks) h.update(c);
  return h.digest('hex');
}

/** The manifest's bytes, read from `read` unless it is missing or too large to hold. */
async function manifestOf(sizes: ReadonlyMap<string, number>, read: (name: string) => AsyncIterable<Buffer>): Promise<Buffer | undefined> {
  const size = sizes.get(MANIFEST_FILE);
  if (size === undefined) return undefined;
  if (size > MAX_MANIFEST_BYTES) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${MANIFEST_FILE} is ${size} bytes, more than ${MAX_MANIFEST_BYTES}`);
  const parts: Buffer[] = [];
  for await (const c of read(MANIFEST_FILE)) parts.push(c);
  return Buffer.concat(parts);
}

/** The upload's signature.json, split off the package's files. */
async function signatureOf(all: Map<string, number>, read: (name: string) => AsyncIterable<Buffer>): Promise<Buffer | undefined> {
  const size = all.get(SIGNATURE_FILE);
  if (size === undefined) return undefined;
  if (size > MAX_SIGNATURE_BYTES) throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${SIGNATURE_FILE} is ${size} bytes, more than ${MAX_SIGNATURE_BYTES}`);
  const parts: Buffer[] = [];
  for await (const c of read(SIGNATURE_FILE)) parts.push(c);
  return Buffer.concat(parts);
}

/** Sizes of the package's own files: everything but signature.json. */
const packageSizes = (all: Map<string, number>) => new Map([...all].filter(([n]) => n !== SIGNATURE_FILE));

/** A file's bytes, or nothing for an empty one (a read stream over no bytes is an error). */
const fileBytes = (file: string, start: number, size: number): AsyncIterable<Buffer> =>
  size === 0 ? (async function* () {})() : createReadStream(file, { start, end: start + size - 1 });

/** Package files received one file each into a directory (a multipart upload), hashed as they arrived. */
export function directorySource(upload: ReceivedFiles): PackageSource {
  const all = new Map([...upload.files].map(([n, f]) => [n, f.size]));
  const sizes = packageSizes(all);
  const read = (name: string) => fileBytes(join(upload.dir, name), 0, all.get(name)!);
  return {
    sizes,
    signatureBytes: () => signatureOf(all, read),
    location: (name) => ({ file: join(upload.dir, name), start: 0, size: all.get(name)! }),
    manifestBytes: () => manifestOf(sizes, read),
    sha256: async (name) => upload.files.get(name)!.sha256,
    canonical: () => canonicalOf(sizes, read),
  };
}

/** A tar archive on disk (a tar upload), indexed from its headers; throws OSP_ERR_MODEL_MANIFEST if it is not a valid package archive. */
export async function archiveFileSource(file: string): Promise<PackageSource> {
  const ranges = new Map<string, { start: number; size: number }>();
  const fh = await open(file, 'r');
  try {
    const fileSize = (await fh.stat()).size;
    const h = Buffer.alloc(ARCHIVE_BLOCK);
    let off = 0;
    for (;;) {
      if (off + ARCHIVE_BLOCK > fileSize) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', 'not a valid model package archive: truncated (no end-of-archive marker)');
      await fh.read(h, 0, ARCHIVE_BLOCK, off);
      const entry = parseHeader(h, off, ranges);
      if (!entry) break;
      const start = off + ARCHIVE_BLOCK;
      if (start + entry.size > fileSize) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `not a valid model package archive: entry "${entry.name}" is truncated`);
      ranges.set(entry.name, { start, size: entry.size });
      off = start + Math.ceil(entry.size / ARCHIVE_BLOCK) * ARCHIVE_BLOCK;
    }
    if (ranges.size === 0) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', 'not a valid model package archive: no files');
  } finally {
    await fh.close();
  }
  const read = (name: string) => fileBytes(file, ranges.get(name)!.start, ranges.get(name)!.size);
  const all = new Map([...ranges].map(([n, r]) => [n, r.size]));
  const sizes = packageSizes(all);
  return {
    sizes,
    signatureBytes: () => signatureOf(all, read),
    location: (name) => ({ file, ...ranges.get(name)! }),
    manifestBytes: () => manifestOf(sizes, read),
    sha256: (name) => hashOf(read(name)),
    canonical: () => canonicalOf(sizes, read),
  };
}

/** The sha256 of a source's canonical archive, and its size. */
export async function canonicalDigest(source: PackageSource): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of source.canonical()) {
    h.update(c);
    size += c.length;
  }
  return { sha256: h.digest('hex'), size };
}
