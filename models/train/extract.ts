/**
 * What the trainers share: listing image folders, the input spec of the feature graph, an
 * onnxruntime session that runs one output through the edge's exact pre-processing, and reading
 * the backbone.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { OspreyError, isOspreyError } from '../../protocol/errors.js';
import type { Manifest } from '../../protocol/manifest.js';
import { resolveInput, type ResolvedInput } from '../manifest-check.js';
import { preprocessImage } from '../preprocess.js';
import type { InputTensor } from '../tensor.js';
import type { FeatureSpec } from './features-graph.js';

const IMAGE_EXT = /\.(jpe?g|png|bmp|webp|tiff?)$/i;

/** Image files under `dir` (and, when `depth` > 0, its sub-folders), sorted; pixel masks (*.mask.*) skipped. */
export async function listImages(dir: string, depth = 0): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read image folder ${dir}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const out: string[] = [];
  for (const e of entries) {
    const p = join(dir, e.name);
    const s = e.isSymbolicLink() ? await stat(p).catch(() => undefined) : e;
    if (!s) continue;
    if (s.isDirectory() && depth > 0) out.push(...(await listImages(p, depth - 1)));
    else if (s.isFile() && IMAGE_EXT.test(e.name) && !/\.mask\./i.test(e.name)) out.push(p);
  }
  return out.sort();
}

/** The package's input: gray 0..1 (standardised in the graph) or the backbone's own normalisation. */
export function inputSpec(spec: FeatureSpec): Manifest['input'] {
  const common = { name: 'image', layout: 'nchw', width: spec.size, height: spec.size, dtype: 'float32', resize: 'stretch', interpolation: spec.interpolation } as const;
  const n = spec.input;
  if (n?.kind === 'backbone') return { ...common, color: n.color, scale: n.scale, mean: n.mean, std: n.std };
  return { ...common, color: 'gray', scale: 1 / 255, mean: [0], std: [1] };
}

export class Extractor {
  private constructor(
    private readonly session: ort.InferenceSession,
    private readonly input: ResolvedInput,
    private readonly output: string,
  ) {}

  static async create(bytes: Uint8Array, output: string, input: Manifest['input']): Promise<Extractor> {
    const session = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all' });
    return new Extractor(session, resolveInput(input), output);
  }

  /** The output for one image, through the edge's exact pre-processing. */
  async run(bytes: Buffer, file: string): Promise<Float32Array> {
    return this.runTensor(await this.preprocess(bytes, file));
  }

  /** The edge's pre-processing of one image: the graph's input tensor. */
  async preprocess(bytes: Buffer, file: string): Promise<InputTensor> {
    try {
      return (await preprocessImage(bytes, this.input)).tensor;
    } catch (err) {
      if (isOspreyError(err)) throw new OspreyError(err.code, `${file}: ${err.message}`, { cause: err });
      throw err;
    }
  }

  /** The output for an input tensor (an image pre-processed here, possibly altered: synthetic-anomalies.ts). */
  async runTensor(t: InputTensor): Promise<Float32Array> {
    const res = await this.session.run({ image: new ort.Tensor(t.dtype, t.data, t.dims) }, [this.output]);
    return Float32Array.from(res[this.output].data as Float32Array);
  }

  /** The output for each image in order, with a progress line every 100. */
  async runAll(files: readonly string[], bytes: readonly Buffer[], log: (line: string) => void): Promise<Float32Array[]> {
    const out: Float32Array[] = [];
    for (const [i, f] of files.entries()) {
      out.push(await this.run(bytes[i], f));
      if ((i + 1) % 100 === 0) log(`features: ${i + 1}/${files.length}`);
    }
    return out;
  }

  close(): Promise<void> {
    return this.session.release();
  }
}

export async function readAll(files: string[]): Promise<Buffer[]> {
  return Promise.all(files.map((f) => readFile(f)));
}

/** The backbone's bytes from a package folder (its model.onnx) or an ONNX file; a one-line error naming --backbone. */
export async function readBackbone(path: string): Promise<Buffer> {
  try {
    const s = await stat(path);
    return await readFile(s.isDirectory() ? join(path, 'model.onnx') : path);
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `--backbone ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
}
