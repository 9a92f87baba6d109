/** `osprey model inspect|pack|validate`: turning an exported ONNX file into a model package. */
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { loadModelPackage } from '../models/index.js';
import { inspectOnnxFile } from '../models/onnx-inspect.js';
import { packModel } from '../models/pack.js';
import { proposeManifest } from '../models/propose-manifest.js';
import { OspreyError, oneLine } from '../protocol/errors.js';
import type { Task } from '../protocol/manifest.js';
import { parse } from './args.js';

export const modelHelp = `Usage: osprey model <inspect|pack|validate> ...

  osprey model inspect FILE.onnx
      Inputs and outputs (names, dtypes, shapes), opset, metadata_props, the convention
      recognised and a proposed manifest, as JSON.

  osprey model pack FILE.onnx --task classification|anomaly|detection --out DIR [options]
      --name NAME --version V        package identity (default: file name, 1)
      --labels FILE|a,b,c            class names (a file: one per line, or "index,name" lines)
      --defect-labels a,b            labels that make a frame defective (default: all; anomaly: anomaly)
      --size WxH                     input size (must agree with a fixed-size model)
      --resize stretch|letterbox|center-crop   --crop-fraction F
      --color rgb|bgr|gray           --layout nchw|nhwc
      --scale N --mean a,b,c --std a,b,c       value = (pixel*scale - mean) / std
      --activation softmax|sigmoid|none        classifier output (default: detected)
      --normalization min,max,threshold        raw anomaly scores
      --confidence X --iou X                   detection filtering and NMS
      --postprocess MODULE           plug-in (.js) copied into the package
      --threshold X                  default defect threshold
      Writes the package, then loads it and runs it once to prove it computes.

  osprey model validate DIR
      Checks a package: manifest schema, sha256, ONNX input/outputs, one inference.`;

function list(value: string | undefined): string[] | undefined {
  return value === undefined ? undefined : value.split(',').map((s) => s.trim()).filter(Boolean);
}

function numbers(flag: string, value: string | undefined, count?: number): number[] | undefined {
  const parts = list(value);
  if (!parts) return undefined;
  const nums = parts.map(Number);
  if (nums.some((n) => !Number.isFinite(n)) || (count !== undefined && nums.length !== count)) {
    throw new OspreyError('OSP_ERR_USAGE', `--${flag} needs ${count ?? 'comma-separated'} numbers, got "${value}"`);
  }
  return nums;
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!allowed.includes(value as T)) throw new OspreyError('OSP_ERR_USAGE', `--${flag} must be one of ${allowed.join('|')}, got "${value}"`);
  return value as T;
}

/** Labels from a comma list, or from a file (one per line, or "index,name" lines). */
async function labelsOption(value: string | undefined): Promise<string[] | undefined> {
  if (value === undefined) return undefined;
  let text: string | undefined;
  try {
    text = await readFile(value, 'utf8');
  } catch {
    return list(value);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  return lines.map((l) => l.match(/^\d+\s*[,:\t ]\s*(.+)$/)?.[1] ?? l);
}

/** Runs one frame through a package to prove that its outputs can be read. */
export async function smokeTest(dir: string): Promise<{ verdict: string; label: string; score: number }> {
  const runner = await loadModelPackage(dir);
  try {
    const image = await sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 128, g: 128, b: 128 } } }).png().toBuffer();
    const r = await runner.inspect(image);
    return { verdict: r.verdict, label: r.label, score: r.score };
  } finally {
    await runner.close();
  }
}

async function inspect(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, true);
  if (values.help || positionals.length !== 1) {
    console.log(modelHelp);
    return values.help ? 0 : 2;
  }
  const desc = await inspectOnnxFile(positionals[0]!);
  let proposedManifest: unknown = null;
  let proposalError: string | undefined;
  try {
    proposedManifest = proposeManifest(desc, {});
  } catch (err) {
    proposalError = oneLine(err);
  }
  console.log(JSON.stringify({ file: positionals[0], ...desc, proposedManifest, ...(proposalError && { proposalError }) }, null, 2));
  return 0;
}

async function pack(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      task: { type: 'string' }, out: { type: 'string' }, name: { type: 'string' }, version: { type: 'string' },
      labels: { type: 'string' }, 'defect-labels': { type: 'string' }, size: { type: 'string' },
      resize: { type: 'string' }, 'crop-fraction': { type: 'string' }, color: { type: 'string' },
      scale: { type: 'string' }, mean: { type: 'string' }, std: { type: 'string' }, layout: { type: 'string' },
      postprocess: { type: 'string' }, threshold: { type: 'string' }, activation: { type: 'string' },
      normalization: { type: 'string' }, confidence: { type: 'string' }, iou: { type: 'string' },
    },
    true,
  );
  if (values.help) {
    console.log(modelHelp);
    return 0;
  }
  if (positionals.length !== 1) throw new OspreyError('OSP_ERR_USAGE', 'model pack needs exactly one FILE.onnx');
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', 'model pack needs --out DIR');
  const file = positionals[0]!;
  let size: { width: number; height: number } | undefined;
  if (values.size !== undefined) {
    const m = values.size.match(/^(\d+)x(\d+)$/);
    if (!m) throw new OspreyError('OSP_ERR_USAGE', `--size must be WxH, got "${values.size}"`);
    size = { width: Number(m[1]), height: Number(m[2]) };
  }
  const norm = numbers('normalization', values.normalization, 3);
  const single = (flag: string, v: string | undefined) => numbers(flag, v, 1)?.[0];
  const manifest = await packModel(file, {
    out: values.out,
    name: values.name ?? file.replace(/^.*\//, '').replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9._-]/g, '-'),
    ...(values.version && { version: values.version }),
    task: oneOf<Task>('task', values.task, ['classification', 'anomaly', 'detection']),
    labels: await labelsOption(values.labels),
    defectLabels: list(values['defect-labels']),
    size,
    resize: oneOf('resize', values.resize, ['stretch', 'letterbox', 'center-crop'] as const),
    cropFraction: single('crop-fraction', values['crop-fraction']),
    color: oneOf('color', values.color, ['rgb', 'bgr', 'gray'] as const),
    layout: oneOf('layout', values.layout, ['nchw', 'nhwc'] as const),
    scale: single('scale', values.scale),
    mean: numbers('mean', values.mean),
    std: numbers('std', values.std),
    activation: oneOf('activation', values.activation, ['softmax', 'sigmoid', 'none'] as const),
    threshold: single('threshold', values.threshold),
    confidence: single('confidence', values.confidence),
    iou: single('iou', values.iou),
    ...(norm && { normalization: { min: norm[0]!, max: norm[1]!, threshold: norm[2]! } }),
    ...(values.postprocess && { postprocessFile: values.postprocess }),
  });
  const smoke = await smokeTest(values.out);
  console.log(JSON.stringify({ packed: values.out, name: manifest.name, version: manifest.version, task: manifest.task, sha256: manifest.model.sha256, smokeTest: smoke }));
  return 0;
}

async function validate(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, true);
  if (values.help || positionals.length !== 1) {
    console.log(modelHelp);
    return values.help ? 0 : 2;
  }
  const smoke = await smokeTest(positionals[0]!);
  console.log(JSON.stringify({ valid: true, package: positionals[0], smokeTest: smoke }));
  return 0;
}

export const modelCommands = { inspect, pack, validate };
