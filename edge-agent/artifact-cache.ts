/**
 * The edge's on-disk cache of model versions, addressed by the sha256 of their archive:
 * `{dir}/{sha256}/` is an extracted package, `{dir}/downloads/{sha256}.part` a download in
 * progress. A package directory only ever appears through an atomic rename after its archive was
 * verified, so its presence means "these are the bytes the fleet signed".
 */
import { mkdir, readdir, readFile, rm, stat, utimes } from 'node:fs/promises';
import path from 'node:path';
import { extractArchive } from '../models/package-archive.js';
import { OspreyError } from '../protocol/errors.js';
import { isDiskFull } from './disk-space.js';

const SHA256 = /^[0-9a-f]{64}$/;

export interface ArtifactCache {
  readonly dir: string;
  /** Where the package with this archive sha256 is (or will be) extracted. */
  packageDir(sha256: string): string;
  /** The partial download file of this archive. */
  partFile(sha256: string): string;
  /** True when the package is extracted in the cache. */
  has(sha256: string): Promise<boolean>;
  /** Extracts the verified download of `sha256` atomically into packageDir() and drops the download. */
  install(sha256: string): Promise<string>;
  /** Deletes one package (one that failed to load). */
  remove(sha256: string): Promise<void>;
  /** Marks a package as just used (least recently used packages are pruned first). */
  touch(sha256: string): Promise<void>;
  /**
   * Keeps at most `keep` packages in all, always including those in `protect` (then the most
   * recently used), removes
   * downloads of archives not in `protect` and leftovers of interrupted extractions. Returns the
   * sha256s of the packages removed.
   */
  prune(keep: number, protect: ReadonlySet<string>): Promise<string[]>;
}

/** Opens (creating) the cache under `dir`. */
export async function openArtifactCache(dir: string): Promise<ArtifactCache> {
  const downloads = path.join(dir, 'downloads');
  await mkdir(downloads, { recursive: true });
  const packageDir = (sha256: string) => {
    if (!SHA256.test(sha256)) throw new TypeError(`not a sha256: ${sha256}`);
    return path.join(dir, sha256);
  };
  const partFile = (sha256: string) => {
    if (!SHA256.test(sha256)) throw new TypeError(`not a sha256: ${sha256}`);
    return path.join(downloads, `${sha256}.part`);
  };

  return {
    dir,
    packageDir,
    partFile,
    async has(sha256) {
      try {
        return (await stat(path.join(packageDir(sha256), 'manifest.json'))).isFile();
      } catch {
        return false;
      }
    },
    async install(sha256) {
      const target = packageDir(sha256);
      try {
        await extractArchive(await readFile(partFile(sha256)), target);
      } catch (err) {
        // A full disk (or a bad archive) must not leave a half-extracted copy taking space.
        for (const name of await readdir(dir).catch(() => [] as string[])) {
          if (name.startsWith(`${sha256}.partial-`)) await rm(path.join(dir, name), { recursive: true, force: true });
        }
        if (isDiskFull(err)) {
          await rm(partFile(sha256), { force: true });
          throw new OspreyError('OSP_ERR_MODEL_DOWNLOAD', `no space left on the disk extracting ${partFile(sha256)} into ${target}: removed`, { cause: err });
        }
        throw err;
      }
      await rm(partFile(sha256), { force: true });
      return target;
    },
    async remove(sha256) {
      await rm(packageDir(sha256), { recursive: true, force: true });
    },
    async touch(sha256) {
      const now = new Date();
      await utimes(packageDir(sha256), now, now).catch(() => undefined);
    },
    async prune(keep, protect) {
      const removed: string[] = [];
      const packages: { sha: string; used: number }[] = [];
      let protectedHere = 0;
      for (const name of await readdir(dir)) {
        const full = path.join(dir, name);
        if (SHA256.test(name)) {
          if (protect.has(name)) protectedHere++;
          else packages.push({ sha: name, used: (await stat(full)).mtimeMs });
        } else if (name.includes('.partial-')) {
          // An extraction interrupted by a crash (extractArchive's temp dir).
          await rm(full, { recursive: true, force: true });
        }
      }
      packages.sort((a, b) => b.used - a.used);
      for (const { sha } of packages.slice(Math.max(0, keep - protectedHere))) {
        await rm(packageDir(sha), { recursive: true, force: true });
        removed.push(sha);
      }
      for (const name of await readdir(downloads)) {
        const sha = name.replace(/\.part$/, '');
        if (!protect.has(sha)) await rm(path.join(downloads, name), { force: true });
      }
      return removed;
    },
  };
}
