/**
 * Writes a model package directory: the model file, the plug-in module if there is one, and a
 * manifest.json whose checksums (model.sha256, postprocess.sha256) are computed here, so a
 * written package always verifies.
 */
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Manifest } from '../protocol/manifest.js';
import { OspreyError } from '../protocol/errors.js';
import { parseManifest } from './manifest-check.js';
import { MANIFEST_FILE, sha256Hex } from './package-reader.js';

type Postprocess = NonNullable<Manifest['postprocess']>;

/** A manifest before its files' checksums are known. */
export type ManifestDraft = Omit<Manifest, 'model' | 'postprocess'> & {
  model?: Partial<Manifest['model']>;
  postprocess?: Omit<Postprocess, 'sha256'> & { sha256?: string };
};

/** Files that go into the package besides the model. */
export interface PackageFiles {
  /** The bytes of `postprocess.module` (required when the draft names one). */
  plugin?: Uint8Array;
}

/**
 * Validates the manifest and writes `dir/<model.file>`, the plug-in module and
 * `dir/manifest.json` (creating dir). The manifest is written last, through a rename, so a reader
 * never sees a manifest whose files are still being written. Returns the final manifest.
 */
export async function writeModelPackage(
  dir: string,
  draft: ManifestDraft,
  modelBytes: Uint8Array,
  files: PackageFiles = {},
): Promise<Manifest> {
  const { postprocess, ...rest } = draft;
  if (postprocess && !files.plugin) {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `postprocess.module ${postprocess.module} named but its bytes were not given`);
  }
  const manifest = parseManifest(
    {
      ...rest,
      model: { file: draft.model?.file ?? 'model.onnx', sha256: sha256Hex(modelBytes), size: modelBytes.length },
      ...(postprocess && { postprocess: { ...postprocess, sha256: sha256Hex(files.plugin!) } }),
    },
    'new manifest',
  );
  if (manifest.postprocess && manifest.postprocess.module === manifest.model.file) {
    throw new OspreyError('OSP_ERR_MODEL_MANIFEST', 'postprocess.module and model.file must be different files');
  }
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, manifest.model.file), modelBytes);
  if (manifest.postprocess) await writeFile(join(dir, manifest.postprocess.module), files.plugin!);
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
