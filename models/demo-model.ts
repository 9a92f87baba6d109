/**
 * The demo's model package: the built-in anomaly model fitted on synthetic good parts. Generated
 * on first use (about a second), then reused; several processes may call this at once.
 */
import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fitBuiltinAnomalyModel } from './builtin-anomaly.js';
import { verifyModelPackage } from './package-reader.js';
import { generatePartImage } from './synthetic.js';

export const DEMO_MODEL_NAME = 'osprey-demo-anomaly';
/** Bump when the synthetic images or the fit change, so stale demo packages are rebuilt. */
const DEMO_RECIPE = '1';

/** Seeds of the demo's training images; keep test and demo frames outside this range. */
export const DEMO_TRAIN_SEEDS = { first: 1, count: 40 } as const;

async function isCurrent(path: string): Promise<boolean> {
  try {
    const { manifest } = await verifyModelPackage(path);
    return manifest.name === DEMO_MODEL_NAME && manifest.metadata?.demoRecipe === DEMO_RECIPE;
  } catch {
    return false;
  }
}

/**
 * Makes sure a valid demo model package exists under `dir` and returns its path
 * (`dir/osprey-demo-anomaly`). Skips all work when a verified, current package is there.
 */
export async function ensureDemoModel(dir: string): Promise<string> {
  const path = join(dir, DEMO_MODEL_NAME);
  if (await isCurrent(path)) return path;

  const images = await Promise.all(
    Array.from({ length: DEMO_TRAIN_SEEDS.count }, (_, i) => generatePartImage({ seed: DEMO_TRAIN_SEEDS.first + i })),
  );
  // Built in a private directory and renamed into place, so no reader sees half a package.
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await fitBuiltinAnomalyModel(images, tmp, {
      name: DEMO_MODEL_NAME,
      version: `1.0.${DEMO_RECIPE}`,
      description: `Demo: built-in anomaly model fitted on ${images.length} synthetic good parts`,
      metadata: { demoRecipe: DEMO_RECIPE },
    });
    if (!(await isCurrent(path))) {
      await rm(path, { recursive: true, force: true });
      try {
        await rename(tmp, path);
      } catch (err) {
        // Another process renamed its copy in first; theirs is as good as ours.
        if (!(await isCurrent(path))) throw err;
      }
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return path;
}
