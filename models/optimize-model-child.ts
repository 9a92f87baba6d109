/**
 * Child process of optimized-model.ts: lets onnxruntime optimise one model and write the result.
 *
 *   node optimize-model-child.js SOURCE SHA256 OUT
 *
 * Runs apart from the agent because building the optimised graph allocates every weight a few
 * times over and glibc keeps most of that in the process afterwards (ResNet-18: 232 MB peak,
 * 220 MB kept); here it all goes back to the OS when the child exits. A model that crashes
 * onnxruntime crashes this child, not the agent. Exit 0: OUT is written; else one line on stderr.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import * as ort from 'onnxruntime-node';

async function main(): Promise<void> {
  const [source, sha256, out] = process.argv.slice(2);
  if (!source || !sha256 || !out) throw new Error('usage: optimize-model-child SOURCE SHA256 OUT');
  const bytes = await readFile(source);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256) throw new Error(`${source} has sha256 ${actual}, expected ${sha256}`);
  const session = await ort.InferenceSession.create(bytes, {
    executionProviders: ['cpu'],
    graphOptimizationLevel: 'all',
    optimizedModelFilePath: out,
    intraOpNumThreads: 1,
    logSeverityLevel: 3,
  });
  await session.release();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    const text = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${text.split('\n')[0]!.trim()}\n`);
    process.exit(1);
  },
);
