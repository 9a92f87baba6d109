/**
 * A small real classifier package for the occlusion-map tests, and a part image it calls: the
 * model stretches the image to 8×8 RGB, averages each channel and multiplies by 60 (logits
 * scratch = red, good = green, dent = blue, softmax). The image is a neutral grey part with a blue
 * spot in one grid cell, so the model says "dent" because of that spot: greying the spot's
 * cell lowers p(dent), greying a grey cell changes nothing.
 */
import sharp from 'sharp';
import { archiveDirectory } from '../../models/package-archive.js';
import { generatePartImage } from '../../models/fixtures.js';
import { OnnxModelBuilder, writeModelPackage, type ManifestDraft } from '../../models/authoring.js';

export const OCC_MODEL = 'spot-classifier';
export const OCC_VERSION = '1.0.0';
/** The test image: 128 × 96, the blue spot inside cell (5, 2) of an 8 × 8 grid (16 × 12 px cells). */
export const OCC_IMAGE = { width: 128, height: 96, spot: { left: 82, top: 26, width: 12, height: 8 }, spotCell: { cx: 5, cy: 2 } } as const;

/** Writes the package into `dir`; returns its archive (unsigned). */
export async function spotClassifierPackage(dir: string): Promise<Buffer> {
  const b = new OnnxModelBuilder({ opset: 13 });
  b.input('x', 'float32', [1, 3, 8, 8])
    .initializer('gain', 'float32', [], [60])
    .node('GlobalAveragePool', ['x'], ['pooled'])
    .node('Flatten', ['pooled'], ['flat'], { axis: 1 })
    .node('Mul', ['flat', 'gain'], ['logits'])
    .output('logits', 'float32', [1, 3]);
  const draft: ManifestDraft = {
    schemaVersion: 1,
    name: OCC_MODEL,
    version: OCC_VERSION,
    task: 'classification',
    input: { name: 'x', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'rgb', resize: 'stretch', scale: 1 / 255 },
    // topK 1: the map must still follow the label's probability when it is not the reported top-1.
    outputs: { classification: { output: 'logits', activation: 'softmax', topK: 1 } },
    labels: ['scratch', 'good', 'dent'],
    defectLabels: ['scratch', 'dent'],
    thresholds: { default: 0.5 },
  };
  await writeModelPackage(dir, draft, b.toBytes());
  return archiveDirectory(dir);
}

/** The part image (JPEG, as a camera sends): grey 128 with a blue spot (a dent, to this model). */
export async function spotImage(): Promise<Buffer> {
  const { width, height, spot } = OCC_IMAGE;
  const px = Buffer.alloc(width * height * 3, 128);
  for (let y = spot.top; y < spot.top + spot.height; y++) {
    for (let x = spot.left; x < spot.left + spot.width; x++) px.set([40, 60, 250], (y * width + x) * 3);
  }
  return sharp(px, { raw: { width, height, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
}

/**
 * A generated flange (models/synthetic.ts, 320 × 240) with a blue paint mark on its rim: the part
 * and belt are neutral grey, so to this model only the mark counts (softmax ignores a brightness
 * change common to all channels). For screenshots that look like a line's frames.
 */
export async function markedPartImage(): Promise<Buffer> {
  const width = 320;
  const height = 240;
  const { data } = await sharp(await generatePartImage({ seed: 7, width, height, format: 'png' })).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  const [cx, cy, rx, ry] = [220, 75, 13, 9]; // inside cell (5, 2) of an 8 × 8 grid
  for (let y = cy - ry; y <= cy + ry; y++) {
    for (let x = cx - rx; x <= cx + rx; x++) {
      if (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1) data.set([40, 70, 230], (y * width + x) * 3);
    }
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).jpeg({ quality: 92 }).toBuffer();
}
