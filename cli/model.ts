/** `osprey model inspect|pack|validate`: turning an exported ONNX file into a model package. */
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { resolve } from 'node:path';
import sharp from 'sharp';
import { loadModelPackage, verifyModelPackage } from '../models/runtime.js';
import { inspectOnnxFile } from '../models/onnx-inspect.js';
import { packModel } from '../models/pack.js';
import { packageNameFromFile, proposeManifest } from '../models/propose-manifest.js';
import { OspreyError, oneLine } from '../protocol/errors.js';
import type { Manifest, Task } from '../protocol/manifest.js';
import { list, numbers, oneOf, parse } from './args.js';
import { signCommands, signHelp } from './model-sign.js';
import { identityOfFiles, parsePackageSignature, readPackageDirectory, SIGNATURE_FILE } from '../models/package-signature.js';
import { verifyArtifact, signedStatement } from '../models/artifact-signature.js';
import { parseEd25519PublicKey } from '../models/trusted-keys.js';

export const modelHelp = `Usage: osprey model <inspect|pack|validate|keygen|sign> ...

  osprey model inspect FILE.onnx
      Inputs and outputs (names, dtypes, shapes), opset, metadata_props, the convention
      recognised (ultralytics, anomalib-v2, anomalib-raw, classifier-softmax, classifier-logits,
      unknown) and a proposed manifest, as JSON.

  osprey model pack FILE.onnx --out DIR [options]
      --task classification|anomaly|detection   (default: what the model says)
      --name NAME --version V        package identity (default: file name, 1)
      --labels FILE|a,b,c            class names (a file: one per line, or "index,name" lines)
      --defect-labels a,b            labels that make a frame defective (default: none;
                                     anomaly: anomaly)
      --threshold X                  default defect threshold (default 0.5)
      --size WxH                     input size (must agree with a fixed-size model)
      --resize stretch|letterbox|center-crop   --crop-fraction F   --pad-value N
      --color rgb|bgr|gray           --layout nchw|nhwc
      --scale N --mean a,b,c --std a,b,c       value = (pixel*scale - mean) / std
      --activation softmax|sigmoid|none        classifier output (default: detected)
      --normalization min,max,threshold        raw anomaly scores (anomalib min-max)
      --confidence X --iou X --max-detections N --agnostic-nms   detection filtering and NMS
      --expect LABEL=N|LABEL=MIN..MAX[,...]     detection counts (e.g. screw=4): missing:/extra:
      --postprocess MODULE.js        plug-in ES module, copied into the package (format plugin)
      --force                        replace a non-empty --out DIR
      Writes the package, loads it and runs it once to prove it computes; only then does it
      appear at --out.

  osprey model validate DIR [--public-key KEY.pub]
      Checks a package: manifest schema, checksums, ONNX input/outputs, plug-in, and runs the
      model once on a synthetic frame of the manifest's input (a model.onnx that onnxruntime
      cannot run is refused). A DIR/signature.json must sign this very package; with
      --public-key its signature is verified too.

${signHelp}`;

/**
 * Labels from a file (one per line; "index,name" lines when every line has its index, in order,
 * as ImageNet label files do) or from a comma list.
 */
async function labelsOption(value: string | undefined): Promise<string[] | undefined> {
  if (value === undefined) return undefined;
  let text: string;
  try {
    text = await readFile(value, 'utf8');
  } catch (err) {
    if (/[\\/]|\.(txt|names|csv|labels)$/i.test(value)) {
      throw new OspreyError('OSP_ERR_USAGE', `cannot read --labels file ${value}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, { cause: err });
    }
    return list(value);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const indexed = lines.map((l) => l.match(/^(\d+)\s*[,:\t ]\s*(.+)$/));
  if (indexed.every((m, i) => m && Number(m[1]) === i)) return indexed.map((m) => m![2]!);
  return lines;
}

/** `screw=4,nut=1..2,washer=2..` → expected counts per label. */
function expectOption(value: string | undefined): Record<string, { min?: number; max?: number }> | undefined {
  if (value === undefined) return undefined;
  const out: Record<string, { min?: number; max?: number }> = {};
  for (const part of list(value) ?? []) {
    const m = part.match(/^(.+?)=(\d+)?(\.\.)?(\d+)?$/);
    if (!m || (m[2] === undefined && m[4] === undefined) || (!m[3] && m[4] !== undefined)) {
      throw new OspreyError('OSP_ERR_USAGE', `--expect needs LABEL=N or LABEL=MIN..MAX, got "${part}"`);
    }
    const min = m[2] === undefined ? undefined : Number(m[2]);
    const max = m[3] ? (m[4] === undefined ? undefined : Number(m[4])) : min;
    if (min !== undefined && max !== undefined && min > max) throw new OspreyError('OSP_ERR_USAGE', `--expect ${part}: MIN exceeds MAX`);
    out[m[1]!] = { ...(min !== undefined && { min }), ...(max !== undefined && { max }) };
  }
  return out;
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

/** The facts about a package a person checks after packing or validating it. */
function summary(m: Manifest) {
  const out = m.outputs[m.task]!;
  return {
    name: m.name,
    version: m.version,
    task: m.task,
    ...('format' in out && { format: out.format }),
    input: `${m.input.dtype}[${m.input.layout}] ${m.input.width}x${m.input.height} ${m.input.color} ${m.input.resize}`,
    labels: m.labels.length,
    defectLabels: m.defectLabels,
    sha256: m.model.sha256,
    ...(m.postprocess && { postprocess: m.postprocess.module }),
  };
}

async function inspect(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {}, true);
  if (values.help) {
    console.log(modelHelp);
    return 0;
  }
  if (positionals.length !== 1) throw new OspreyError('OSP_ERR_USAGE', 'model inspect needs exactly one FILE.onnx');
  const desc = await inspectOnnxFile(positionals[0]!);
  let proposedManifest: unknown = null;
  let proposalError: string | undefined;
  try {
    proposedManifest = proposeManifest(desc, { name: packageNameFromFile(positionals[0]!) });
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
      'max-detections': { type: 'string' }, 'agnostic-nms': { type: 'boolean' }, expect: { type: 'string' },
      'pad-value': { type: 'string' }, force: { type: 'boolean' },
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
  const declarations = {
    ...(values.name && { name: values.name }),
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
    maxDetections: single('max-detections', values['max-detections']),
    padValue: single('pad-value', values['pad-value']),
    ...(values['agnostic-nms'] && { classAgnosticNms: true }),
    expectedCounts: expectOption(values.expect),
    ...(norm && { normalization: { min: norm[0]!, max: norm[1]!, threshold: norm[2]! } }),
    ...(values.postprocess && { postprocessFile: values.postprocess }),
  };
  const out = resolve(values.out);
  if (!values.force && (await readdir(out).catch(() => [])).length > 0) {
    throw new OspreyError('OSP_ERR_USAGE', `--out ${values.out} exists and is not empty; add --force to replace it`);
  }
  // Packed and proven in a sibling directory first: a package that fails its smoke test never
  // appears at --out, and an existing one is only replaced by one that works.
  const stage = `${out}.packing-${process.pid}`;
  await rm(stage, { recursive: true, force: true });
  let manifest: Manifest;
  let smoke: Awaited<ReturnType<typeof smokeTest>>;
  try {
    manifest = await packModel(file, { ...declarations, out: stage });
    smoke = await smokeTest(stage);
  } catch (err) {
    await rm(stage, { recursive: true, force: true });
    throw err;
  }
  await rm(out, { recursive: true, force: true });
  await rename(stage, out);
  console.log(JSON.stringify({ packed: values.out, ...summary(manifest), smokeTest: smoke }));
  return 0;
}

/** DIR/signature.json, if any: it must state this package; with a public key it must verify. */
async function checkSignature(dir: string, publicKeyFile: string | undefined): Promise<{ keyId: string; verified: boolean } | undefined> {
  const bytes = await readFile(resolve(dir, SIGNATURE_FILE)).catch(() => undefined);
  if (!bytes) {
    if (publicKeyFile) throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${dir} has no ${SIGNATURE_FILE} to verify (osprey model sign)`);
    return undefined;
  }
  const sig = parsePackageSignature(bytes, `${dir}/${SIGNATURE_FILE}`);
  const identity = identityOfFiles(await readPackageDirectory(dir));
  const { signature: _s, format: _f, keyId: _k, ...stated } = sig;
  if (!signedStatement(stated).equals(signedStatement(identity))) {
    throw new OspreyError('OSP_ERR_MODEL_SIGNATURE', `${dir}/${SIGNATURE_FILE} signs another package (sign it again after changing it)`);
  }
  if (!publicKeyFile) return { keyId: sig.keyId, verified: false };
  const pem = await readFile(publicKeyFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read --public-key ${publicKeyFile} (${err.code ?? 'error'})`, { cause: err });
  });
  verifyArtifact(identity, sig.signature, parseEd25519PublicKey(pem, `--public-key ${publicKeyFile}`), sig.keyId);
  return { keyId: sig.keyId, verified: true };
}

async function validate(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { 'public-key': { type: 'string' } }, true);
  if (values.help) {
    console.log(modelHelp);
    return 0;
  }
  if (positionals.length !== 1) throw new OspreyError('OSP_ERR_USAGE', 'model validate needs exactly one package DIR');
  const dir = positionals[0]!;
  const { manifest } = await verifyModelPackage(dir);
  const smoke = await smokeTest(dir);
  const signature = await checkSignature(dir, values['public-key']);
  console.log(JSON.stringify({ valid: true, package: dir, ...summary(manifest), smokeTest: smoke, ...(signature && { signature }) }));
  return 0;
}

export const modelCommands = { inspect, pack, validate, ...signCommands };
