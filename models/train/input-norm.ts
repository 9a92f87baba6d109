/**
 * How the trainer's image becomes the backbone's input (`--input-norm`):
 * - `standardise` (default): gray, per-image standardisation ((x − mean) / std), 3 identical
 *   channels — best measured with the Caffe SqueezeNet on MTD and NEU;
 * - `backbone`: the backbone's own convention — colour order, value = (pixel·scale − mean) / std
 *   per channel, done by the edge's pre-processing from the manifest (its `color`, `scale`,
 *   `mean`, `std`). Values come from --color/--scale/--mean/--std, else from the ONNX metadata
 *   (`mean`, `std`, Image.BitmapPixelFormat, Image.NominalPixelRange), else colour rgb and scale
 *   1/255 (torchvision); mean and std must be given or in the metadata.
 *
 * No onnx/onnxruntime import: the CLI parses these options before loading the trainer.
 */
import { OspreyError } from '../../protocol/errors.js';

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

/** Backbone options shared by `osprey train anomaly|classify` (node:util parseArgs). */
export const BACKBONE_ARGS = {
  taps: { type: 'string' },
  'input-norm': { type: 'string' },
  color: { type: 'string' },
  scale: { type: 'string' },
  mean: { type: 'string' },
  std: { type: 'string' },
} as const;

export const BACKBONE_HELP = `  --taps A,B,C            backbone tensors to tap (default: found in the graph; docs/TRAINING.md)
  --input-norm MODE       standardise (gray, per-image; default) or backbone (its own colour,
                          scale, mean/std: --color rgb|bgr, --scale N, --mean a,b,c, --std a,b,c,
                          else the backbone's ONNX metadata; value = (pixel*scale - mean) / std)`;

const usage = (msg: string): never => {
  throw new OspreyError('OSP_ERR_USAGE', msg);
};

function numbers(flag: string, value: string | undefined, count?: number): number[] | undefined {
  if (value === undefined) return undefined;
  const nums = value.split(',').map((s) => Number(s.trim()));
  if (nums.some((n) => !Number.isFinite(n)) || (count !== undefined && nums.length !== count)) usage(`--${flag} needs ${count ?? 'comma-separated'} numbers, got "${value}"`);
  return nums;
}

/** The backbone choice from parsed CLI values: taps and input normalisation. */
export function backboneChoice(values: Partial<Record<keyof typeof BACKBONE_ARGS, string>>): { taps?: string[]; inputNorm?: InputNormOptions } {
  const taps = values.taps?.split(',').map((s) => s.trim()).filter(Boolean);
  if (values.taps !== undefined && taps!.length === 0) usage('--taps needs tensor names, got ""');
  const kind = values['input-norm'] as InputNormOptions['kind'];
  if (kind !== undefined && kind !== 'standardise' && kind !== 'backbone') usage(`--input-norm must be standardise|backbone, got "${kind}"`);
  const color = values.color as InputNormOptions['color'];
  if (color !== undefined && color !== 'rgb' && color !== 'bgr') usage(`--color must be rgb|bgr, got "${color}"`);
  const scale = numbers('scale', values.scale, 1)?.[0];
  if (scale !== undefined && !(scale > 0)) usage(`--scale must be positive, got "${values.scale}"`);
  const mean = numbers('mean', values.mean, 3);
  const std = numbers('std', values.std, 3);
  if (std?.some((s) => !(s > 0))) usage(`--std values must be positive, got "${values.std}"`);
  const given = Object.entries({ color, scale: values.scale, mean: values.mean, std: values.std }).filter(([, v]) => v !== undefined);
  if (given.length > 0 && kind !== 'backbone') usage(`--${given[0]![0]} needs --input-norm backbone`);
  const inputNorm: InputNormOptions = { ...(kind && { kind }), ...(color && { color }), ...(scale !== undefined && { scale }), ...(mean && { mean }), ...(std && { std }) };
  return { ...(taps && { taps }), ...(Object.keys(inputNorm).length > 0 && { inputNorm }) };
}

function meta(metadata: Record<string, string>, key: string): string | undefined {
  return Object.entries(metadata).find(([k]) => k.toLowerCase() === key.toLowerCase())?.[1];
}

/** A metadata list: "0.485,0.456,0.406" or "[0.485, 0.456, 0.406]". */
function metaNumbers(metadata: Record<string, string>, key: string): number[] | undefined {
  const v = meta(metadata, key);
  if (v === undefined) return undefined;
  const nums = v.replace(/^\s*\[|\]\s*$/g, '').split(',').map((s) => Number(s.trim()));
  return nums.length === 3 && nums.every(Number.isFinite) ? nums : undefined;
}

const RANGES: Record<string, { scale: number; mean?: number[]; std?: number[] }> = {
  nominalrange_0_255: { scale: 1 },
  normalized_0_1: { scale: 1 / 255 },
  normalized_1_1: { scale: 1 / 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] },
};

/** The input normalisation to use, from the options and the backbone's metadata. */
export function resolveInputNorm(opts: InputNormOptions | undefined, metadata: Record<string, string>, file: string): InputNorm {
  if ((opts?.kind ?? 'standardise') === 'standardise') return { kind: 'standardise' };
  const from: string[] = [];
  const format = meta(metadata, 'Image.BitmapPixelFormat')?.toLowerCase();
  const metaColor = format === 'bgr8' ? 'bgr' : format === 'rgb8' ? 'rgb' : undefined;
  const range = RANGES[meta(metadata, 'Image.NominalPixelRange')?.toLowerCase() ?? ''];
  const pick = <T>(name: string, flag: T | undefined, fromMeta: T | undefined, fallback?: T): T | undefined => {
    if (flag !== undefined) return (from.push(`${name} from --${name}`), flag);
    if (fromMeta !== undefined) return (from.push(`${name} from the ONNX metadata`), fromMeta);
    if (fallback !== undefined) from.push(`${name} default`);
    return fallback;
  };
  const color = pick('color', opts?.color, metaColor, 'rgb' as const)!;
  const scale = pick('scale', opts?.scale, range?.scale, 1 / 255)!;
  const mean = pick('mean', opts?.mean, metaNumbers(metadata, 'mean') ?? range?.mean);
  const std = pick('std', opts?.std, metaNumbers(metadata, 'std') ?? range?.std);
  if (!mean || !std) usage(`--input-norm backbone needs --mean a,b,c and --std a,b,c: ${file} carries no mean/std in its metadata`);
  return { kind: 'backbone', color, scale, mean: mean!, std: std!, source: from.join(', ') };
}
