/**
 * Synthetic anomalies for judging the trainer's choices without defect images (search.ts): a good
 * image's input tensor, altered with one sharp local defect, CutPaste-style (Li et al., 2021) plus
 * the shapes surface-inspection defects take:
 *   patch   — a rectangle (2–10 % of the area) copied from elsewhere in the image, shifted in
 *             brightness (CutPaste);
 *   scar    — a thin line (1–2 % of the side wide, 15–40 % long, any angle), darkened (crack, scratch);
 *   blotch  — a soft-edged dark ellipse (2–6 % of the side) (blowhole, pit);
 *   shading — a broad soft region (15–35 %) brighter or darker by 10–25 % of the range (uneven).
 * Geometry is in fractions of the image side, intensities in fractions of each channel's own
 * range (1st–99th percentile), so the same seed makes the same defect at any resolution and under
 * any input normalisation. Deterministic: the same (tensor, seed, kind) gives the same result.
 */
import { createRng } from '../prng.js';
import type { InputTensor } from '../tensor.js';

export const ANOMALY_KINDS = ['patch', 'scar', 'blotch', 'shading'] as const;
export type AnomalyKind = (typeof ANOMALY_KINDS)[number];

interface Plane {
  data: Float32Array;
  /** Offset of the plane in the tensor and the stride between pixels (nchw: 1, nhwc: C). */
  offset: number;
  step: number;
  lo: number;
  hi: number;
}

function planes(t: InputTensor): { planes: Plane[]; h: number; w: number } {
  const nhwc = t.dims[3] <= 4 && t.dims[1] > 4;
  const [c, h, w] = nhwc ? [t.dims[3], t.dims[1], t.dims[2]] : [t.dims[1], t.dims[2], t.dims[3]];
  const data = t.data as Float32Array;
  const out: Plane[] = [];
  for (let k = 0; k < c; k++) {
    const offset = nhwc ? k : k * h * w;
    const step = nhwc ? c : 1;
    const values = new Float32Array(h * w);
    for (let i = 0; i < h * w; i++) values[i] = data[offset + i * step];
    values.sort();
    out.push({ data, offset, step, lo: values[Math.floor(0.01 * (h * w - 1))], hi: values[Math.floor(0.99 * (h * w - 1))] });
  }
  return { planes: out, h, w };
}

/**
 * A copy of `t` (a float32 image tensor [1, C, H, W] or [1, H, W, C]) with one synthetic defect of
 * `kind` (default: ANOMALY_KINDS[seed mod 4]) drawn from `seed`.
 */
export function synthesiseAnomaly(t: InputTensor, seed: number, kind: AnomalyKind = ANOMALY_KINDS[((seed % 4) + 4) % 4]): InputTensor {
  const data = Float32Array.from(t.data as Float32Array);
  const out: InputTensor = { dtype: t.dtype, data, dims: [...t.dims] as InputTensor['dims'] };
  const { planes: ps, h, w } = planes(out);
  const rng = createRng(seed * 4 + ANOMALY_KINDS.indexOf(kind));
  const side = Math.min(h, w);
  const at = (p: Plane, x: number, y: number) => p.offset + (y * w + x) * p.step;
  /** Moves pixel (x, y) towards `target` (a fraction of the range: 0 = lo, 1 = hi) by weight a. */
  const pull = (x: number, y: number, target: number, a: number) => {
    if (a <= 0 || x < 0 || y < 0 || x >= w || y >= h) return;
    for (const p of ps) {
      const i = at(p, x, y);
      data[i] += Math.min(1, a) * (p.lo + target * (p.hi - p.lo) - data[i]);
    }
  };
  switch (kind) {
    case 'patch': {
      const area = rng.range(0.02, 0.1) * h * w;
      const aspect = Math.exp(rng.range(Math.log(0.3), Math.log(3.3)));
      const pw = Math.max(2, Math.min(w - 1, Math.round(Math.sqrt(area * aspect))));
      const ph = Math.max(2, Math.min(h - 1, Math.round(Math.sqrt(area / aspect))));
      const sx = rng.int(0, w - pw);
      const sy = rng.int(0, h - ph);
      const tx = rng.int(0, w - pw);
      const ty = rng.int(0, h - ph);
      const shift = (rng.next() < 0.5 ? -1 : 1) * rng.range(0.05, 0.2);
      for (const p of ps) {
        const src = Float32Array.from({ length: pw * ph }, (_, i) => t.data[at(p, sx + (i % pw), sy + Math.floor(i / pw))] as number);
        for (let i = 0; i < pw * ph; i++) data[at(p, tx + (i % pw), ty + Math.floor(i / pw))] = src[i] + shift * (p.hi - p.lo);
      }
      break;
    }
    case 'scar': {
      const len = rng.range(0.15, 0.4) * side;
      const half = (rng.range(0.01, 0.02) * side) / 2 + 0.5;
      const angle = rng.range(0, Math.PI);
      const cx = rng.range(0.2, 0.8) * w;
      const cy = rng.range(0.2, 0.8) * h;
      const strength = rng.range(0.5, 0.9);
      const dx = Math.cos(angle);
      const dy = Math.sin(angle);
      const r = Math.ceil(len / 2 + half + 1);
      for (let y = Math.floor(cy - r); y <= Math.ceil(cy + r); y++) {
        for (let x = Math.floor(cx - r); x <= Math.ceil(cx + r); x++) {
          const along = (x - cx) * dx + (y - cy) * dy;
          const across = Math.abs(-(x - cx) * dy + (y - cy) * dx);
          if (Math.abs(along) > len / 2) continue;
          pull(x, y, 0, strength * Math.min(1, half + 0.5 - across));
        }
      }
      break;
    }
    case 'blotch': {
      const rx = rng.range(0.02, 0.06) * side;
      const ry = rx * rng.range(0.6, 1.4);
      const cx = rng.range(0.15, 0.85) * w;
      const cy = rng.range(0.15, 0.85) * h;
      const strength = rng.range(0.5, 0.9);
      for (let y = Math.floor(cy - ry - 2); y <= Math.ceil(cy + ry + 2); y++) {
        for (let x = Math.floor(cx - rx - 2); x <= Math.ceil(cx + rx + 2); x++) {
          const d = Math.hypot((x - cx) / rx, (y - cy) / ry);
          pull(x, y, 0, strength * Math.min(1, (1.15 - d) / 0.3));
        }
      }
      break;
    }
    case 'shading': {
      const rad = rng.range(0.15, 0.35) * side;
      const cx = rng.range(0, 1) * w;
      const cy = rng.range(0, 1) * h;
      const shift = (rng.next() < 0.5 ? -1 : 1) * rng.range(0.1, 0.25);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const g = Math.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * rad * rad));
          if (g < 1e-3) continue;
          for (const p of ps) data[at(p, x, y)] += shift * g * (p.hi - p.lo);
        }
      }
      break;
    }
  }
  return out;
}
