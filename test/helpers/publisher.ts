/**
 * A test publisher: one Ed25519 key pair per test process, with the id the fleet's
 * registry.publisherKeys and the edges' fleet.trustedKeys name it by, and the real signing path
 * (`osprey model sign`'s signPackageFiles) applied to test packages; and (re-exported) the
 * smallest real anomaly model, so uploads pass the registry's run check.
 */
import { generateSigningKeys } from '../../models/artifact-signature.js';
import { packArchive, unpackArchive } from '../../models/package-archive.js';
import { readPackageDirectory, signPackageFiles, SIGNATURE_FILE } from '../../models/package-signature.js';

export { tinyAnomalyModel } from '../../models/tiny-model.js';

export const TEST_PUBLISHER_ID = 'test-publisher';
export const testPublisher = generateSigningKeys();

/** The publisher key entry for registry.publisherKeys or fleet.trustedKeys. */
export const testPublisherKey = () => ({ id: TEST_PUBLISHER_ID, publicKey: testPublisher.publicKeyPem });

/** The files with signature.json added, signed by `key` (default: the test publisher). */
export function signedFiles(
  files: ReadonlyMap<string, Uint8Array>,
  key: { id: string; privateKeyPem: string } = { id: TEST_PUBLISHER_ID, privateKeyPem: testPublisher.privateKeyPem },
): Map<string, Uint8Array> {
  const out = new Map([...files].filter(([n]) => n !== SIGNATURE_FILE));
  const sig = signPackageFiles(out, key.id, key.privateKeyPem);
  out.set(SIGNATURE_FILE, Buffer.from(JSON.stringify(sig)));
  return out;
}

/** A package archive with the test publisher's signature.json inside; bytes that are not a package archive come back as they are. */
export function signedArchive(archive: Uint8Array): Uint8Array {
  let files: Map<string, Uint8Array>;
  try {
    files = unpackArchive(archive);
    return packArchive(signedFiles(files));
  } catch {
    return archive; // not a package (the test is about that): sent unsigned
  }
}

/** A package directory as a signed upload archive. */
export async function signedDirectoryArchive(dir: string): Promise<Buffer> {
  return packArchive(signedFiles(await readPackageDirectory(dir)));
}
