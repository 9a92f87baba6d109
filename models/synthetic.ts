/**
 * Deterministic synthetic part images for the demo and the tests: a machined metal flange (a
 * disc with a bore and six bolt holes, concentric turning marks, directional light) on a ribbed
 * conveyor belt. Good parts vary the way real ones do — position ±2 px, rotation, brightness,
 * light direction, belt phase, sensor noise, JPEG — so a model has something to learn; defects
 * (scratch, spot, dent, missing area) are clearly visible to a person.
 */
import sharp from 'sharp';
import { createRng, type Rng } from './prng.js';

export const SYNTHETIC_DEFECTS = ['scratch', 'spot', 'dent', 'missing'] as const;
export type SyntheticDefect = (typeof SYNTHETIC_DEFECTS)[number];
/** Alias of SyntheticDefect. */
export type DefectKind = SyntheticDefect;

export interface PartImageOptions {
  /** Same seed, same image (for the same defect and size). */
  seed: number;
  defect?: SyntheticDefect | null;
  /** Default 256×256. */
  width?: number;
  height?: number;
  /** Default 'jpeg' (quality 92). */
  format?: 'jpeg' | 'png';
}

/** Seed of the part's design (turning marks): the same for every image, as for one product. */
const DESIGN_SEED = 0x05b4e7;

const clamp01 = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);

/** Smooth 1-D noise table (the lathe's turning marks), sampled with linear interpolation. */
function turningMarks(length: number, rng: Rng): (r: number) => number {
  const n = Math.ceil(length) + 4;
  const coarse = Float64Array.from({ length: n }, () => rng.normal());
  const table = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    // A short box blur gives marks a couple of pixels wide instead of per-pixel speckle.
    let s = 0;
    for (let k = -1; k <= 1; k++) s += coarse[Math.min(n - 1, Math.max(0, i + k))];
    table[i] = s / 3;
  }
  return (r) => {
    const i = Math.min(n - 2, Math.max(0, r));
    const i0 = Math.floor(i);
    const f = i - i0;
    return table[i0] * (1 - f) + table[i0 + 1] * f;
  };
}

/** Distance from (px, py) to the segment (ax, ay)–(bx, by). */
function segmentDistance(px: number, py: number, ax: number, ay: number, bx: number, by: number): number {
  const vx = bx - ax;
  const vy = by - ay;
  const t = clamp01(((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy));
  return Math.hypot(px - ax - t * vx, py - ay - t * vy);
}

/** Generates one encoded part image (JPEG or PNG, RGB). */
export async function generatePartImage(opts: PartImageOptions): Promise<Buffer> {
  const W = opts.width ?? 256;
  const H = opts.height ?? 256;
  const S = Math.min(W, H);
  const k = S / 256;
  const rng = createRng(opts.seed);
  const marks = turningMarks(S, createRng(DESIGN_SEED));

  // Pose and light of this particular part.
  const cx = W / 2 + rng.range(-2, 2) * k;
  const cy = H / 2 + rng.range(-2, 2) * k;
  const rot = ((rng.range(-1.5, 1.5) + 15) * Math.PI) / 180;
  const gain = 1 + rng.range(-0.04, 0.04);
  const light = ((45 + rng.range(-5, 5)) * Math.PI) / 180;
  const lx = Math.cos(light);
  const ly = Math.sin(light);
  const beltPhase = rng.range(0, 2 * Math.PI);
  const noise = 3;

  const R = 0.37 * S;
  const Rb = 0.1 * S;
  const bevel = 4 * k;
  const holeR = 0.032 * S;
  const holeRing = 0.25 * S;
  const holes = Array.from({ length: 6 }, (_, i) => {
    const a = rot + (i * Math.PI) / 3;
    return [cx + holeRing * Math.cos(a), cy + holeRing * Math.sin(a)] as const;
  });

  // The defect, placed on the flange face clear of bore, rim and bolt holes (a spot inside a hole
  // is invisible to anyone). Its own stream keeps a good and a defect image of one seed identical
  // apart from the defect.
  const defect = opts.defect ?? null;
  const drng = createRng(opts.seed * 7919 + 104729);
  let phi = 0;
  let dx0 = cx;
  let dy0 = cy;
  for (let attempt = 0; attempt < 50; attempt++) {
    phi = drng.range(0, 2 * Math.PI);
    const rho = drng.range(Rb + 14 * k, R - 14 * k);
    dx0 = cx + rho * Math.cos(phi);
    dy0 = cy + rho * Math.sin(phi);
    if (holes.every(([hx, hy]) => Math.hypot(dx0 - hx, dy0 - hy) > holeR + 18 * k)) break;
  }
  const scratch = (() => {
    const a = drng.range(0, Math.PI);
    const half = drng.range(18, 34) * k;
    return {
      ax: dx0 - half * Math.cos(a),
      ay: dy0 - half * Math.sin(a),
      bx: dx0 + half * Math.cos(a),
      by: dy0 + half * Math.sin(a),
      w: drng.range(1.8, 2.6) * k,
      delta: (drng.next() < 0.5 ? -1 : 1) * drng.range(50, 75),
    };
  })();
  const spot = { r: drng.range(4.5, 7.5) * k, aspect: drng.range(0.7, 1), delta: -drng.range(60, 85) };
  const dent = { r: drng.range(10, 15) * k, depth: drng.range(60, 80) };
  const notch = {
    x: cx + R * Math.cos(phi),
    y: cy + R * Math.sin(phi),
    r: drng.range(14, 22) * k,
  };

  const rgb = Buffer.alloc(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const px = x + 0.5;
      const py = y + 0.5;
      const dx = px - cx;
      const dy = py - cy;
      const r = Math.hypot(dx, dy);

      const belt = 34 + 5 * Math.sin(px * 0.35 + beltPhase) + 2 * Math.sin(py * 0.05);

      let metal = clamp01(R - r + 0.5) * clamp01(r - Rb + 0.5);
      if (metal > 0) {
        for (const [hx, hy] of holes) metal *= clamp01(Math.hypot(px - hx, py - hy) - holeR + 0.5);
        if (defect === 'missing') metal *= clamp01(Math.hypot(px - notch.x, py - notch.y) - notch.r + 0.5);
      }

      let v = belt;
      if (metal > 0) {
        let m = 150 + 5 * marks(r * 1.5) + 3 * Math.sin(r * 0.12);
        // Chamfers at rim and bore catch less light.
        if (r > R - bevel) m -= 40 * clamp01((r - (R - bevel)) / bevel);
        if (r < Rb + bevel) m -= 30 * clamp01((Rb + bevel - r) / bevel);
        m *= gain * (1 + (0.12 * (dx * lx + dy * ly)) / R);

        if (defect === 'scratch') {
          const d = segmentDistance(px, py, scratch.ax, scratch.ay, scratch.bx, scratch.by);
          m += scratch.delta * clamp01(scratch.w / 2 - d + 0.5);
        } else if (defect === 'spot') {
          const ex = (px - dx0) / spot.aspect;
          const d = Math.hypot(ex, py - dy0);
          m += spot.delta * clamp01((spot.r - d) / 1.5 + 0.5);
        } else if (defect === 'dent') {
          const ex = px - dx0;
          const ey = py - dy0;
          const d = Math.hypot(ex, ey);
          if (d < dent.r) {
            const fall = 1 - (d / dent.r) ** 2;
            // The slope facing the light is bright, the far one dark: a dent seen under raking light.
            m += dent.depth * ((-(ex * lx + ey * ly) / dent.r) * fall) - 12 * fall;
          }
        }
        v = metal * m + (1 - metal) * belt;
      }
      v += noise * rng.normal();
      const i = (y * W + x) * 3;
      rgb[i] = Math.max(0, Math.min(255, Math.round(v * 0.97 + 1)));
      rgb[i + 1] = Math.max(0, Math.min(255, Math.round(v)));
      rgb[i + 2] = Math.max(0, Math.min(255, Math.round(v * 1.03 + 2)));
    }
  }
  const img = sharp(rgb, { raw: { width: W, height: H, channels: 3 } });
  return (opts.format ?? 'jpeg') === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 92 }).toBuffer();
}
