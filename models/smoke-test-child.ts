/**
 * Child process of smoke-test.ts: loads a package and inspects one sample image with it.
 *
 *   node smoke-test-child.js PACKAGE_DIR IMAGE_FILE
 *
 * Apart from the fleet manager for the same reason as check-model-child.ts: a model that
 * crashes onnxruntime, hangs or allocates without bound costs this child, killed by the parent at
 * its bounds. Exit 0: the inspection as one JSON line on stdout; else `CODE message` on stderr.
 */
import { readFile } from 'node:fs/promises';
import { loadModelPackage } from './package.js';
import { runChild } from './child-main.js';

async function main(): Promise<void> {
  const [dir, image] = process.argv.slice(2);
  if (!dir || !image) throw new Error('usage: smoke-test-child PACKAGE_DIR IMAGE_FILE');
  const runner = await loadModelPackage(dir, { intraOpThreads: 1 });
  try {
    const r = await runner.inspect(await readFile(image));
    const { anomalyMap: _m, ...rest } = r;
    process.stdout.write(`${JSON.stringify(rest)}\n`);
  } finally {
    await runner.close();
  }
}

runChild(main);
