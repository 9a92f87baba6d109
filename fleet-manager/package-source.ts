/**
 * What the registry needs of an uploaded package, from either upload form, without holding the
 * package in memory: its file names and sizes, the manifest's bytes, each file's sha256, and its
 * canonical archive (packArchive's bytes) streamed out. An archive on disk is indexed by reading
 * its 512-byte headers only; file bytes are streamed from their ranges.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { ARCHIVE_BLOCK, header, isPackageFileName, parseHeader } from '../models/package-archive.js';
import { MANIFEST_FILE } from '../models/package-reader.js';
import { OspreyError } from '../protocol/errors.js';

/** Largest manifest.json read into memory. */
const MAX_MANIFEST_BYTES = 1024 * 1024;

export interface PackageSource {
  /** Sizes by file name. */
  readonly sizes: ReadonlyMap<string, number>;
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

/** Package files already in memory (a multipart upload). */
export function memorySource(files: ReadonlyMap<string, Uint8Array>): PackageSource {
  for (const name of files.keys()) {
    if (!isPackageFileName(name)) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `package file name "${name}" is not allowed`);
  }
  const bytes = (name: string) => Buffer.from(files.get(name)!.buffer, files.get(name)!.byteOffset, files.get(name)!.length);
  const sizes = new Map([...files].map(([n, b]) => [n, b.length]));
  return {
    sizes,
    manifestBytes: async () => (files.has(MANIFEST_FILE) ? bytes(MANIFEST_FILE) : undefined),
    sha256: async (name) => createHash('sha256').update(files.get(name)!).digest('hex'),
    canonical: () =>
      canonicalOf(sizes, async function* (name) {
        yield bytes(name);
      }),
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
  const read = (name: string): AsyncIterable<Buffer> => {
    const { start, size } = ranges.get(name)!;
    return size === 0 ? (async function* () {})() : createReadStream(file, { start, end: start + size - 1 });
  };
  const sizes = new Map([...ranges].map(([n, r]) => [n, r.size]));
  return {
    sizes,
    async manifestBytes() {
      const size = sizes.get(MANIFEST_FILE);
      if (size === undefined) return undefined;
      if (size > MAX_MANIFEST_BYTES) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `${MANIFEST_FILE} is ${size} bytes, more than ${MAX_MANIFEST_BYTES}`);
      const parts: Buffer[] = [];
      for await (const c of read(MANIFEST_FILE)) parts.push(c);
      return Buffer.concat(parts);
    },
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
