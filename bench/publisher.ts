/**
 * The benchmarks' model publisher: a key pair made per run, its public half in a file the fleet
 * child trusts (registry.publisherKeys), and packages signed as `osprey model sign` signs them,
 * since the registry refuses unsigned uploads by default.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSigningKeys } from '../models/artifact-signature.js';
import { packArchive } from '../models/package-archive.js';
import { readPackageDirectory, signPackageFiles, SIGNATURE_FILE } from '../models/package-signature.js';

export const BENCH_PUBLISHER_ID = 'bench-publisher';

export interface BenchPublisher {
  /** The public key file, for the fleet child's registry.publisherKeys. */
  publicKeyFile: string;
  publicKeyPem: string;
  /** The package's files as an upload archive with its signature.json. */
  signedArchive(files: ReadonlyMap<string, Uint8Array>): Buffer;
  signedDirectory(dir: string): Promise<Buffer>;
}

/** Makes a publisher key pair; the public key goes to `dir`. */
export async function benchPublisher(dir: string): Promise<BenchPublisher> {
  const keys = generateSigningKeys();
  await mkdir(dir, { recursive: true });
  const publicKeyFile = join(dir, `${BENCH_PUBLISHER_ID}.pub`);
  await writeFile(publicKeyFile, keys.publicKeyPem);
  const signedArchive = (files: ReadonlyMap<string, Uint8Array>) => {
    const out = new Map(files);
    out.set(SIGNATURE_FILE, Buffer.from(JSON.stringify(signPackageFiles(files, BENCH_PUBLISHER_ID, keys.privateKeyPem))));
    return packArchive(out);
  };
  return { publicKeyFile, publicKeyPem: keys.publicKeyPem, signedArchive, signedDirectory: async (d) => signedArchive(await readPackageDirectory(d)) };
}
