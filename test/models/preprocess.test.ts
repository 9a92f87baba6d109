import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planResize } from '../../models/geometry.js';
import { resolveInput, type ResolvedInput } from '../../models/manifest-check.js';
import { preprocessImage } from '../../models/preprocess.js';
import { pixelsToTensor } from '../../models/tensor.js';
import type { ManifestInput } from '../../protocol/manifest.js';
import { pngFromPixels, solidPng } from './helpers.js';

function spec(over: Partial<ManifestInput>): ResolvedInput {
  return resolveInput({
    name: 'x',
    layout: 'nchw',
    width: 4,
    height: 4,
    dtype: 'float32',
    color: 'rgb',
    resize: 'stretch',
    ...over,
  });
}

const f32 = (v: number) => Math.fround(v);

test('letterbox plan follows Ultralytics LetterBox', () => {
  // 6×4 into 8×8: r = min(8/6, 8/4) = 4/3 → 8×round(5.33)=5; dh = 1.5 → top round(1.4) = 1.
  const p = planResize(6, 4, { width: 8, height: 8, resize: 'letterbox', cropFraction: 1 });
  assert.equal(p.resizeWidth, 8);
  assert.equal(p.resizeHeight, 5);
  assert.equal(p.padLeft, 0);
  assert.equal(p.padTop, 1);
  assert.deepEqual(p.letterbox, { scale: 4 / 3, padX: 0, padY: 1 });
  // 1280×720 → 640×640: scale 0.5, 640×360, top round(140 − 0.1) = 140.
  const q = planResize(1280, 720, { width: 640, height: 640, resize: 'letterbox', cropFraction: 1 });
  assert.deepEqual([q.resizeWidth, q.resizeHeight, q.padLeft, q.padTop], [640, 360, 0, 140]);
  // Portrait: 480×640 → 320×320: scale 0.5, 240×320, left 40.
  const r = planResize(480, 640, { width: 320, height: 320, resize: 'letterbox', cropFraction: 1 });
  assert.deepEqual([r.resizeWidth, r.resizeHeight, r.padLeft, r.padTop], [240, 320, 40, 0]);
});

test('center-crop plan follows torchvision Resize + CenterCrop (timm crop_pct)', () => {
  // timm crop_pct 0.875 at 224: shorter side → floor(224/0.875) = 256, longer floor(640·256/480) = 341,
  // crop left round((341 − 224)/2 = 58.5) = 58 (Python rounds half to even), top (256 − 224)/2 = 16.
  const p = planResize(640, 480, { width: 224, height: 224, resize: 'center-crop', cropFraction: 0.875 });
  assert.deepEqual([p.resizeWidth, p.resizeHeight, p.cropLeft, p.cropTop], [341, 256, 58, 16]);
  assert.deepEqual(p.transform, { scaleX: 341 / 640, scaleY: 256 / 480, offsetX: -58, offsetY: -16 });
});

test('letterbox places the image centred and pads with 114', async () => {
  // 4×2 RGB image into a 4×4 input: r = 1, no resize, rows 1–2 image, rows 0 and 3 padding.
  const px: number[] = [];
  for (let i = 0; i < 8; i++) px.push(10 * i, 10 * i + 1, 10 * i + 2);
  const png = await pngFromPixels(px, 4, 2, 3);
  const input = spec({ resize: 'letterbox' });
  const { tensor, plan } = await preprocessImage(png, input);
  assert.deepEqual(plan.letterbox, { scale: 1, padX: 0, padY: 1 });
  assert.deepEqual(tensor.dims, [1, 3, 4, 4]);
  const R = [...tensor.data.subarray(0, 16)];
  assert.deepEqual(R, [114, 114, 114, 114, 0, 10, 20, 30, 40, 50, 60, 70, 114, 114, 114, 114]);
  const B = [...tensor.data.subarray(32, 48)];
  assert.deepEqual(B, [114, 114, 114, 114, 2, 12, 22, 32, 42, 52, 62, 72, 114, 114, 114, 114]);
});

test('letterbox with a downscale: a solid image lands in the middle rows', async () => {
  const png = await solidPng(8, 4, [200, 100, 50]);
  const { tensor } = await preprocessImage(png, spec({ resize: 'letterbox', padValue: 0 }));
  const G = [...tensor.data.subarray(16, 32)];
  assert.deepEqual(G, [0, 0, 0, 0, 100, 100, 100, 100, 100, 100, 100, 100, 0, 0, 0, 0]);
});

test('bgr swaps channels; nchw vs nhwc; mean/std per channel', async () => {
  const png = await pngFromPixels([10, 20, 30, 40, 50, 60], 2, 1, 3);
  const base = { width: 2, height: 1 };
  const nchw = await preprocessImage(png, spec({ ...base }));
  assert.deepEqual([...nchw.tensor.data], [10, 40, 20, 50, 30, 60]);
  const nhwc = await preprocessImage(png, spec({ ...base, layout: 'nhwc' }));
  assert.deepEqual(nhwc.tensor.dims, [1, 1, 2, 3]);
  assert.deepEqual([...nhwc.tensor.data], [10, 20, 30, 40, 50, 60]);
  const bgr = await preprocessImage(png, spec({ ...base, color: 'bgr' }));
  assert.deepEqual([...bgr.tensor.data], [30, 60, 20, 50, 10, 40]);

  // ImageNet normalisation: (p/255 − mean[c]) / std[c], channel by channel.
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const norm = await preprocessImage(png, spec({ ...base, scale: 1 / 255, mean, std }));
  const want = [10, 40, 20, 50, 30, 60].map((p, i) => f32((p / 255 - mean[Math.floor(i / 2)]) / std[Math.floor(i / 2)]));
  assert.deepEqual([...norm.tensor.data], want);
  assert.equal(norm.tensor.data[0], f32((10 / 255 - 0.485) / 0.229)); // −1.94654…
});

test('gray: RGB sources become BT.601 luma, gray sources pass through and replicate to RGB', async () => {
  const rgb = await pngFromPixels([10, 20, 30, 255, 255, 255], 2, 1, 3);
  const g = await preprocessImage(rgb, spec({ width: 2, height: 1, color: 'gray' }));
  // round(0.299·10 + 0.587·20 + 0.114·30 = 18.15) = 18
  assert.deepEqual(g.tensor.dims, [1, 1, 1, 2]);
  assert.deepEqual([...g.tensor.data], [18, 255]);

  const gray = await pngFromPixels([7, 200], 2, 1, 1);
  assert.equal((await preprocessImage(gray, spec({ width: 2, height: 1, color: 'gray' }))).source.channels, 1);
  const asRgb = await preprocessImage(gray, spec({ width: 2, height: 1 }));
  assert.deepEqual([...asRgb.tensor.data], [7, 200, 7, 200, 7, 200]);
});

test('float16 and uint8 tensors', async () => {
  const png = await pngFromPixels([0, 114, 255], 1, 1, 3);
  const half = await preprocessImage(png, spec({ width: 1, height: 1, dtype: 'float16', scale: 1 / 255 }));
  assert.ok(half.tensor.data instanceof Uint16Array);
  // 0 → 0x0000, 114/255 → 0x3727 (see float16 tests), 1 → 0x3c00
  assert.deepEqual([...half.tensor.data], [0x0000, 0x3727, 0x3c00]);
  const u8 = await preprocessImage(png, spec({ width: 1, height: 1, dtype: 'uint8' }));
  assert.ok(u8.tensor.data instanceof Uint8Array);
  assert.deepEqual([...u8.tensor.data], [0, 114, 255]);
});

test('center-crop takes the centre columns', async () => {
  // 4×2 into 2×2 (cropFraction 1): height already fits, no resize, crop left (4 − 2)/2 = 1.
  const png = await pngFromPixels([1, 2, 3, 4, 5, 6, 7, 8], 4, 2, 1);
  const { tensor, plan } = await preprocessImage(png, spec({ width: 2, height: 2, color: 'gray', resize: 'center-crop' }));
  assert.equal(plan.cropLeft, 1);
  assert.deepEqual([...tensor.data], [2, 3, 6, 7]);
});

test('pixelsToTensor is pure: padding is normalised like pixels', () => {
  const input = spec({ width: 2, height: 1, color: 'gray', scale: 0.5, mean: [10], std: [2], padValue: 100 });
  const t = pixelsToTensor(
    { data: new Uint8Array([40]), width: 1, height: 1, channels: 1 },
    { width: 2, height: 1, cropLeft: 0, cropTop: 0, padLeft: 1, padTop: 0 },
    input,
  );
  // pad: (100·0.5 − 10)/2 = 20; pixel: (40·0.5 − 10)/2 = 5
  assert.deepEqual([...t.data], [20, 5]);
});

test('pixelsToTensor writes every value of a reused buffer, and only reuses one that fits', () => {
  const image = { data: new Uint8Array([10, 20, 30, 40, 50, 60]), width: 2, height: 1, channels: 3 as const };
  const plan = { width: 3, height: 2, cropLeft: 0, cropTop: 0, padLeft: 1, padTop: 1 };
  for (const layout of ['nchw', 'nhwc'] as const) {
    for (const dtype of ['float32', 'float16', 'uint8'] as const) {
      const input = spec({ layout, dtype, width: 3, height: 2, padValue: 7, ...(dtype === 'uint8' ? {} : { scale: 1 / 255 }) });
      const fresh = pixelsToTensor(image, plan, input);
      const dirty = fresh.data.slice().fill(dtype === 'uint8' ? 255 : 0x7e00); // garbage (NaN as float16 bits)
      if (dirty instanceof Float32Array) dirty.fill(Number.NaN);
      const reused = pixelsToTensor(image, plan, input, dirty);
      assert.equal(reused.data, dirty, `${layout} ${dtype}: the buffer was reused`);
      assert.deepEqual([...reused.data], [...fresh.data], `${layout} ${dtype}`);
    }
  }
  const input = spec({ width: 3, height: 2 });
  const wrongSize = new Float32Array(5);
  assert.notEqual(pixelsToTensor(image, plan, input, wrongSize).data, wrongSize);
  const wrongType = new Uint8Array(18);
  assert.notEqual(pixelsToTensor(image, plan, input, wrongType).data, wrongType);
});
