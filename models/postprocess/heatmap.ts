/**
 * A small colour PNG of an anomaly map (or a classifier's occlusion map), kept with defect results
 * so a person can see where the model looked without storing the frame.
 *
 * Rendered in plain JS (bilinear resize, jet colours, one zlib deflate) rather than through sharp:
 * a 64 px map is 12 KB of pixels, and sharp's per-call pipeline cost (~1.6 ms of CPU) was most of
 * the work; this takes a fraction of that (docs/edge-agent.md, "Anomaly heatmaps").
 */
import { crc32, deflateSync } from 'node:zlib';

/** Jet colour ramp: 0 blue → 0.5 green → 1 red (0.5 is where normalised maps hit the threshold). */
export function jet(v: number): [number, number, number] {
  const c = (x: number) => Math.round(255 * Math.min(1, Math.max(0, x)));
  const t = Math.min(1, Math.max(0, Number.isFinite(v) ? v : 1));
  return [c(1.5 - Math.abs(4 * t - 3)), c(1.5 - Math.abs(4 * t - 2)), c(1.5 - Math.abs(4 * t - 1))];
}

/**
 * jet() at 1021 levels: one lookup per pixel instead of three clamps and an array. Exact at
 * multiples of 0.25, within half a colour step elsewhere.
 */
const JET_LEVELS = 1020;
const JET_LUT = (() => {
  const lut = new Uint8Array((JET_LEVELS + 1) * 3);
  for (let i = 0; i <= JET_LEVELS; i++) lut.set(jet(i / JET_LEVELS), i * 3);
  return lut;
})();

/** One PNG chunk: length, type, data, CRC of type and data. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(data, crc32(head.subarray(4))) >>> 0, 0);
  return Buffer.concat([head, data, crc]);
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** An 8-bit RGB PNG of `rgb` (width × height × 3 bytes). */
export function encodeRgbPng(rgb: Uint8Array, width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type RGB
  // Each scanline starts with its filter byte (0: none).
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', deflateSync(raw, { level: 6 })), chunk('IEND', Buffer.alloc(0))]);
}

/**
 * Renders a mapWidth×mapHeight map of normalised values (0..1, clipped; NaN as 1) as a PNG
 * `width` pixels wide (height keeps the aspect ratio), bilinearly resized (pixel centres aligned),
 * in jet colours (JET_LUT).
 */
export async function renderHeatmap(map: ArrayLike<number>, mapWidth: number, mapHeight: number, width = 64): Promise<Buffer> {
  if (!(mapWidth > 0 && mapHeight > 0) || map.length < mapWidth * mapHeight) {
    throw new RangeError(`a ${mapWidth}×${mapHeight} map needs ${mapWidth * mapHeight} values, got ${map.length}`);
  }
  const height = Math.max(1, Math.round((mapHeight * width) / mapWidth));
  // Clipped once (NaN as 1, as jet does).
  const m = new Float32Array(mapWidth * mapHeight);
  for (let i = 0; i < m.length; i++) {
    const v = map[i]!;
    m[i] = v >= 0 ? (v <= 1 ? v : 1) : v < 0 ? 0 : 1;
  }
  // Source columns and weights, the same for every row.
  const cx0 = new Int32Array(width);
  const cx1 = new Int32Array(width);
  const cfx = new Float32Array(width);
  for (let x = 0; x < width; x++) {
    const sx = Math.min(mapWidth - 1, Math.max(0, ((x + 0.5) * mapWidth) / width - 0.5));
    cx0[x] = Math.floor(sx);
    cx1[x] = Math.min(mapWidth - 1, cx0[x]! + 1);
    cfx[x] = sx - cx0[x]!;
  }
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const sy = Math.min(mapHeight - 1, Math.max(0, ((y + 0.5) * mapHeight) / height - 0.5));
    const r0 = Math.floor(sy) * mapWidth;
    const r1 = Math.min(mapHeight - 1, Math.floor(sy) + 1) * mapWidth;
    const fy = sy - Math.floor(sy);
    for (let x = 0; x < width; x++) {
      const fx = cfx[x]!;
      const top = m[r0 + cx0[x]!]! * (1 - fx) + m[r0 + cx1[x]!]! * fx;
      const bottom = m[r1 + cx0[x]!]! * (1 - fx) + m[r1 + cx1[x]!]! * fx;
      const k = Math.round((top * (1 - fy) + bottom * fy) * JET_LEVELS) * 3;
      const o = (y * width + x) * 3;
      rgb[o] = JET_LUT[k]!;
      rgb[o + 1] = JET_LUT[k + 1]!;
      rgb[o + 2] = JET_LUT[k + 2]!;
    }
  }
  return encodeRgbPng(rgb, width, height);
}
