/**
 * An occlusion map computed in a child process bounded in time and memory (occlusion-child.ts),
 * as the registry runs uploaded models (model-check.ts): the model is the package's code and
 * data, not the fleet's.
 */
import { fileURLToPath } from 'node:url';
import { OspreyError } from '../protocol/errors.js';
import { runBoundedChild } from './model-check.js';
import type { OcclusionMap } from './occlusion.js';

const CHILD = fileURLToPath(new URL('./occlusion-child.js', import.meta.url));

export interface OcclusionRunOptions {
  cells: number;
  timeoutMs?: number;
  maxRssBytes?: number;
  /** Names the model in errors. */
  what: string;
}

/** The occlusion map of `imageFile` under the package in `dir`. */
export async function occlusionInChild(dir: string, imageFile: string, opts: OcclusionRunOptions): Promise<OcclusionMap> {
  const out = await runBoundedChild({ script: CHILD, args: [dir, imageFile, String(opts.cells)], stdin: '', what: opts.what, ...(opts.timeoutMs !== undefined && { timeoutMs: opts.timeoutMs }), ...(opts.maxRssBytes !== undefined && { maxRssBytes: opts.maxRssBytes }) });
  try {
    return JSON.parse(out) as OcclusionMap;
  } catch {
    throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `${opts.what}: the occlusion map came back unreadable`);
  }
}
