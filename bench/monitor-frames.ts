/**
 * Real camera frames for the image-health and score-drift proof and bench (issue 17): the good
 * MTD magnetic-tile images of the shared data set, read in place, streamed in a seeded shuffled
 * order (a line sees good parts in no particular order; MTD's files are sorted by capture
 * session, whose lighting differs), and the perturbations a line suffers, made with sharp:
 * brighter light, a lens out of focus, a knocked camera, a washed-out (low-contrast) image.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { createRng } from '../models/prng.js';

export const PERTURBATIONS = ['brighten', 'blur', 'shift', 'low-contrast'] as const;
export type Perturbation = (typeof PERTURBATIONS)[number];

/** The alarm each perturbation must raise. */
export const ALARM_OF: Record<Perturbation, string> = {
  brighten: 'image-brightness',
  blur: 'image-blur',
  shift: 'camera-shift',
  'low-contrast': 'image-contrast',
};

/** How each is made (docs/monitoring.md quotes these). */
export const PERTURBATION_RECIPE: Record<Perturbation, string> = {
  brighten: 'gray levels × 2 (twice the exposure, clipped at 255)',
  blur: 'Gaussian blur, sigma 2 px of the source frame',
  shift: 'the view moved right by 8 % of the width (the uncovered strip repeats the edge)',
  'low-contrast': 'gray levels × 0.6 + 30 (a washed-out image of the same mean light)',
};

/** Sorted image files of `dir`. */
export async function imagesIn(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => /\.(jpe?g|png)$/i.test(f)).sort().map((f) => join(dir, f));
}

/** The good MTD frames: magnetic-tile/train/good and dev/good, read into memory. */
export async function mtdGoodFrames(dataDir: string): Promise<Buffer[]> {
  const root = join(dataDir, 'magnetic-tile');
  const files = [...(await imagesIn(join(root, 'train', 'good'))), ...(await imagesIn(join(root, 'dev', 'good')))];
  return Promise.all(files.map((f) => readFile(f)));
}

/** `count` indices into n frames: each pass over all frames in a fresh seeded shuffle. */
export function shuffledOrder(n: number, count: number, seed: number): number[] {
  const rng = createRng(seed);
  const out: number[] = [];
  while (out.length < count) {
    const pass = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rng.next() * (i + 1));
      [pass[i], pass[j]] = [pass[j]!, pass[i]!];
    }
    out.push(...pass.slice(0, count - out.length));
  }
  return out;
}

/** The frame as the perturbed camera would send it (JPEG, quality 95). */
export async function perturb(frame: Buffer, kind: Perturbation): Promise<Buffer> {
  const img = sharp(frame);
  switch (kind) {
    case 'brighten':
      return img.linear(2, 0).jpeg({ quality: 95 }).toBuffer();
    case 'blur':
      return img.blur(2).jpeg({ quality: 95 }).toBuffer();
    case 'low-contrast':
      return img.linear(0.6, 30).jpeg({ quality: 95 }).toBuffer();
    case 'shift': {
      const { width = 0, height = 0 } = await img.metadata();
      const dx = Math.max(1, Math.round(width * 0.08));
      const moved = await sharp(frame).extend({ left: dx, extendWith: 'copy' }).toBuffer();
      return sharp(moved).extract({ left: 0, top: 0, width, height }).jpeg({ quality: 95 }).toBuffer();
    }
  }
}

/** The MTD defect frames (dev/blowhole, break, crack, fray, uneven): what a bad batch of material looks like. */
export async function mtdDefectFrames(dataDir: string): Promise<Buffer[]> {
  const root = join(dataDir, 'magnetic-tile', 'dev');
  const files: string[] = [];
  for (const kind of ['blowhole', 'break', 'crack', 'fray', 'uneven']) files.push(...(await imagesIn(join(root, kind))));
  return Promise.all(files.map((f) => readFile(f)));
}
