/**
 * A small colour PNG of an anomaly map, kept with defect results so a person can see where the
 * model looked without storing the frame.
 */
import sharp from 'sharp';

/** Jet colour ramp: 0 blue → 0.5 green → 1 red (0.5 is where normalised maps hit the threshold). */
export function jet(v: number): [number, number, number] {
  const c = (x: number) => Math.round(255 * Math.min(1, Math.max(0, x)));
  const t = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 1));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
}

/**
 * Renders a mapWidth×mapHeight map of normalised values (0..1, clipped) as a PNG `width` pixels
 * wide (height keeps the aspect ratio).
 */
export async function renderHeatmap(map: Float32Array, mapWidth: number, mapHeight: number, width = 64): Promise<Buffer> {
  const rgb = Buffer.alloc(mapWidth * mapHeight * 3);
  for (let i = 0; i < mapWidth * mapHeight; i++) rgb.set(jet(map[i]), i * 3);
  const height = Math.max(1, Math.round((mapHeight * width) / mapWidth));
  return sharp(rgb, { raw: { width: mapWidth, height: mapHeight, channels: 3 } })
    .resize(width, height, { fit: 'fill', kernel: 'linear' })
    .png({ compressionLevel: 6 })
    .toBuffer();
}
