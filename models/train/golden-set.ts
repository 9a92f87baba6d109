/**
 * The version's golden set (issue 15, for the monitoring issue's self-test): a few labelled
 * training images kept inside the package with what the package itself answers for each.
 *
 *   golden.json        { schema, tolerance, expectedAccuracy, images: [{ file, source, sha256,
 *                        bytes, truth, expected: { verdict, label, score } }] }
 *   golden-00.jpg …    the images, flat (packages are flat directories; at most 64 files)
 *
 * `expected` comes from loading the finished package with the edge's own runtime and inspecting
 * each image, so an edge that later gets a different verdict or a score off by more than
 * `tolerance` knows its model, runtime or pre-processing changed. `truth` is the training
 * label; `expectedAccuracy` is the share of images whose expected answer matches it.
 */
import { writeFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { OspreyError } from '../../protocol/errors.js';
import type { Verdict } from '../../protocol/messages.js';
import { loadModelPackage } from '../package.js';
import { sha256Hex } from '../package-reader.js';
import type { Inspection } from '../types.js';
import { GOLDEN_FILE } from './model-card.js';

export { GOLDEN_FILE };

export const GOLDEN_SCHEMA = 'osprey-golden-set/1';

/** What a golden image is known to be: a verdict (anomaly) or a label (classification). */
export type GoldenTruth = { verdict: Verdict } | { label: string };

export interface GoldenCandidate {
  /** Where it came from, as the card names it (e.g. `good/0123.jpg`); its extension is kept. */
  source: string;
  bytes: Buffer;
  truth: GoldenTruth;
}

export interface GoldenOptions {
  /** Most images kept (default 24; the package's 64-file limit bounds it). */
  maxImages?: number;
  /** Images larger than this are passed over (default 512 KiB). */
  maxImageBytes?: number;
  /** Total bytes of the kept images (default 4 MiB). */
  maxTotalBytes?: number;
  /** Score difference an edge may see before the self-test fails (default 1e-3 on the 0..1 scale). */
  tolerance?: number;
}

export interface GoldenSummary {
  file: string;
  images: number;
  bytes: number;
  expectedAccuracy: number;
  tolerance: number;
}

/** `n` items spread evenly over `items` (all of them when there are no more than `n`). */
export function spreadPick<T>(items: readonly T[], n: number): T[] {
  if (items.length <= n) return [...items];
  return Array.from({ length: n }, (_, i) => items[Math.floor(((i + 0.5) * items.length) / n)]!);
}

/** Whether an inspection agrees with the truth. */
export function matchesTruth(inspection: Pick<Inspection, 'verdict' | 'label' | 'top'>, truth: GoldenTruth): boolean {
  if ('verdict' in truth) return inspection.verdict === truth.verdict;
  return (inspection.top?.[0]?.label ?? inspection.label) === truth.label;
}

const IMAGE_EXT = /^\.(jpe?g|png|bmp|webp|tiff?)$/;

/**
 * Copies the candidates (within the bounds) into the finished package at `dir`, inspects each
 * with the package through the edge's runtime and writes golden.json. The package's manifest
 * and model must already be written.
 */
export async function writeGoldenSet(dir: string, candidates: readonly GoldenCandidate[], opts: GoldenOptions = {}): Promise<GoldenSummary> {
  const maxImages = Math.min(opts.maxImages ?? 24, 48);
  const maxImageBytes = opts.maxImageBytes ?? 512 * 1024;
  const maxTotal = opts.maxTotalBytes ?? 4 * 1024 * 1024;
  const tolerance = opts.tolerance ?? 1e-3;
  const kept: (GoldenCandidate & { name: string })[] = [];
  let total = 0;
  for (const c of candidates) {
    if (kept.length >= maxImages) break;
    const ext = extname(c.source).toLowerCase();
    if (!IMAGE_EXT.test(ext) || c.bytes.length > maxImageBytes || total + c.bytes.length > maxTotal) continue;
    kept.push({ ...c, name: `golden-${String(kept.length).padStart(2, '0')}${ext}` });
    total += c.bytes.length;
  }
  if (kept.length === 0) throw new OspreyError('OSP_ERR_USAGE', `no training image fits the golden set's bounds (${maxImageBytes} bytes each, ${maxTotal} in all)`);
  const runner = await loadModelPackage(dir, { intraOpThreads: 1 });
  const images = [];
  let correct = 0;
  try {
    for (const c of kept) {
      const r = await runner.inspect(c.bytes);
      if (matchesTruth(r, c.truth)) correct++;
      await writeFile(join(dir, c.name), c.bytes);
      images.push({
        file: c.name,
        source: c.source,
        sha256: sha256Hex(c.bytes),
        bytes: c.bytes.length,
        truth: c.truth,
        expected: { verdict: r.verdict, label: r.top?.[0]?.label ?? r.label, score: r.score },
      });
    }
  } finally {
    await runner.close();
  }
  const expectedAccuracy = correct / kept.length;
  await writeFile(join(dir, GOLDEN_FILE), `${JSON.stringify({ schema: GOLDEN_SCHEMA, tolerance, expectedAccuracy, images }, null, 2)}\n`);
  return { file: GOLDEN_FILE, images: kept.length, bytes: total, expectedAccuracy, tolerance };
}

/**
 * writeGoldenSet for a trainer: the summary for the model card, or undefined (logged) when no
 * candidate fits the bounds — a model is never refused for its golden set.
 */
export async function keepGoldenSet(dir: string, candidates: readonly GoldenCandidate[], log: (line: string) => void, opts: GoldenOptions = {}): Promise<Record<string, unknown> | undefined> {
  if (candidates.length === 0) return undefined;
  try {
    const summary = await writeGoldenSet(dir, candidates, opts);
    log(`golden set: ${summary.images} images, expected accuracy ${(summary.expectedAccuracy * 100).toFixed(0)} %`);
    return { ...summary };
  } catch (err) {
    if (!(err instanceof OspreyError) || err.code !== 'OSP_ERR_USAGE') throw err;
    log(`golden set: none (${err.message})`);
    return undefined;
  }
}
