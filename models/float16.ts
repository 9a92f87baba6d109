/**
 * IEEE 754 binary16 conversion. Node 20 has no Float16Array, and onnxruntime-node takes float16
 * tensors as Uint16Array bit patterns, so models with fp16 inputs/outputs need these.
 */

/** binary16 bits of a float32 given as its binary32 bits; rounds to nearest, ties to even. */
export function halfBitsFromFloatBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) {
    // Inf stays Inf; NaN stays a (quiet) NaN, never collapsing to Inf.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Result is subnormal (or zero): value = m · 2^-24.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && (m & 1) === 1) ? m + 1 : m);
  }
  const h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  return sign | (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1) ? h + 1 : h);
}

/** The binary16 bit pattern nearest to `value` (round half to even). */
export function float32ToFloat16(value: number): number {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0];
  return halfBitsFromFloatBits(bits);
}

/** The number a binary16 bit pattern stands for. */
export function float16ToFloat32(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exp = (half >>> 10) & 0x1f;
  const mant = half & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Converts a whole Float32Array to binary16 bit patterns. */
export function float32ArrayToFloat16(src: Float32Array, dst = new Uint16Array(src.length)): Uint16Array {
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) dst[i] = halfBitsFromFloatBits(bits[i]);
  return dst;
}

/** Converts binary16 bit patterns to a Float32Array. */
export function float16ArrayToFloat32(src: Uint16Array, dst = new Float32Array(src.length)): Float32Array {
  for (let i = 0; i < src.length; i++) dst[i] = float16ToFloat32(src[i]);
  return dst;
}
