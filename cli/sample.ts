/**
 * `osprey sample image|model`: what a first try needs without a camera or a trained model: a
 * synthetic part image (the demo's generator) and the built-in anomaly model package.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { ensureDemoModel } from '../models/demo-model.js';
import { SYNTHETIC_DEFECTS, generatePartImage, type SyntheticDefect } from '../models/synthetic.js';
import { OspreyError } from '../protocol/errors.js';
import { intOption, parse } from './args.js';

export const sampleHelp = `Usage: osprey sample image --out FILE [--defect KIND] [--seed N] [--png]
       osprey sample model --out DIR

image   writes a synthetic 256×256 part image (JPEG, or PNG with --png), as the demo feeds its
        edges: a good part, or one with --defect ${SYNTHETIC_DEFECTS.join('|')}. The same seed
        gives the same image (default seed 1).
model   writes the built-in anomaly model package (trained on synthetic good parts in a few
        seconds) under DIR and prints its directory, DIR/osprey-demo-anomaly. Kept as is when
        already there.

Options:
  --out PATH     the file (image) or directory (model) to write
  --defect KIND  image: the defect to draw (default none)
  --seed N       image: which part (default 1)
  --png          image: PNG instead of JPEG
  -h, --help     this text`;

async function imageCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' }, defect: { type: 'string' }, seed: { type: 'string' }, png: { type: 'boolean' } });
  if (values.help) {
    console.log(sampleHelp);
    return 0;
  }
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', 'sample image needs --out FILE');
  const defect = values.defect ?? null;
  if (defect !== null && !(SYNTHETIC_DEFECTS as readonly string[]).includes(defect)) {
    throw new OspreyError('OSP_ERR_USAGE', `--defect must be one of ${SYNTHETIC_DEFECTS.join(', ')}, got "${defect}"`);
  }
  const seed = intOption('seed', values.seed, 1, 0, 2 ** 31 - 1);
  const bytes = await generatePartImage({ seed, defect: defect as SyntheticDefect | null, format: values.png ? 'png' : 'jpeg' });
  const out = resolve(values.out);
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, bytes);
  console.log(out);
  return 0;
}

async function modelCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { out: { type: 'string' } });
  if (values.help) {
    console.log(sampleHelp);
    return 0;
  }
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', 'sample model needs --out DIR');
  const dir = resolve(values.out);
  await mkdir(dir, { recursive: true });
  console.log(await ensureDemoModel(dir));
  return 0;
}

/** The verbs of `osprey sample`. */
export const sampleCommands = { image: imageCommand, model: modelCommand };
