/**
 * The monitor's statistics on known inputs (issue 17): PSI on known distributions, the binomial
 * tail and its critical count, decile bins, the thumbnail's area average, the frame figures
 * (brightness, contrast, sharpness) and the shift estimate on a synthetic scene moved by a known
 * amount, and the monitor's alarms with hysteresis (one raise and one clear however a level
 * hovers; a reference reset clears what is raised).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRng } from '../../models/prng.js';
import { grayThumbnail, type GrayThumbnail } from '../../models/thumbnail.js';
import { frameShift, measureFrame, profileLag, shiftReference } from '../../edge-agent/image-health.js';
import { createMonitor } from '../../edge-agent/monitor.js';
import type { InspectOutcome } from '../../edge-agent/pipeline.js';
import type { ModelRunner } from '../../models/types.js';
import {
  binomialCriticalCount,
  binomialTail,
  binOf,
  histogram,
  psi,
  quantileEdges,
  scoreReferenceFromQuantiles,
} from '../../edge-agent/score-drift.js';
import { testLogger } from './fixtures.js';

const close = (a: number, b: number, tol: number, what: string) => assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

test('PSI: 0 for equal distributions, the closed form for known ones, and sampling noise under the 0.1 "no change" mark', () => {
  assert.equal(psi([10, 20, 30], [1, 2, 3]), 0);
  // Two bins, 50/50 → 80/20: (0.8−0.5)ln(0.8/0.5) + (0.2−0.5)ln(0.2/0.5).
  close(psi([50, 50], [80, 20]), 0.3 * Math.log(1.6) + -0.3 * Math.log(0.4), 1e-12, 'two bins');
  // Uniform deciles against a sample of the same uniform: PSI ≈ (bins − 1)(1/n + 1/m) ≈ 0.06 for 300/300.
  const rng = createRng(3);
  const ref = Array.from({ length: 300 }, () => rng.next());
  const edges = quantileEdges(ref);
  assert.equal(edges.length, 9);
  const same = Array.from({ length: 300 }, () => rng.next());
  const shifted = same.map((v) => Math.min(1, v + 0.2));
  const noise = psi(histogram(ref, edges), histogram(same, edges));
  assert.ok(noise < 0.1, `same distribution: ${noise}`);
  const drift = psi(histogram(ref, edges), histogram(shifted, edges));
  assert.ok(drift > 0.25, `shifted by 0.2: ${drift}`);
});

test('decile bins: ties merge, values land in the right bin, calibration quantiles give equal shares', () => {
  assert.deepEqual(quantileEdges([0, 0, 0, 0, 0, 0, 0, 0, 1, 2]), [0, 1, 2]);
  assert.equal(binOf(-1, [0, 1, 2]), 0);
  assert.equal(binOf(0, [0, 1, 2]), 1);
  assert.equal(binOf(1.5, [0, 1, 2]), 2);
  assert.equal(binOf(9, [0, 1, 2]), 3);
  const r = scoreReferenceFromQuantiles([0, 0.1, 0.2, 0.2, 0.4])!;
  assert.deepEqual(r.edges, [0.1, 0.2]);
  assert.deepEqual(r.shares, [0.25, 0.25, 0.5]);
  assert.equal(scoreReferenceFromQuantiles([0.1, Number.NaN, 0.3]), undefined);
});

test('binomial tail and critical count match exact values', () => {
  // P(X ≥ 1) for Bin(10, 0.1) = 1 − 0.9^10.
  close(binomialTail(10, 0.1, 1), 1 - 0.9 ** 10, 1e-12, 'P(X≥1)');
  // P(X ≥ 9) for Bin(10, 0.5) = 11/1024.
  close(binomialTail(10, 0.5, 9), 11 / 1024, 1e-12, 'P(X≥9)');
  assert.equal(binomialTail(10, 0.5, 0), 1);
  assert.equal(binomialTail(10, 0.5, 11), 0);
  const k = binomialCriticalCount(100, 0.01, 1e-4);
  assert.ok(binomialTail(100, 0.01, k) <= 1e-4 && binomialTail(100, 0.01, k - 1) > 1e-4, `k = ${k}`);
});

/** A textured scene; `dx` moves it right, `dy` down (the uncovered strip repeats the edge). */
function scene(w: number, h: number, dx = 0, gain = 1, blur = false, dy = 0): GrayThumbnail {
  const rng = createRng(11);
  const base = new Float32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) base[y * w + x] = 60 + 25 * Math.sin(x / 3.1) + 25 * Math.cos(y / 5.3) + 20 * rng.next() + (x > w / 2 ? 30 : 0) + (y > h / 3 ? 25 : 0);
  const data = new Float32Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const sx = Math.max(0, x - dx);
      let v = base[Math.min(h - 1, Math.max(0, y - dy)) * w + sx]!;
      if (blur) {
        let s = 0;
        let n = 0;
        for (let j = -2; j <= 2; j++) for (let i = -2; i <= 2; i++) {
          const yy = Math.min(h - 1, Math.max(0, y + j));
          const xx = Math.min(w - 1, Math.max(0, Math.max(0, x + i - dx)));
          s += base[yy * w + xx]!;
          n++;
        }
        v = s / n;
      }
      data[y * w + x] = v * gain;
    }
  }
  return { width: w, height: h, data };
}

test('the thumbnail averages blocks of the decoded pixels; RGB becomes the channel mean; large inputs are sampled', () => {
  const px = Uint8Array.from([0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140, 150]);
  const t = grayThumbnail({ data: px, width: 4, height: 4, channels: 1 }, 2);
  assert.deepEqual([t.width, t.height], [2, 2]);
  assert.deepEqual([...t.data], [25, 45, 105, 125]);
  const rgb = grayThumbnail({ data: Uint8Array.from([30, 60, 90]), width: 1, height: 1, channels: 3 }, 8);
  assert.deepEqual([...rgb.data], [60]);
  const big = grayThumbnail({ data: new Uint8Array(640 * 480 * 3).fill(77), width: 640, height: 480, channels: 3 }, 128);
  assert.deepEqual([big.width, big.height], [128, 96]);
  assert.ok(big.data.every((v) => v === 77));
});

test('frame figures: gain moves brightness only; blur lowers sharpness; a moved scene gives its shift', () => {
  const a = measureFrame(scene(128, 128));
  const bright = measureFrame(scene(128, 128, 0, 1.5));
  close(bright.brightness, a.brightness * 1.5, 1e-3, 'brightness × gain');
  close(bright.contrast, a.contrast, 1e-6, 'contrast (RMS) unchanged by gain');
  close(bright.sharpness, a.sharpness, 1e-6, 'sharpness (normalised) unchanged by gain');
  const blurred = measureFrame(scene(128, 128, 0, 1, true));
  assert.ok(blurred.sharpness < a.sharpness / 3, `blur: ${blurred.sharpness} vs ${a.sharpness}`);
  const ref = shiftReference([a])!;
  for (const dx of [0, 3, 8, -5]) {
    const moved = measureFrame(scene(128, 128, dx));
    const s = frameShift(moved, ref, 0.15);
    close(s.x * 128, dx, 0.5, `shift ${dx}`);
    close(s.y * 128, 0, 1.5, 'no vertical shift (±1.5 px)');
  }
  // Rows are sampled (one in four at this size): a vertical shift is still found to within a pixel or so.
  for (const dy of [4, 9, -6]) {
    const s = frameShift(measureFrame(scene(128, 128, 0, 1, false, dy)), ref, 0.15);
    close(s.y * 128, dy, 1.5, `vertical shift ${dy}`);
    close(s.x * 128, 0, 0.5, 'no horizontal shift');
  }
  assert.equal(profileLag(Float64Array.from([1, 2]), Float64Array.from([1, 2]), 3), 0, 'too short: no shift');
});

function outcome(i: number, thumbnail: GrayThumbnail, score = 0.2, verdict: 'ok' | 'defect' = 'ok', model = 'm@1'): InspectOutcome {
  return {
    record: { seq: i, ts: i, camera: 'cam1', source: 'http', model, verdict, label: verdict === 'ok' ? 'good' : 'anomaly', score, latencyMs: 1 },
    inspection: { verdict, label: 'good', score, threshold: 0.5, thumbnail, timings: { decodeMs: 0, inferMs: 0, postMs: 0, totalMs: 0 } },
  };
}

test('monitor alarms: raised once while the level hovers past the mark, cleared once after the hold time; a reset clears', () => {
  let now = 0;
  const events: Record<string, unknown>[] = [];
  const mon = createMonitor({
    settings: { referenceFrames: 20, window: 5, scoreReferenceFrames: 60, scoreWindow: 60, holdMs: 1000 },
    logger: testLogger(),
    now: () => now,
    publishEvent: (kind, _l, _m, data) => kind === 'alert' && events.push(data!),
  });
  const rng = createRng(5);
  const normal = () => scene(64, 64, 0, 1 + 0.02 * rng.normal());
  let i = 0;
  for (; i < 120; i++, now += 10) mon.observe(outcome(i, normal(), 0.2 + 0.05 * rng.next()));
  assert.equal(mon.figures().phase, 'watching');
  assert.equal(events.length, 0, JSON.stringify(events));
  // Brightness hovering: alternately 2× and normal, several windows long: one raise.
  for (let k = 0; k < 60; k++, i++, now += 10) mon.observe(outcome(i, k % 3 === 2 ? normal() : scene(64, 64, 0, 2), 0.2 + 0.05 * rng.next()));
  assert.deepEqual(events.map((e) => `${e.alarm}${e.cleared ? ' cleared' : ''}`), ['image-brightness']);
  assert.deepEqual(mon.alarms(), ['image-brightness']);
  // Back to normal: no clear before the hold time, one clear after it.
  for (let k = 0; k < 20; k++, i++, now += 10) mon.observe(outcome(i, normal(), 0.2 + 0.05 * rng.next()));
  assert.equal(events.length, 1, 'held');
  now += 1000;
  for (let k = 0; k < 3; k++, i++, now += 10) mon.observe(outcome(i, normal(), 0.2 + 0.05 * rng.next()));
  assert.deepEqual(events.map((e) => `${e.alarm}${e.cleared ? ' cleared' : ''}`), ['image-brightness', 'image-brightness cleared']);
  assert.deepEqual(mon.alarms(), []);
  // Defects pour in: defect-rate-spike (and score drift); then a new model resets and clears them.
  for (let k = 0; k < 40; k++, i++, now += 10) mon.observe(outcome(i, normal(), 0.9, 'defect'));
  assert.ok(mon.alarms().includes('defect-rate-spike') && mon.alarms().includes('score-drift'), JSON.stringify(mon.alarms()));
  const before = events.length;
  mon.observe(outcome(i++, normal(), 0.2, 'ok', 'm@2'));
  const after = events.slice(before);
  assert.deepEqual(after.map((e) => e.cleared).filter((c) => c !== true), [], 'a reset only clears');
  assert.deepEqual(after.map((e) => e.alarm).sort(), ['defect-rate-spike', 'score-drift']);
  assert.deepEqual(mon.alarms(), []);
  assert.equal(mon.figures().phase, 'reference');
  assert.equal(mon.figures().model, 'm@2');
});

test('a monitor never throws into the pipeline and costs nothing when disabled', () => {
  const mon = createMonitor({ settings: { enabled: false }, logger: testLogger() });
  assert.equal(mon.thumbnailSize(), undefined);
  mon.observe(outcome(1, scene(8, 8)));
  assert.equal(mon.figures().phase, 'off');
  assert.equal(mon.figures().frames, 0);
  const on = createMonitor({ logger: testLogger(), publishEvent: () => { throw new Error('link down'); } });
  assert.equal(on.thumbnailSize(), 128);
  // A malformed outcome (no record) is logged, not thrown.
  on.observe({} as InspectOutcome);
  on.setSettings({ enabled: false });
  assert.equal(on.thumbnailSize(), undefined);
});

test('score drift takes its reference from the package calibration quantiles when the manifest carries them', () => {
  const runner = { id: 'm@1', manifest: { metadata: { scoreQuantiles: '0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1' } } } as unknown as ModelRunner;
  const mon = createMonitor({ settings: { scoreReferenceFrames: 60, scoreWindow: 60 }, logger: testLogger() });
  const rng = createRng(9);
  const t = scene(16, 16);
  // Scores uniform on [0, 1], as the calibration says: no drift, whatever the first frames were.
  for (let i = 0; i < 200; i++) mon.observe(outcome(i, t, rng.next()), runner);
  assert.equal(mon.figures().scoreReference, 'calibration');
  assert.ok(mon.figures().scorePsi! < 0.25, String(mon.figures().scorePsi));
  // All scores low: far from the calibration's spread.
  for (let i = 200; i < 260; i++) mon.observe(outcome(i, t, 0.05 * rng.next()), runner);
  assert.ok(mon.figures().scorePsi! > 1, String(mon.figures().scorePsi));
  assert.ok(mon.alarms().includes('score-drift'));
  // Without metadata: the first frames are the reference.
  const plain = createMonitor({ settings: { scoreReferenceFrames: 60, scoreWindow: 60 }, logger: testLogger() });
  for (let i = 0; i < 60; i++) plain.observe(outcome(i, t, rng.next()));
  assert.equal(plain.figures().scoreReference, 'frames');
});
