/**
 * Child process of occlusion-run.ts: loads a package and computes the occlusion map of one image.
 *
 *   node occlusion-child.js PACKAGE_DIR IMAGE_FILE CELLS
 *
 * Apart from the fleet manager, at the lowest CPU priority (nice 19), for the reasons of
 * smoke-test-child.ts: a model that crashes, hangs or allocates without bound costs this child,
 * killed by the parent at its bounds. Exit 0: the map as one JSON line on stdout; else
 * `CODE message` on stderr.
 */
import { readFile } from 'node:fs/promises';
import { setPriority } from 'node:os';
import { loadModelPackage } from './package.js';
import { occlusionMap } from './occlusion.js';
import { runChild } from './child-main.js';

async function main(): Promise<void> {
  const [dir, image, cells] = process.argv.slice(2);
  if (!dir || !image || !cells) throw new Error('usage: occlusion-child PACKAGE_DIR IMAGE_FILE CELLS');
  try {
    setPriority(19);
  } catch {
    // Not allowed here: run at the normal priority.
  }
  // A plug-in is never run on the fleet (docs/SECURITY.md): such a package is refused here too.
  const runner = await loadModelPackage(dir, { intraOpThreads: 1, allowPlugins: false });
  try {
    process.stdout.write(`${JSON.stringify(await occlusionMap(runner, await readFile(image), Number(cells)))}\n`);
  } finally {
    await runner.close();
  }
}

runChild(main);
