/**
 * Validates a manifest: the JSON Schema in protocol/manifest.ts first, then the rules a schema
 * cannot express (cross-field consistency). Every failure is one line that names the field.
 */
import type { ErrorObject } from 'ajv';
import { ManifestSchema, type Manifest, type ManifestInput } from '../protocol/manifest.js';
import { OspreyError, safeLine } from '../protocol/errors.js';
import { MAX_JSON_DEPTH, nestedDeeperThan, validatorFor } from '../protocol/validator.js';

/** The manifest's input section with every default applied and per-channel arrays expanded. */
export interface ResolvedInput {
  name: string;
  layout: ManifestInput['layout'];
  width: number;
  height: number;
  dtype: ManifestInput['dtype'];
  color: ManifestInput['color'];
  resize: ManifestInput['resize'];
  channels: 1 | 3;
  padValue: number;
  cropFraction: number;
  interpolation: NonNullable<ManifestInput['interpolation']>;
  scale: number;
  /** One entry per channel, in the model's channel order. */
  mean: number[];
  std: number[];
}

function fieldOf(path: string): string {
  return path.replace(/^\//, '').replace(/\//g, '.') || '(root)';
}

/** One readable line from ajv's errors, preferring the most specific one. */
function describe(errors: ErrorObject[]): string {
  const e = errors.find((x) => x.keyword !== 'anyOf' && x.keyword !== 'oneOf') ?? errors[0]!;
  const at = fieldOf(e.instancePath);
  const params = e.params as Record<string, unknown>;
  switch (e.keyword) {
    case 'required':
      return `missing field ${at === '(root)' ? '' : `${at}.`}${String(params.missingProperty)}`;
    case 'additionalProperties':
      return `unknown field ${at === '(root)' ? '' : `${at}.`}${String(params.additionalProperty)}`;
    case 'enum':
      return `${at} must be one of ${(params.allowedValues as unknown[]).join(', ')}`;
    case 'const':
      return `${at} must be ${JSON.stringify(params.allowedValue)}`;
    default:
      return `${at} ${e.message ?? e.keyword}`;
  }
}

function fail(where: string, message: string): never {
  // Field names and labels come from the manifest: escaped and cut to one line.
  throw new OspreyError('OSP_ERR_MODEL_MANIFEST', `invalid manifest (${where}): ${safeLine(message)}`);
}

/**
 * Checks a parsed manifest.json and returns it typed. Throws OSP_ERR_MODEL_MANIFEST with a
 * one-line message naming the offending field. `where` names the source in the message.
 */
export function parseManifest(value: unknown, where = 'manifest.json'): Manifest {
  const validate = validatorFor(ManifestSchema);
  if (!validate(value)) fail(where, describe(validate.errors ?? []));
  // postprocess.options is free-form: bounded here, or storing and signing it overflows the stack.
  if (nestedDeeperThan(value)) fail(where, `nested deeper than ${MAX_JSON_DEPTH} levels`);
  const m = value as Manifest;
  const labels = new Set(m.labels);
  const channels = m.input.color === 'gray' ? 1 : 3;

  for (const key of ['mean', 'std'] as const) {
    const arr = m.input[key];
    if (arr && arr.length !== 1 && arr.length !== channels) {
      fail(where, `input.${key} must have 1 or ${channels} values for color ${m.input.color}, not ${arr.length}`);
    }
  }
  if (m.input.dtype === 'uint8') {
    // A uint8 input receives raw pixel values; a scale or mean/std would be silently ignored.
    const identity =
      (m.input.scale ?? 1) === 1 && (m.input.mean ?? [0]).every((v) => v === 0) && (m.input.std ?? [1]).every((v) => v === 1);
    if (!identity) fail(where, 'input.scale/mean/std must be 1/0/1 for dtype uint8 (the model receives raw pixels)');
  }

  const out = m.outputs[m.task];
  if (!out) fail(where, `missing field outputs.${m.task} (required for task ${m.task})`);

  if (m.task === 'classification') {
    if (m.labels.length === 0) fail(where, 'labels must not be empty for task classification');
  }
  if (m.task === 'anomaly') {
    const a = m.outputs.anomaly!;
    if (a.format === 'plugin' && !m.postprocess) fail(where, 'missing field postprocess (required for anomaly format plugin)');
    if (a.format !== 'plugin' && !a.score && !a.map) fail(where, 'outputs.anomaly needs score or map (or both)');
    if (a.format === 'raw' && !a.normalization) fail(where, 'missing field outputs.anomaly.normalization (required for format raw)');
    if (a.normalization && !(a.normalization.max > a.normalization.min)) {
      fail(where, 'outputs.anomaly.normalization.max must be greater than min');
    }
  }
  if (m.task === 'detection') {
    const d = m.outputs.detection!;
    if (d.format === 'plugin' && !m.postprocess) fail(where, 'missing field postprocess (required for detection format plugin)');
    if (d.format !== 'plugin' && !d.output) fail(where, `missing field outputs.detection.output (required for format ${d.format})`);
    if (m.labels.length === 0) fail(where, 'labels must not be empty for task detection');
    for (const [label, range] of Object.entries(d.expectedCounts ?? {})) {
      if (!labels.has(label)) fail(where, `outputs.detection.expectedCounts.${label} is not one of labels`);
      if (range.min !== undefined && range.max !== undefined && range.min > range.max) {
        fail(where, `outputs.detection.expectedCounts.${label}.min must not exceed max`);
      }
    }
  }

  // A module that nothing calls is a mistake, and code shipped to every edge for nothing.
  const usesPlugin = (m.task === 'detection' && m.outputs.detection?.format === 'plugin') || (m.task === 'anomaly' && m.outputs.anomaly?.format === 'plugin');
  if (m.postprocess && !usesPlugin) fail(where, `postprocess is only used by format plugin (outputs.${m.task}${'format' in out ? `.format is ${out.format}` : ' has no format'})`);

  // An anomaly model's verdict label is 'anomaly'; everything else must name a declared label.
  const known = (label: string) => labels.has(label) || (m.task === 'anomaly' && label === 'anomaly');
  m.defectLabels.forEach((label, i) => {
    if (!known(label)) fail(where, `defectLabels.${i} "${label}" is not one of labels`);
  });
  for (const label of Object.keys(m.thresholds.perLabel ?? {})) {
    if (!known(label)) fail(where, `thresholds.perLabel.${label} is not one of labels`);
  }
  return m;
}

/** Applies the input defaults documented in the schema. */
export function resolveInput(input: ManifestInput): ResolvedInput {
  const channels = input.color === 'gray' ? 1 : 3;
  const perChannel = (arr: number[] | undefined, fallback: number) => {
    const a = arr ?? [fallback];
    return a.length === channels ? [...a] : Array.from({ length: channels }, () => a[0]!);
  };
  return {
    name: input.name,
    layout: input.layout,
    width: input.width,
    height: input.height,
    dtype: input.dtype,
    color: input.color,
    resize: input.resize,
    channels,
    padValue: input.padValue ?? 114,
    cropFraction: input.cropFraction ?? 1,
    interpolation: input.interpolation ?? 'linear',
    scale: input.scale ?? 1,
    mean: perChannel(input.mean, 0),
    std: perChannel(input.std, 1),
  };
}
