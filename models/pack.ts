/**
 * Writes a model package directory from an ONNX file and a person's declarations:
 * model.onnx, manifest.json (with the sha256), and the plug-in module if one is named.
 */
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Manifest } from '../protocol/manifest.js';
import { OspreyError } from '../protocol/errors.js';
import { describeOnnx } from './onnx-inspect.js';
import { proposeManifest, type PackDeclarations } from './propose-manifest.js';

export interface PackOptions extends Omit<PackDeclarations, 'postprocess'> {
  /** Path of a plug-in module (.js/.mjs) to copy into the package. */
  postprocessFile?: string;
  out: string;
}

/** Packs `onnxFile` into `options.out`; returns the manifest written. */
export async function packModel(onnxFile: string, options: PackOptions): Promise<Manifest> {
  let bytes: Buffer;
  try {
    bytes = await readFile(onnxFile);
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read ${onnxFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  const desc = describeOnnx(bytes, onnxFile);
  const { postprocessFile, out, ...declared } = options;
  let plugin: string | undefined;
  if (postprocessFile) {
    plugin = basename(postprocessFile).replace(/\.(ts|mts)$/, '.js');
    if (!/\.(m?js)$/.test(plugin)) throw new OspreyError('OSP_ERR_USAGE', `--postprocess must be a JavaScript module (.js or .mjs), got ${postprocessFile}`);
  }
  const manifest = proposeManifest(desc, { ...declared, ...(plugin && { postprocess: plugin }) });
  manifest.model.sha256 = createHash('sha256').update(bytes).digest('hex');
  manifest.model.size = bytes.length;
  await mkdir(out, { recursive: true });
  await writeFile(join(out, manifest.model.file), bytes);
  if (postprocessFile && plugin) await copyFile(postprocessFile, join(out, plugin));
  await writeFile(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
