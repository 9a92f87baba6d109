/**
 * A packed model's smoke test on a sample image, in a child process bounded in time and memory
 * (smoke-test-child.ts): what the model answers on that image, or the one-line reason it cannot.
 */
import { fileURLToPath } from 'node:url';
import { OspreyError } from '../protocol/errors.js';
import type { Inspection } from './types.js';
import { runBoundedChild } from './model-check.js';

const CHILD = fileURLToPath(new URL('./smoke-test-child.js', import.meta.url));

export type SmokeResult = Omit<Inspection, 'anomalyMap'>;

/** Inspects `imageFile` with the package in `dir`, in a bounded child. */
export async function smokeTestInChild(dir: string, imageFile: string, opts: { timeoutMs?: number; maxRssBytes?: number; what?: string } = {}): Promise<SmokeResult> {
  const out = await runBoundedChild({ script: CHILD, args: [dir, imageFile], stdin: '', what: opts.what ?? 'model.onnx', ...opts });
  try {
    return JSON.parse(out) as SmokeResult;
  } catch {
    throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `${opts.what ?? 'model.onnx'}: the smoke test gave no readable answer`);
  }
}
