/**
 * Loads a model package into a ModelRunner: verify, import the plug-in if any, create the
 * onnxruntime session once, check the model against the manifest, warm it up, and then reuse it
 * for every frame. Every task's reading of the outputs sits behind OutputReader.
 */
import { stat } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import { OspreyError } from '../protocol/errors.js';
import type { Manifest } from '../protocol/manifest.js';
import { float16ArrayToFloat32 } from './float16.js';
import { planResize } from './geometry.js';
import { resolveInput, type ResolvedInput } from './manifest-check.js';
import { readManifest, readVerifiedModel, verifyModelFile, verifyPlugin } from './package-reader.js';
import { loadPlugin, type Plugin } from './plugin.js';
import { createAnomalyReader } from './postprocess/anomaly.js';
import { createClassificationReader } from './postprocess/classification.js';
import { createDetectionReader } from './postprocess/detection.js';
import type { OutputReader, RawOutputs } from './postprocess/output-reader.js';
import { preprocessImage, type Preprocessed } from './preprocess.js';
import { pixelsToTensor, type InputTensor, type TensorData } from './tensor.js';
import type { Inspection, InspectOptions, LoadOptions, ModelRunner } from './types.js';

/** The task's reader; a plug-in, when the format is plugin, gets every output of the session. */
function createOutputReader(manifest: Manifest, sessionOutputs: readonly string[], plugin: Plugin | undefined): OutputReader {
  switch (manifest.task) {
    case 'classification':
      return createClassificationReader(manifest);
    case 'anomaly':
      return createAnomalyReader(manifest, { plugin, sessionOutputs });
    case 'detection':
      return createDetectionReader(manifest, { plugin, sessionOutputs });
  }
}

function describeShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(',')}]`;
}

/** Checks the session's only input against the manifest (name, dtype, rank, C/H/W). */
function checkInput(session: ort.InferenceSession, input: ResolvedInput): void {
  const names = session.inputNames;
  const meta = session.inputMetadata.find((m) => m.name === input.name);
  if (!meta) {
    throw new OspreyError('OSP_ERR_MODEL_INPUT', `model has no input ${input.name} (its inputs: ${names.join(', ')})`);
  }
  if (names.length !== 1) {
    throw new OspreyError('OSP_ERR_MODEL_INPUT', `model has ${names.length} inputs (${names.join(', ')}); Osprey feeds exactly one image`);
  }
  if (!meta.isTensor) throw new OspreyError('OSP_ERR_MODEL_INPUT', `model input ${input.name} is not a tensor`);
  const want = input.layout === 'nchw' ? [1, input.channels, input.height, input.width] : [1, input.height, input.width, input.channels];
  const shape = meta.shape;
  // Symbolic dims (batch, or dynamic H/W) accept the manifest's size; fixed ones must match it.
  const fits = shape.length === 4 && shape.every((d, i) => typeof d !== 'number' || d < 0 || d === want[i]);
  if (meta.type !== input.dtype || !fits) {
    throw new OspreyError(
      'OSP_ERR_MODEL_INPUT',
      `model input ${input.name} is ${meta.type}${describeShape(shape)} but the manifest says ${input.dtype}` +
        `${describeShape(want)} (${input.layout}, ${input.color})`,
    );
  }
}

function checkOutputs(session: ort.InferenceSession, reader: OutputReader, task: string): void {
  const missing = reader.outputNames.filter((n) => !session.outputNames.includes(n));
  if (missing.length > 0) {
    throw new OspreyError(
      'OSP_ERR_MODEL_OUTPUT',
      `model has no output ${missing.join(', ')} needed for task ${task} (its outputs: ${session.outputNames.join(', ')})`,
    );
  }
}

/** Converts an onnxruntime output to float32, whatever its element type. */
function toRawOutputs(results: ort.InferenceSession.ReturnType, names: readonly string[]): RawOutputs {
  const out: RawOutputs = {};
  for (const name of names) {
    const t = results[name];
    if (!t) continue;
    let data: Float32Array;
    if (t.type === 'float32') data = t.data as Float32Array;
    else if (t.type === 'float16' && t.data instanceof Uint16Array) data = float16ArrayToFloat32(t.data);
    else if (t.type === 'string') throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `output ${name} is a string tensor`);
    else data = Float32Array.from(t.data as ArrayLike<number | bigint>, (v) => Number(v));
    out[name] = { dims: t.dims, data };
  }
  return out;
}

function toOrtTensor(t: InputTensor): ort.Tensor {
  return new ort.Tensor(t.dtype, t.data, t.dims);
}

/** The file's size, or -1 when it cannot be read (the read below then reports why). */
async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return -1;
  }
}

/** Session options Osprey uses for every model; `level` is 'disabled' for an already optimised graph. */
function sessionOptions(opts: LoadOptions, level: 'all' | 'disabled'): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: ['cpu'],
    // onnxruntime-node runs session.run() on the JS thread, so frames never infer in parallel
    // within a process: only intra-op threads put the other cores to work (bench/edge-pipeline.ts).
    intraOpNumThreads: opts.intraOpThreads ?? os.availableParallelism(),
    interOpNumThreads: 1,
    executionMode: 'sequential',
    graphOptimizationLevel: level,
    logSeverityLevel: 3,
    // Idle intra-op threads sleep instead of spin-waiting: as fast on an idle machine, but a
    // spinning pool slows every other session in the process (active + shadow: each run 2.2×
    // slower) and collapses when anything else wants the cores (bench/edge-pipeline.ts).
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  };
}

/**
 * The package's onnxruntime session: from the optimised graph in `opts.optimizedCache` when there
 * is one for the model (optimized-model.ts: less memory, faster to create), else from the
 * verified model bytes, optimised here. OSP_ERR_MODEL_CHECKSUM / OSP_ERR_MODEL_LOAD.
 */
async function createSession(dir: string, manifest: Manifest, opts: LoadOptions): Promise<ort.InferenceSession> {
  const cache = opts.optimizedCache;
  // A model the cache would not take is read and hashed once, below, as without a cache.
  if (cache && (await sizeOf(join(dir, manifest.model.file))) >= cache.minBytes) {
    const { file, size } = await verifyModelFile(dir, manifest);
    const optimised = await cache.resolve(file, manifest.model.sha256, size);
    if (optimised) {
      try {
        return await ort.InferenceSession.create(optimised, sessionOptions(opts, 'disabled'));
      } catch {
        // Written by another onnxruntime, or damaged in a way its sha256 cannot tell: load the
        // model itself below, and let the next load build the entry again.
        await cache.discard(manifest.model.sha256).catch(() => undefined);
      }
    }
  }
  const modelBytes = await readVerifiedModel(dir, manifest);
  try {
    return await ort.InferenceSession.create(modelBytes, sessionOptions(opts, 'all'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_LOAD', `onnxruntime cannot load ${manifest.model.file}: ${firstLine(err)}`, {
      cause: err,
    });
  } finally {
    // onnxruntime parsed (copied) the bytes; give them back now rather than at V8's next full GC,
    // which a small, steady heap may not run for hours (ResNet-18: 47 MB of RSS).
    releaseBytes(modelBytes);
  }
}

/**
 * Loads the package in `dir`: validates manifest.json (OSP_ERR_MODEL_MANIFEST), checks the
 * model's and the plug-in's sha256 (OSP_ERR_MODEL_CHECKSUM), imports the plug-in
 * (OSP_ERR_MODEL_PLUGIN), creates the onnxruntime session once (OSP_ERR_MODEL_LOAD), checks its
 * input (OSP_ERR_MODEL_INPUT) and outputs (OSP_ERR_MODEL_OUTPUT), and runs one warm-up frame so
 * a model (or plug-in) whose outputs cannot be read for its task fails here rather than on the line.
 */
export async function loadModelPackage(dir: string, opts: LoadOptions = {}): Promise<ModelRunner> {
  const manifest = await readManifest(dir);
  if (manifest.postprocess && opts.allowPlugins === false) {
    throw new OspreyError(
      'OSP_ERR_MODEL_PLUGIN',
      `${manifest.name}@${manifest.version} has a plug-in (${manifest.postprocess.module}) and plug-ins are not allowed here (model.allowPlugins)`,
    );
  }
  const pluginFile = await verifyPlugin(dir, manifest);
  // Imported before the session exists: a module that does not load costs no onnxruntime memory.
  const plugin = pluginFile ? await loadPlugin(pluginFile, manifest.postprocess!.sha256, { timeoutMs: opts.pluginTimeoutMs }) : undefined;
  const input = resolveInput(manifest.input);
  const maxPixels = opts.maxPixels;
  const session = await createSession(dir, manifest, opts);

  let reader: OutputReader;
  try {
    reader = createOutputReader(manifest, session.outputNames, plugin);
  } catch (err) {
    await session.release().catch(() => undefined);
    throw err;
  }

  const run = async (tensor: InputTensor): Promise<RawOutputs> => {
    try {
      const results = await session.run({ [input.name]: toOrtTensor(tensor) }, [...reader.outputNames]);
      return toRawOutputs(results, reader.outputNames);
    } catch (err) {
      if (err instanceof OspreyError) throw err;
      throw new OspreyError('OSP_ERR_INFERENCE', `inference failed: ${firstLine(err)}`, { cause: err });
    }
  };

  try {
    checkInput(session, input);
    checkOutputs(session, reader, manifest.task);
    if (opts.warmup !== false) await warmUp(input, run, reader);
  } catch (err) {
    await session.release().catch(() => undefined);
    if (err instanceof OspreyError) throw err;
    // A reader bug must still fail the load as a coded, one-line error, not a stray exception.
    throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `warm-up frame failed: ${firstLine(err)}`, { cause: err });
  }

  const inflight = new Set<Promise<unknown>>();
  let closing: Promise<void> | undefined;

  // Input tensors for reuse: a frame takes one after decoding and gives it back once the session
  // has run (readers use the outputs and the plan, never the input). A fresh 4.9 MB tensor per
  // YOLOv8n @640 frame cost page faults and GC work on the JS thread, ~1.5 ms of every frame.
  // Never more than the frames in flight are out at once; at most TENSOR_POOL are kept.
  const spare: TensorData[] = [];
  const takeTensor = () => spare.pop();
  const giveBack = (data: TensorData) => {
    if (spare.length < TENSOR_POOL) spare.push(data);
  };

  const inspectOnce = async (image: Buffer, options: InspectOptions): Promise<Inspection> => {
    const t0 = performance.now();
    const pre = await preprocessImage(image, input, { maxPixels, reuse: takeTensor, ...(options.thumbnail ? { thumbnail: options.thumbnail } : {}) });
    const t1 = performance.now();
    let outputs: RawOutputs;
    try {
      outputs = await run(pre.tensor);
    } finally {
      giveBack(pre.tensor.data);
    }
    const t2 = performance.now();
    const judgement = await reader.read(outputs, options, pre);
    const t3 = performance.now();
    return {
      ...judgement,
      ...(pre.thumbnail && { thumbnail: pre.thumbnail }),
      timings: { decodeMs: t1 - t0, inferMs: t2 - t1, postMs: t3 - t2, totalMs: t3 - t0 },
    };
  };

  return {
    manifest,
    id: `${manifest.name}@${manifest.version}`,
    inspect(image: Buffer, options: InspectOptions = {}): Promise<Inspection> {
      if (closing) return Promise.reject(new OspreyError('OSP_ERR_MODEL_CLOSED', `model ${manifest.name}@${manifest.version} is closed`));
      const p = inspectOnce(image, options);
      inflight.add(p);
      const done = () => inflight.delete(p);
      p.then(done, done);
      return p;
    },
    close(): Promise<void> {
      // Frames already running finish first; releasing the session under them would crash.
      closing ??= Promise.allSettled([...inflight]).then(() => session.release());
      return closing;
    },
  };
}

/** A frame of pure padding at the manifest's input: exercises the session and, given one, the reader (output shapes) once. */
async function warmUp(input: ResolvedInput, run: (t: InputTensor) => Promise<RawOutputs>, reader?: OutputReader): Promise<void> {
  const plan = planResize(input.width, input.height, input);
  const tensor = pixelsToTensor({ data: new Uint8Array(0), width: 0, height: 0, channels: 1 }, plan, input);
  const pre: Preprocessed = { tensor, plan, source: { format: 'raw', width: input.width, height: input.height, channels: input.channels } };
  const outputs = await run(tensor);
  if (!reader) return;
  reader.verify?.(outputs);
  await reader.read(outputs, {}, pre);
}

/**
 * Proves that `modelBytes` is a model that runs as `manifest` describes, without importing any
 * plug-in (the fleet's registry calls it on every upload, in a child process): onnxruntime loads
 * it (OSP_ERR_MODEL_LOAD), its one input matches the manifest (OSP_ERR_MODEL_INPUT), and one
 * inference on a synthetic frame of the manifest's shape runs; without a plug-in the task's
 * reader also reads that frame's outputs (OSP_ERR_MODEL_OUTPUT), with one every output must come
 * out of the session.
 */
export async function checkModelRuns(modelBytes: Uint8Array, manifest: Manifest): Promise<void> {
  const input = resolveInput(manifest.input);
  let session: ort.InferenceSession;
  try {
    session = await ort.InferenceSession.create(modelBytes, sessionOptions({ intraOpThreads: 1 }, 'all'));
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_LOAD', `onnxruntime cannot load ${manifest.model.file}: ${firstLine(err)}`, { cause: err });
  }
  try {
    checkInput(session, input);
    // Plug-in packages: the plug-in is code and is never run here; every session output is computed instead.
    const reader = manifest.postprocess ? undefined : createOutputReader(manifest, session.outputNames, undefined);
    if (reader) checkOutputs(session, reader, manifest.task);
    const names = reader ? [...reader.outputNames] : [...session.outputNames];
    await warmUp(
      input,
      async (tensor) => {
        try {
          return toRawOutputs(await session.run({ [input.name]: toOrtTensor(tensor) }, names), names);
        } catch (err) {
          if (err instanceof OspreyError) throw err;
          throw new OspreyError('OSP_ERR_INFERENCE', `inference on a synthetic ${input.width}x${input.height} frame failed: ${firstLine(err)}`, { cause: err });
        }
      },
      reader,
    );
  } catch (err) {
    if (err instanceof OspreyError) throw err;
    throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `synthetic frame failed: ${firstLine(err)}`, { cause: err });
  } finally {
    await session.release().catch(() => undefined);
  }
}

/** Input tensors a runner keeps for reuse (the edge runs 4 frames at once by default). */
const TENSOR_POOL = 4;

/**
 * Frees a buffer's memory at once by detaching its ArrayBuffer (transferred into a message that is
 * never received). Only for a buffer that owns its whole ArrayBuffer (not a slice of Node's pool)
 * and that nothing reads afterwards: it becomes zero-length.
 */
function releaseBytes(bytes: ArrayBufferView): void {
  if (bytes.byteOffset !== 0 || bytes.byteLength !== bytes.buffer.byteLength || !(bytes.buffer instanceof ArrayBuffer)) return;
  const { port1, port2 } = new MessageChannel();
  try {
    port1.postMessage(null, [bytes.buffer]);
  } catch {
    // Not detachable (e.g. already transferred): the GC frees it eventually.
  } finally {
    port1.close();
    port2.close();
  }
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.split('\n')[0]!.trim();
}
