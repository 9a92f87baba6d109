/**
 * Packs an ONNX file and a person's declarations into a model package directory (model file,
 * manifest.json with checksums, and the plug-in module if one is named), through
 * writeModelPackage so a packed package is exactly what every other writer produces.
 */
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Manifest } from '../protocol/manifest.js';
import { OspreyError } from '../protocol/errors.js';
import { describeOnnx } from './onnx-inspect.js';
import { writeModelPackage } from './package-writer.js';
import { packageNameFromFile, proposeManifest, type PackDeclarations } from './propose-manifest.js';

export interface PackOptions extends Omit<PackDeclarations, 'postprocess'> {
  /** Path of a plug-in ES module (.js or .mjs) to copy into the package. */
  postprocessFile?: string;
  /** Package directory to write. */
  out: string;
}

async function readInput(file: string, what: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/**
 * The plug-in as stored in the package: named `.mjs` (an ES module wherever the package lives),
 * without a trailing source-map comment that would point outside the package.
 */
function packagedPlugin(file: string, bytes: Buffer): { name: string; bytes: Uint8Array } {
  const m = basename(file).match(/^(.*)\.(m?js)$/);
  if (!m) throw new OspreyError('OSP_ERR_USAGE', `--postprocess must be a JavaScript ES module (.js or .mjs), got ${file}`);
  const name = `${m[1]!.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[.-]+/, '') || 'postprocess'}.mjs`;
  const text = bytes.toString('utf8').replace(/\n\/\/# sourceMappingURL=\S+\s*$/, '\n');
  return { name, bytes: Buffer.from(text, 'utf8') };
}

/** Packs `onnxFile` into `options.out`; returns the manifest written. */
export async function packModel(onnxFile: string, options: PackOptions): Promise<Manifest> {
  const bytes = await readInput(onnxFile, 'model');
  const desc = describeOnnx(bytes, onnxFile);
  const { postprocessFile, out, ...declared } = options;
  const plugin = postprocessFile ? packagedPlugin(postprocessFile, await readInput(postprocessFile, 'plug-in')) : undefined;
  const draft = proposeManifest(desc, { ...declared, name: declared.name ?? packageNameFromFile(onnxFile), ...(plugin && { postprocess: plugin.name }) });
  return writeModelPackage(out, draft, bytes, plugin ? { plugin: plugin.bytes } : {});
}
