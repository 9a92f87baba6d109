import assert from 'node:assert/strict';
import { test } from 'node:test';
import { float16ToFloat32, float32ArrayToFloat16, float32ToFloat16 } from '../../models/float16.js';

test('float32 → float16 bit patterns, worked by hand', () => {
  const cases: [number, number][] = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff], // largest half
    [65519, 0x7bff], // below the halfway point to 65536
    [65520, 0x7c00], // halfway: ties to even → Inf
    [1e6, 0x7c00],
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -25, 0x0000], // exactly half the smallest subnormal: ties to even → 0
    [3 * 2 ** -26, 0x0001], // 0.75 of it: rounds up
    [1 + 2 ** -11, 0x3c00], // tie between 1 and 1+2^-10: even mantissa wins
    [1 + 3 * 2 ** -11, 0x3c02], // tie between 1+2^-10 (odd) and 1+2^-9 (even)
    [1 / 3, 0x3555],
    // 114/255 = 0.447058… = 1.788235… · 2^-2 → exponent 13, mantissa round(0.788235·1024 = 807.15) = 807
    [114 / 255, (13 << 10) | 807],
  ];
  for (const [value, bits] of cases) {
    assert.equal(float32ToFloat16(value).toString(16), bits.toString(16), `f16(${value})`);
  }
  assert.equal(float32ToFloat16(NaN) & 0x7c00, 0x7c00);
  assert.notEqual(float32ToFloat16(NaN) & 0x3ff, 0, 'NaN must not become Inf');
});

test('float16 → float32 and round trips', () => {
  assert.equal(float16ToFloat32(0x3c00), 1);
  assert.equal(float16ToFloat32(0x7bff), 65504);
  assert.equal(float16ToFloat32(0x0001), 2 ** -24);
  assert.equal(float16ToFloat32(0xfc00), -Infinity);
  assert.ok(Number.isNaN(float16ToFloat32(0x7e00)));
  // Every finite half survives half → float → half exactly.
  for (let h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) === 0x7c00) continue;
    assert.equal(float32ToFloat16(float16ToFloat32(h)), h);
  }
  const arr = float32ArrayToFloat16(new Float32Array([1, 0.5, -2]));
  assert.deepEqual([...arr], [0x3c00, 0x3800, 0xc000]);
});
