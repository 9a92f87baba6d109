/**
 * Real packages with a golden set for the self-test tests (issue 17), built once per test file:
 * a tiny anomaly model trained by the trainer API on 24 real MTD good images (+4 blowholes for
 * its golden set), and the same package with its Gaussian head's mean perturbed — its golden.json
 * and images intact, so its answers no longer match the expected ones — under a new version.
 */
import { copyFile, cp, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import onnxProto from 'onnx-proto';
import { generateSigningKeys } from '../../models/artifact-signature.js';
import { archiveDirectory } from '../../models/package-archive.js';
import { writeModelPackage, type ManifestDraft } from '../../models/package-writer.js';
import { decodeOnnx } from '../../models/onnx-inspect.js';
import { trainAnomaly } from '../../models/train/train-anomaly.js';
import type { Manifest } from '../../protocol/manifest.js';
import { ensureDemoModel } from '../../models/fixtures.js';
import { ospreyDataDir } from '../helpers/service-skip.js';
import { sha256Of } from './artifact-server.js';
import type { TestPackage } from './model-packages.js';

export const GOLDEN_MODEL = 'tile-anomaly';

export interface GoldenPackages {
  keys: { privateKeyPem: string; publicKeyPem: string };
  /** The config's own model (the demo model: no golden set). */
  localDir: string;
  /** tile-anomaly@1.0.0, trained, with its golden set. */
  good: TestPackage;
  /** tile-anomaly@1.0.1-perturbed: the same package with head/mean shifted, golden set untouched. */
  perturbed: TestPackage;
}

async function pick(dir: string, every: number, count: number): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort().filter((_, i) => i % every === 0).slice(0, count);
}

/** head/mean + 0.02 everywhere: every feature is off-centre, so every score moves. */
function perturbHeadMean(model: Uint8Array): Uint8Array {
  const m = decodeOnnx(model);
  const mean = m.graph!.initializer!.find((t) => t.name === 'head/mean');
  if (!mean?.rawData?.length) throw new Error('trained model has no head/mean raw data');
  const raw = Buffer.from(mean.rawData);
  for (let i = 0; i < raw.length; i += 4) raw.writeFloatLE(raw.readFloatLE(i) + 0.02, i);
  mean.rawData = raw;
  return onnxProto.onnx.ModelProto.encode(m).finish();
}

async function pack(dir: string, name: string, version: string): Promise<TestPackage> {
  const archive = await archiveDirectory(dir);
  return { name, version, id: `${name}@${version}`, dir, archive, sha256: sha256Of(archive) };
}

/**
 * Call at the top of a test file: returns a getter that trains and packs both on first use (about
 * 8 s; only tests that run pay it), in a temp dir removed after the file.
 */
export function useGoldenPackages(): () => Promise<GoldenPackages> {
  let built: Promise<GoldenPackages> | undefined;
  let root: string | undefined;
  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });
  return () => (built ??= mkdtemp(path.join(tmpdir(), 'osprey-golden-pkgs-')).then(async (dir) => {
    root = dir;
    const mtd = path.join(ospreyDataDir(), 'magnetic-tile');
    const good = path.join(dir, 'train', 'good');
    const defects = path.join(dir, 'train', 'defects', 'blowhole');
    await mkdir(good, { recursive: true });
    await mkdir(defects, { recursive: true });
    // The trainer reads folders: a few dozen real images are linked in by copy (temp, removed after).
    for (const f of await pick(path.join(mtd, 'train', 'good'), 20, 24)) await copyFile(path.join(mtd, 'train', 'good', f), path.join(good, f));
    for (const f of await pick(path.join(mtd, 'dev', 'blowhole'), 3, 4)) await copyFile(path.join(mtd, 'dev', 'blowhole', f), path.join(defects, f));
    const goodDir = path.join(dir, 'good');
    const [localDir] = await Promise.all([
      ensureDemoModel(dir),
      trainAnomaly({
        good,
        defects: path.dirname(defects),
        out: goodDir,
        backbone: path.join(ospreyDataDir(), 'models', 'squeezenet-fp16'),
        search: 'off',
        name: GOLDEN_MODEL,
        version: '1.0.0',
        createdBy: 'test:golden-set',
      }),
    ]);
    const perturbedDir = path.join(dir, 'perturbed');
    await cp(goodDir, perturbedDir, { recursive: true });
    const manifest = JSON.parse(await readFile(path.join(goodDir, 'manifest.json'), 'utf8')) as Manifest;
    const draft: ManifestDraft = { ...manifest, version: '1.0.1-perturbed', model: { file: manifest.model.file } };
    await writeModelPackage(perturbedDir, draft, perturbHeadMean(await readFile(path.join(goodDir, manifest.model.file))));
    return {
      keys: generateSigningKeys(),
      localDir,
      good: await pack(goodDir, GOLDEN_MODEL, '1.0.0'),
      perturbed: await pack(perturbedDir, GOLDEN_MODEL, '1.0.1-perturbed'),
    };
  }));
}
