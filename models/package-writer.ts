/**
 * Writes a model package directory: the model file and a manifest.json whose model.sha256 and
 * model.size are computed here, so a written package always verifies.
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Manifest } from '../protocol/manifest.js';
import { parseManifest } from './manifest-check.js';
import { MANIFEST_FILE, sha256Hex } from './package-reader.js';

/** A manifest before its model's checksum is known. */
export type ManifestDraft = Omit<Manifest, 'model'> & { model?: Partial<Manifest['model']> };

/**
 * Validates the manifest and writes `dir/<model.file>` and `dir/manifest.json` (creating dir).
 * The manifest is written last, through a rename, so a reader never sees a manifest whose model
 * is still being written. Returns the final manifest.
 */
export async function writeModelPackage(dir: string, draft: ManifestDraft, modelBytes: Uint8Array): Promise<Manifest> {
  const manifest = parseManifest(
    {
      ...draft,
      model: { file: draft.model?.file ?? 'model.onnx', sha256: sha256Hex(modelBytes), size: modelBytes.length },
    },
    'new manifest',
  );
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, manifest.model.file), modelBytes);
  const tmp = join(dir, `.${MANIFEST_FILE}.${process.pid}.tmp`);
  try {
    await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(tmp, join(dir, MANIFEST_FILE));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  return manifest;
}
