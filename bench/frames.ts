/**
 * Camera frames for the edge benchmark: synthetic parts (models/synthetic.ts) as JPEGs at a
 * line camera's resolution, good and defective, cached next to the benchmark models because a
 * 1280×960 frame takes a few hundred milliseconds to draw.
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SYNTHETIC_DEFECTS, generatePartImage } from '../models/synthetic.js';

/** Seeds start past the demo model's training seeds (1–40), so no frame is a training image. */
const FIRST_SEED = 5001;

export interface FrameSet {
  width: number;
  height: number;
  images: Buffer[];
  /** Mean encoded size in bytes. */
  meanBytes: number;
}

/**
 * `count` JPEG frames of width×height, one in sixteen with a defect (a line's defect rate is
 * lower still, but the defect path — kept images — should be exercised). Read from `cacheDir` when
 * already drawn; drawn and cached otherwise.
 */
export async function benchFrames(cacheDir: string, count: number, width = 1280, height = 960): Promise<FrameSet> {
  const dir = join(cacheDir, `frames-v2-${width}x${height}`);
  await mkdir(dir, { recursive: true });
  const images: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const file = join(dir, `frame-${i}.jpg`);
    let bytes: Buffer;
    try {
      bytes = await readFile(file);
    } catch {
      const defect = i % 16 === 15 ? SYNTHETIC_DEFECTS[(i >> 4) % SYNTHETIC_DEFECTS.length]! : null;
      bytes = await generatePartImage({ seed: FIRST_SEED + i, defect, width, height });
      const tmp = `${file}.${process.pid}.tmp`;
      await writeFile(tmp, bytes);
      await rename(tmp, file);
    }
    images.push(bytes);
  }
  return { width, height, images, meanBytes: Math.round(images.reduce((a, b) => a + b.length, 0) / count) };
}
