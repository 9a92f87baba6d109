/**
 * How the trainer's image becomes the backbone's input (`--input-norm`):
 * - `standardise` (default): gray, per-image standardisation ((x − mean) / std), 3 identical
 *   channels — best measured with the Caffe SqueezeNet on MTD and NEU;
 * - `backbone`: the backbone's own convention — colour order, value = (pixel·scale − mean) / std
 *   per channel, done by the edge's pre-processing from the manifest (its `color`, `scale`,
 *   `mean`, `std`). Values come from --color/--scale/--mean/--std, else from the ONNX metadata
 *   (`mean`, `std`, Image.BitmapPixelFormat, Image.NominalPixelRange as `model pack` reads them),
 *   else colour rgb and scale 1/255 (torchvision); mean and std must be given or in the metadata.
 */
import { OspreyError } from '../../protocol/errors.js';
import { metadataValue, PIXEL_FORMATS, PIXEL_RANGES } from '../propose-manifest.js';

export type InputNorm =
  | { kind: 'standardise' }
  | { kind: 'backbone'; color: 'rgb' | 'bgr'; scale: number; mean: number[]; std: number[]; source: string };

/** What the person asked for (CLI flags); every field optional. */
export interface InputNormOptions {
  kind?: 'standardise' | 'backbone';
  color?: 'rgb' | 'bgr';
  scale?: number;
  mean?: number[];
  std?: number[];
}

const usage = (msg: string): never => {
  throw new OspreyError('OSP_ERR_USAGE', msg);
};

/** A metadata list: "0.485,0.456,0.406" or "[0.485, 0.456, 0.406]". */
function metaNumbers(metadata: Record<string, string>, key: string): number[] | undefined {
  const v = metadataValue(metadata, key);
  if (v === undefined) return undefined;
  const nums = v.replace(/^\s*\[|\]\s*$/g, '').split(',').map((s) => Number(s.trim()));
  return nums.length === 3 && nums.every(Number.isFinite) ? nums : undefined;
}

/** The input normalisation to use, from the options and the backbone's metadata. */
export function resolveInputNorm(opts: InputNormOptions | undefined, metadata: Record<string, string>, file: string): InputNorm {
  if ((opts?.kind ?? 'standardise') === 'standardise') return { kind: 'standardise' };
  const from: string[] = [];
  // Keys and values are case-insensitive (ONNX Image Category Definition).
  const known = <T>(table: Record<string, T>, value: string | undefined) => Object.entries(table).find(([k]) => k.toLowerCase() === value?.toLowerCase())?.[1];
  const format = known(PIXEL_FORMATS, metadataValue(metadata, 'Image.BitmapPixelFormat'));
  const metaColor = format === 'gray' ? undefined : format;
  const range = known(PIXEL_RANGES, metadataValue(metadata, 'Image.NominalPixelRange'));
  const triple = (v: number | undefined) => (v === undefined ? undefined : [v, v, v]);
  const pick = <T>(name: string, flag: T | undefined, fromMeta: T | undefined, fallback?: T): T | undefined => {
    if (flag !== undefined) return (from.push(`${name} from --${name}`), flag);
    if (fromMeta !== undefined) return (from.push(`${name} from the ONNX metadata`), fromMeta);
    if (fallback !== undefined) from.push(`${name} default`);
    return fallback;
  };
  const color = pick('color', opts?.color, metaColor, 'rgb' as const)!;
  const scale = pick('scale', opts?.scale, range?.scale, 1 / 255)!;
  // A nominal range is the whole convention (0_255: the model normalises inside; 1_1: (x/255 − 0.5)/0.5).
  const mean = pick('mean', opts?.mean, metaNumbers(metadata, 'mean') ?? triple(range?.mean));
  const std = pick('std', opts?.std, metaNumbers(metadata, 'std') ?? triple(range?.std));
  if (!mean || !std) usage(`--input-norm backbone needs --mean a,b,c and --std a,b,c: ${file} carries no mean/std or Image.NominalPixelRange in its metadata`);
  return { kind: 'backbone', color, scale, mean: mean!, std: std!, source: from.join(', ') };
}
