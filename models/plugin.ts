/**
 * Post-processing plug-ins: an ES module inside a model package whose default export turns the
 * model's raw outputs into detection boxes or an anomaly score. It is imported for that package
 * only, and whatever it does wrong (throws, returns garbage) becomes one OSP_ERR_MODEL_PLUGIN
 * line for that frame, never a crash of the edge.
 *
 * Contract (docs/models.md "Plug-in post-processing"):
 *   export default function (outputs, context) → { boxes } | { score, map? }   (or a Promise of it)
 *   outputs: { [outputName]: { data: Float32Array, dims: number[] } }
 *   context: { task, inputWidth, inputHeight, labels, confidence, iou, options }
 *   boxes:   [{ x1, y1, x2, y2, score, classId }] in model-input pixels, score in [0, 1]
 *   score:   a number (normalised: 0.5 = threshold, unless the manifest gives `normalization`)
 *   map:     { data, width, height } (optional anomaly map, same scale as score)
 */
import { basename } from 'node:path';
import { pathToFileURL } from 'node:url';
import { OspreyError } from '../protocol/errors.js';
import type { Task } from '../protocol/manifest.js';
import { withTimeout } from '../protocol/timeout.js';
import type { RawBox } from './postprocess/detection.js';
import type { RawOutputs } from './postprocess/output-reader.js';

/** What a plug-in receives besides the outputs. */
export interface PluginContext {
  task: Task;
  /** Model input size: boxes are returned in these pixels. */
  inputWidth: number;
  inputHeight: number;
  labels: readonly string[];
  /** Detection: minimum score to keep a box (the manifest's `confidence`). */
  confidence: number;
  /** Detection: NMS IoU threshold (the manifest's `iou`). */
  iou: number;
  /** The manifest's `postprocess.options`. */
  options: Readonly<Record<string, unknown>>;
}

/** A loaded plug-in. */
export interface Plugin {
  /** The module's file name, for messages. */
  readonly name: string;
  /** Calls the plug-in on one frame's outputs. Throws OSP_ERR_MODEL_PLUGIN if it throws or hangs. */
  run(outputs: RawOutputs, context: PluginContext): Promise<unknown>;
}

export interface LoadPluginOptions {
  /** Longest wait for a plug-in that returns a Promise (default 10 s). */
  timeoutMs?: number;
}

function reason(err: unknown): string {
  const text = err instanceof Error ? `${err.name === 'Error' ? '' : `${err.name}: `}${err.message}` : String(err);
  return text.split('\n')[0]!.trim().slice(0, 300);
}

/**
 * Imports the plug-in module at `file` (already checked against `sha256`). The URL carries the
 * module's sha256 as a query: Node caches ES modules by URL, so another package (another path) or
 * another version (other bytes) never shares a module instance, while reloading the same package
 * does not pile up copies.
 */
export async function loadPlugin(file: string, sha256: string, opts: LoadPluginOptions = {}): Promise<Plugin> {
  const name = basename(file);
  const url = `${pathToFileURL(file).href}?sha256=${sha256}`;
  let mod: { default?: unknown };
  try {
    mod = (await import(url)) as { default?: unknown };
  } catch (err) {
    throw new OspreyError('OSP_ERR_MODEL_PLUGIN', `plug-in ${name} cannot be loaded: ${reason(err)}`, { cause: err });
  }
  const fn = mod.default;
  if (typeof fn !== 'function') {
    throw new OspreyError('OSP_ERR_MODEL_PLUGIN', `plug-in ${name} has no default export function (it exports ${typeof fn})`);
  }
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return {
    name,
    async run(outputs, context) {
      // Fresh containers per call (the data arrays are this frame's own), and a frozen context:
      // nothing a plug-in mutates can leak into the next frame or another package.
      const args: Record<string, { data: Float32Array; dims: number[] }> = {};
      for (const [k, v] of Object.entries(outputs)) args[k] = { data: v.data, dims: [...v.dims] };
      const ctx = Object.freeze({ ...context, labels: Object.freeze([...context.labels]), options: Object.freeze({ ...context.options }) });
      try {
        const value: unknown = fn(args, ctx);
        if (!isThenable(value)) return value;
        return await withTimeout(Promise.resolve(value), timeoutMs, () => {
          throw new Error(`did not return within ${timeoutMs} ms`);
        });
      } catch (err) {
        throw new OspreyError('OSP_ERR_MODEL_PLUGIN', `plug-in ${name} failed: ${reason(err)}`, { cause: err });
      }
    },
  };
}

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function garbage(name: string, what: string): OspreyError {
  return new OspreyError('OSP_ERR_MODEL_PLUGIN', `plug-in ${name} returned ${what}`);
}

/** Most boxes a plug-in may return for one frame: more is a decoder gone wrong, not a scene. */
export const MAX_PLUGIN_BOXES = 100_000;

/** Checks a detection plug-in's result and returns its boxes (model-input pixels). */
export function pluginBoxes(result: unknown, labelCount: number, name: string): RawBox[] {
  const boxes = (result as { boxes?: unknown } | null)?.boxes;
  if (typeof result !== 'object' || result === null || !Array.isArray(boxes)) {
    throw garbage(name, `${describe(result)} instead of { boxes: [...] }`);
  }
  if (boxes.length > MAX_PLUGIN_BOXES) throw garbage(name, `${boxes.length} boxes (more than ${MAX_PLUGIN_BOXES})`);
  return boxes.map((b: unknown, i): RawBox => {
    if (typeof b !== 'object' || b === null) throw garbage(name, `boxes[${i}] = ${describe(b)}, not a box`);
    const o = b as Record<string, unknown>;
    for (const k of ['x1', 'y1', 'x2', 'y2', 'score'] as const) {
      if (typeof o[k] !== 'number' || !Number.isFinite(o[k])) throw garbage(name, `boxes[${i}].${k} = ${describe(o[k])}, not a finite number`);
    }
    const box = { x1: o.x1 as number, y1: o.y1 as number, x2: o.x2 as number, y2: o.y2 as number, score: o.score as number };
    if (box.x2 < box.x1 || box.y2 < box.y1) throw garbage(name, `boxes[${i}] with x2 < x1 or y2 < y1`);
    if (box.score < 0 || box.score > 1) throw garbage(name, `boxes[${i}].score = ${box.score}, outside [0, 1]`);
    const classId = o.classId;
    if (typeof classId !== 'number' || !Number.isInteger(classId) || classId < 0 || classId >= labelCount) {
      throw garbage(name, `boxes[${i}].classId = ${describe(classId)}, not a label index 0..${labelCount - 1}`);
    }
    return { ...box, classId };
  });
}

/** Checks an anomaly plug-in's result: a finite score and, optionally, a map. */
export function pluginAnomaly(result: unknown, name: string): { score: number; map?: { data: Float32Array; width: number; height: number } } {
  if (typeof result !== 'object' || result === null) throw garbage(name, `${describe(result)} instead of { score, map? }`);
  const { score, map } = result as { score?: unknown; map?: unknown };
  if (typeof score !== 'number' || !Number.isFinite(score)) throw garbage(name, `score = ${describe(score)}, not a finite number`);
  if (map === undefined) return { score };
  const m = map as { data?: unknown; width?: unknown; height?: unknown } | null;
  const ok =
    typeof m === 'object' && m !== null &&
    Number.isInteger(m.width) && Number.isInteger(m.height) && (m.width as number) > 0 && (m.height as number) > 0 &&
    (Array.isArray(m.data) || ArrayBuffer.isView(m.data)) &&
    (m.data as ArrayLike<number>).length === (m.width as number) * (m.height as number);
  if (!ok) throw garbage(name, 'a map that is not { data, width, height } with width × height values');
  const data = Float32Array.from(m!.data as ArrayLike<number>, Number);
  if (data.some((v) => Number.isNaN(v))) throw garbage(name, 'a map with NaN values');
  return { score, map: { data, width: m!.width as number, height: m!.height as number } };
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.slice(0, 40));
  return String(v);
}
