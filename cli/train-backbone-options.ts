/** `osprey train anomaly|classify`'s backbone options: taps and input normalisation (models/train/input-norm.ts). */
import { OspreyError } from '../protocol/errors.js';
import type { InputNormOptions } from '../models/train/input-norm.js';
import { list, numbers, oneOf } from './args.js';

/** The options (node:util parseArgs), spread into both commands' option tables. */
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

/** The backbone choice from parsed values; a one-line usage error naming the option. */
export function backboneChoice(values: Partial<Record<keyof typeof BACKBONE_ARGS, string>>): { taps?: string[]; inputNorm?: InputNormOptions } {
  const taps = list(values.taps);
  if (taps?.length === 0) usage(`--taps needs tensor names, got "${values.taps}"`);
  const kind = oneOf('input-norm', values['input-norm'], ['standardise', 'backbone'] as const);
  const color = oneOf('color', values.color, ['rgb', 'bgr'] as const);
  const scale = numbers('scale', values.scale, 1)?.[0];
  if (scale !== undefined && !(scale > 0)) usage(`--scale must be positive, got "${values.scale}"`);
  const mean = numbers('mean', values.mean, 3);
  const std = numbers('std', values.std, 3);
  if (std?.some((s) => !(s > 0))) usage(`--std values must be positive, got "${values.std}"`);
  const given = (['color', 'scale', 'mean', 'std'] as const).find((k) => values[k] !== undefined);
  if (given && kind !== 'backbone') usage(`--${given} needs --input-norm backbone`);
  const inputNorm: InputNormOptions = { ...(kind && { kind }), ...(color && { color }), ...(scale !== undefined && { scale }), ...(mean && { mean }), ...(std && { std }) };
  return { ...(taps && { taps }), ...(Object.keys(inputNorm).length > 0 && { inputNorm }) };
}
