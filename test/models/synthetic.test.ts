import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { createRng } from '../../models/prng.js';
import { generatePartImage, SYNTHETIC_DEFECTS } from '../../models/synthetic.js';

test('seeded PRNG is deterministic', () => {
  const a = createRng(42);
  const b = createRng(42);
  const xs = Array.from({ length: 5 }, () => a.next());
  assert.deepEqual(xs, Array.from({ length: 5 }, () => b.next()));
  assert.notDeepEqual(xs, Array.from({ length: 5 }, createRng(43).next));
  assert.ok(xs.every((x) => x >= 0 && x < 1));
});

test('part images are deterministic per seed and differ between seeds', async () => {
  const a = await generatePartImage({ seed: 3 });
  assert.ok(a.equals(await generatePartImage({ seed: 3 })));
  assert.ok(!a.equals(await generatePartImage({ seed: 4 })));
  const meta = await sharp(a).metadata();
  assert.deepEqual([meta.format, meta.width, meta.height, meta.channels], ['jpeg', 256, 256, 3]);
  const png = await generatePartImage({ seed: 3, format: 'png', width: 320, height: 240 });
  const pm = await sharp(png).metadata();
  assert.deepEqual([pm.format, pm.width, pm.height], ['png', 320, 240]);
});

test('a defect changes only its own region of the same part', async () => {
  const raw = async (defect: (typeof SYNTHETIC_DEFECTS)[number] | null) =>
    (await sharp(await generatePartImage({ seed: 11, defect, format: 'png' })).greyscale().raw().toBuffer());
  const good = await raw(null);
  for (const defect of SYNTHETIC_DEFECTS) {
    const bad = await raw(defect);
    let changed = 0;
    let maxDiff = 0;
    for (let i = 0; i < good.length; i++) {
      const d = Math.abs(good[i] - bad[i]);
      if (d > 0) changed++;
      maxDiff = Math.max(maxDiff, d);
    }
    // Visible (a strong local change) but local (a small part of the frame).
    assert.ok(maxDiff >= 30, `${defect}: max difference ${maxDiff}`);
    assert.ok(changed > 10 && changed < good.length * 0.05, `${defect}: ${changed} pixels changed`);
  }
});
