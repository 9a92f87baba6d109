/**
 * Free space on the edge's data disk (issue 13): what the filesystem holding a directory has left
 * for this process (statfs `bavail`), and the check a model download makes before its first byte.
 * Quotas bound what the edge writes; this bounds what the disk has left, whoever filled it.
 */
import { statfsSync } from 'node:fs';
import { OspreyError } from '../protocol/errors.js';

/** Bytes free for unprivileged writers on the filesystem of `dir`; undefined when statfs fails. */
export function freeBytes(dir: string): number | undefined {
  try {
    const s = statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}

/** ENOSPC (or EDQUOT): the disk, not the data, is the problem. */
export function isDiskFull(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/**
 * Throws OSP_ERR_MODEL_DOWNLOAD, naming `dir` and the figures, when writing `needBytes` more would
 * leave less than `floorBytes` free there. A floor of 0 turns the check off; a filesystem that
 * cannot be asked passes.
 */
export function assertRoomFor(dir: string, needBytes: number, floorBytes: number, what: string): void {
  if (floorBytes <= 0) return;
  const free = freeBytes(dir);
  if (free === undefined) return;
  if (free - needBytes < floorBytes) {
    throw new OspreyError(
      'OSP_ERR_MODEL_DOWNLOAD',
      `not enough free space in ${dir} for ${what}: ${needBytes} bytes needed, ${free} free, ${floorBytes} must stay free (disk.minFreeBytes)`,
    );
  }
}
