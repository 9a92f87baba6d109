/**
 * A model package as one file: a POSIX ustar archive of the package's flat directory
 * (manifest.json, the model, an optional plug-in). Its sha256 is the artifact's address in the
 * registry. Written here rather than taken from a dependency because packages are flat and small
 * in number of files, and the reader must refuse anything else (links, directories, `..`).
 */
import { open, readdir, readFile, stat, mkdir, writeFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { OspreyError, safeLine } from '../protocol/errors.js';

const BLOCK = 512;
/** Package file names: no separators, no leading dot, nothing that could escape the directory. */
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/;
/** Whether a package may contain a file of this name. */
export const isPackageFileName = (name: string): boolean => FILE_NAME.test(name);
/** Refuse packages with absurd file counts (a tar's entries, a multipart upload's parts) before allocating for them. */
export const MAX_PACKAGE_FILES = 64;
const MAX_FILES = MAX_PACKAGE_FILES;

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** The ustar header packArchive writes for one file (exported for writers that stream the bytes). */
export function header(name: string, size: number, mtime: number): Buffer {
  const h = Buffer.alloc(BLOCK, 0);
  h.write(name, 0, 100, 'utf8');
  h.write(octal(0o644, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(size, 12), 124, 'ascii');
  h.write(octal(mtime, 12), 136, 'ascii');
  h.write('        ', 148, 'ascii'); // checksum field counts as spaces while summing
  h.write('0', 156, 'ascii');
  h.write('ustar\0', 257, 'ascii');
  h.write('00', 263, 'ascii');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148, 'ascii');
  return h;
}

/**
 * Builds a deterministic archive (sorted names, fixed mtime) so the same package always has
 * the same sha256.
 */
export function packArchive(files: Map<string, Uint8Array> | Record<string, Uint8Array>): Buffer {
  const entries = files instanceof Map ? [...files] : Object.entries(files);
  entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const parts: Buffer[] = [];
  for (const [name, data] of entries) {
    if (!FILE_NAME.test(name)) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `package file name "${name}" is not allowed`);
    parts.push(header(name, data.length, 0), Buffer.from(data.buffer, data.byteOffset, data.length));
    const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}

/** Reads every regular file of a flat package directory into an archive. */
export async function archiveDirectory(dir: string): Promise<Buffer> {
  const files = new Map<string, Uint8Array>();
  for (const name of await readdir(dir)) {
    const s = await stat(join(dir, name));
    if (!s.isFile()) continue;
    files.set(name, await readFile(join(dir, name)));
  }
  return packArchive(files);
}

function field(h: Buffer, start: number, len: number): string {
  const raw = h.subarray(start, start + len);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? len : end).toString('utf8');
}

export const ARCHIVE_BLOCK = BLOCK;

/**
 * Checks one 512-byte header at byte `off` against the package rules (checksum, regular file,
 * allowed and unique name, entry count, size); null for the end-of-archive block. `seen` holds
 * the names before it. Throws OSP_ERR_MODEL_MANIFEST.
 */
export function parseHeader(h: Buffer, off: number, seen: { has(name: string): boolean; readonly size: number }): { name: string; size: number } | null {
  const bad = (why: string): never => {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `not a valid model package archive: ${safeLine(why)}`);
  };
  if (h.every((b) => b === 0)) return null;
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!;
  const stored = parseInt(field(h, 148, 8).trim(), 8);
  if (stored !== sum) bad(`header checksum mismatch at byte ${off}`);
  const name = field(h, 0, 100);
  const type = String.fromCharCode(h[156]!);
  if (type !== '0' && type !== '\0') bad(`entry "${name}" is not a regular file`);
  if (!FILE_NAME.test(name)) bad(`entry name "${name}" is not allowed`);
  if (seen.has(name)) bad(`entry "${name}" appears twice`);
  if (seen.size >= MAX_FILES) bad(`more than ${MAX_FILES} files`);
  const size = parseInt(field(h, 124, 12).trim(), 8);
  if (!Number.isSafeInteger(size) || size < 0) bad(`entry "${name}" has an invalid size`);
  return { name, size };
}

/** Parses an archive made by packArchive (or any plain ustar of regular files). */
export function unpackArchive(archive: Uint8Array): Map<string, Buffer> {
  const buf = Buffer.from(archive.buffer, archive.byteOffset, archive.length);
  const files = new Map<string, Buffer>();
  let off = 0;
  const bad = (why: string): never => {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `not a valid model package archive: ${safeLine(why)}`);
  };
  while (off + BLOCK <= buf.length) {
    const entry = parseHeader(buf.subarray(off, off + BLOCK), off, files);
    if (!entry) return files.size ? files : bad('no files');
    const start = off + BLOCK;
    if (start + entry.size > buf.length) bad(`entry "${entry.name}" is truncated`);
    files.set(entry.name, buf.subarray(start, start + entry.size));
    off = start + Math.ceil(entry.size / BLOCK) * BLOCK;
  }
  return bad('truncated (no end-of-archive marker)');
}

/**
 * One file of an archive on disk, read without loading the rest (headers are read and the other
 * entries skipped): null when the archive has no such entry; OSP_ERR_TOO_LARGE above `maxBytes`.
 */
export async function readArchiveEntry(file: string, name: string, maxBytes: number): Promise<Buffer | null> {
  const fh = await open(file, 'r');
  try {
    const size = (await fh.stat()).size;
    const seen = new Set<string>();
    const h = Buffer.alloc(BLOCK);
    let off = 0;
    while (off + BLOCK <= size) {
      await fh.read(h, 0, BLOCK, off);
      const entry = parseHeader(h, off, seen);
      if (!entry) return null;
      const start = off + BLOCK;
      if (entry.name === name) {
        if (entry.size > maxBytes) throw new OspreyError('OSP_ERR_TOO_LARGE', `${name} in the archive is ${entry.size} bytes, more than ${maxBytes}`);
        if (start + entry.size > size) throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `not a valid model package archive: entry "${name}" is truncated`);
        const out = Buffer.alloc(entry.size);
        await fh.read(out, 0, entry.size, start);
        return out;
      }
      seen.add(entry.name);
      off = start + Math.ceil(entry.size / BLOCK) * BLOCK;
    }
    return null;
  } finally {
    await fh.close();
  }
}

/**
 * Extracts an archive into `dir` atomically: written to a sibling temp dir, then renamed, so a
 * crash never leaves a half-extracted package where a loader would find it.
 */
export async function extractArchive(archive: Uint8Array, dir: string): Promise<void> {
  const files = unpackArchive(archive);
  const tmp = `${dir}.partial-${process.pid}-${Date.now()}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  for (const [name, data] of files) await writeFile(join(tmp, name), data);
  await rm(dir, { recursive: true, force: true });
  await rename(tmp, dir);
}
