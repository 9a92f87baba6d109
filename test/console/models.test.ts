/**
 * The Models screen in a real browser (Debian's Chromium) on a real fleet: a release manager
 * trains a model from an uploaded archive of real MTD images and watches the job reach
 * `succeeded` live (the job's SSE stream), opens the new version's model card (validation
 * figures, the false-reject / catch-rate curve drawn by uPlot), packs a bare ONNX file through the
 * wizard (proposal, smoke test on an image, registration under registry.allowFleetPacked); a
 * viewer sees the registry and no upload or training control.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generatePartImage } from '../../models/fixtures.js';
import { tinyAnomalyModel } from '../../models/tiny-model.js';
import { packArchive } from '../../models/package-archive.js';
import { packageFiles, startFleet } from '../fleet-manager/control-helpers.js';
import { signedArchive } from '../helpers/publisher.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';
import type { Page } from 'playwright-core';

const run = promisify(execFile);
const data = ospreyDataDir();

async function pick(dir: string, every: number, count: number): Promise<string[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
  return names.filter((_, i) => i % every === 0).slice(0, count).map((f) => join(dir, f));
}

/** A tar of real MTD images: 10 good, and 2 defects of each of two classes (validation figures and the curve). */
async function tileArchive(dir: string): Promise<string> {
  const stage = join(dir, 'stage');
  await mkdir(join(stage, 'good'), { recursive: true });
  for (const f of await pick(join(data, 'magnetic-tile', 'train', 'good'), 7, 10)) await symlink(f, join(stage, 'good', f.split('/').pop()!));
  for (const cls of ['blowhole', 'crack']) {
    await mkdir(join(stage, 'defects', cls), { recursive: true });
    for (const f of await pick(join(data, 'magnetic-tile', 'dev', cls), 5, 2)) await symlink(f, join(stage, 'defects', cls, f.split('/').pop()!));
  }
  const file = join(dir, 'tiles.tar');
  await run('tar', ['-chf', file, '-C', stage, '.']);
  return file;
}

/** A tar of real NEU images, a folder per label (6 each of 3 labels: some are held out for the confusion matrix). */
async function neuArchive(dir: string): Promise<string> {
  const stage = join(dir, 'neu');
  for (const cls of ['crazing', 'patches', 'scratches']) {
    await mkdir(join(stage, cls), { recursive: true });
    for (const f of await pick(join(data, 'neu-det', cls), 9, 6)) await symlink(f, join(stage, cls, f.split('/').pop()!));
  }
  const file = join(dir, 'neu.tar');
  await run('tar', ['-chf', file, '-C', stage, '.']);
  return file;
}

async function signIn(page: Page, url: string, user: string): Promise<void> {
  await page.goto(`${url}/#/models`);
  await page.getByLabel('Username').fill(user);
  await page.getByLabel('Password').fill(`password of ${user}`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('who').waitFor();
}

test('a release manager trains from an archive and watches it live, reads the card with its curve, packs an ONNX file; a viewer has no controls', { skip: chromiumSkip() || dataSkip('magnetic-tile') || dataSkip('neu-det'), timeout: 240_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t, { training: { defaultBackbone: join(data, 'models', 'squeezenet-fp16') }, registry: { allowFleetPacked: true } as never });
  await fleet.creds.token('release-manager');
  await fleet.creds.token('viewer');
  const files = await tempDir(t);
  const archive = await tileArchive(files);
  const onnx = join(files, 'tiny-anomaly.onnx');
  await writeFile(onnx, tinyAnomalyModel());
  const unsignedTar = join(files, 'pkg.tar');
  await writeFile(unsignedTar, packArchive(packageFiles('pkg', '1.0.0')));
  const signedTar = join(files, 'pkg-signed.tar');
  await writeFile(signedTar, signedArchive(packArchive(packageFiles('pkg', '1.0.0'))));
  const sample = join(files, 'sample.png');
  await writeFile(sample, await generatePartImage({ seed: 4, defect: null, format: 'png' }));

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await signIn(page, fleet.httpUrl, 'test-release-manager');
  await page.locator('section.models-page').waitFor();
  await page.getByText('No model versions yet.').waitFor();

  // Upload a package: unsigned, the refusal is shown as the fleet says it; signed, registered.
  await page.locator('input[name="model"]').fill('pkg');
  await page.locator('input[name="package"]').setInputFiles(unsignedTar);
  await page.getByRole('button', { name: 'Upload' }).click();
  const refusal = page.locator('form.upload [role="alert"]');
  await refusal.waitFor();
  assert.match(await refusal.innerText(), /^pkg@1\.0\.0 \(sha256 [0-9a-f]{64}\) is not signed: upload it with the signature\.json of `osprey model sign`/);
  await page.locator('input[name="package"]').setInputFiles(signedTar);
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.getByText('Registered pkg@1.0.0 (publisher test-publisher).').waitFor();
  await page.locator('tr[data-version="pkg@1.0.0"] td.sig.publisher').waitFor();

  // Training from an uploaded archive; the job is watched over its event stream.
  await page.locator('input[name="train-model"]').fill('tiles');
  await page.locator('input[name="archive"]').setInputFiles(archive);
  await page.getByRole('button', { name: 'Start training' }).click();
  const state = page.getByTestId('job-state');
  await state.waitFor();
  const seen = new Set<string>([(await state.textContent()) ?? '']);
  // Record the states the page shows as they change (no reload, no polling by the page).
  await page.exposeFunction('__jobState', (s: string) => seen.add(s));
  await page.evaluate(() => {
    const w = globalThis as unknown as { __jobState(s: string): void; document: { querySelector(s: string): { textContent: string } | null }; MutationObserver: new (cb: () => void) => { observe(n: unknown, o: unknown): void } };
    const el = w.document.querySelector('[data-testid="job-state"]');
    new w.MutationObserver(() => w.__jobState(w.document.querySelector('[data-testid="job-state"]')?.textContent ?? '')).observe(el, { childList: true, characterData: true, subtree: true });
  });
  await page.locator('.job[data-state="succeeded"]').waitFor({ timeout: 180_000 });
  assert.ok(seen.has('running') || seen.has('queued'), `states seen: ${[...seen].join(', ')}`);
  assert.ok(seen.has('succeeded'), `states seen: ${[...seen].join(', ')}`);
  await page.getByRole('button', { name: 'Show log' }).click();
  await page.locator('pre.log').waitFor();
  // The new version is in the registry, signed with the fleet key, trained here.
  const trained = page.locator('tr[data-version="tiles@1.0.0"]');
  await trained.waitFor();
  assert.match(await trained.innerText(), /test-release-manager[\s\S]*training-job:tj-[0-9a-f]+[\s\S]*fleet key \(trained here\)/);

  // Its model card: data counts, AUROC, the curve with the operating point.
  await page.getByRole('link', { name: /Open tiles@1\.0\.0/ }).click();
  await page.getByTestId('model-card').waitFor();
  await page.locator('[data-testid="rate-curve"] canvas').waitFor();
  const validation = await page.getByTestId('validation').innerText();
  assert.match(validation, /AUROC\s+\d+(\.\d)? %/);
  assert.match(validation, /10 good, 4 defect/);
  assert.match(await page.getByTestId('model-card').innerText(), /10 good images/);
  assert.match(await page.locator('[data-testid="rate-curve"]').innerText(), /false rejects %[\s\S]*caught %/);
  await page.screenshot({ path: join(shots, 'console-model-card.png'), fullPage: true });

  // The pack wizard: propose, fill in what the model cannot say, smoke-test, register.
  await page.getByRole('link', { name: 'Models' }).first().click();
  await page.locator('input[name="onnx"]').setInputFiles(onnx);
  await page.locator('.proposal').waitFor();
  assert.match(await page.locator('.proposal').innerText(), /cannot tell the task of this model/);
  assert.match(await page.locator('table.tensors').innerText(), /input\s+image\s+float32\s+\[1, 1, 8, 8\][\s\S]*output\s+score\s+float32\s+\[1\]/);
  await page.locator('select[name="task"]').selectOption('anomaly');
  await page.locator('select[name="color"]').selectOption('gray');
  await page.locator('input[name="name"]').fill('tiny');
  await page.locator('input[name="normMin"]').fill('0');
  await page.locator('input[name="normMax"]').fill('2');
  await page.locator('input[name="normThreshold"]').fill('1');
  await page.locator('input[name="sample"]').setInputFiles(sample);
  await page.getByRole('button', { name: 'Smoke test' }).click();
  const smoke = page.getByTestId('smoke-result');
  await smoke.waitFor();
  assert.match(await smoke.innerText(), /Verdict\s+(ok|defect)[\s\S]*8×8 gray/);
  await page.screenshot({ path: join(shots, 'console-pack-wizard.png'), fullPage: true });
  await page.getByRole('button', { name: 'Register' }).click();
  await page.getByText('Registered tiny@1.0.0 (fleet key (packed here)).').waitFor();
  await page.locator('tr[data-version="tiny@1.0.0"]').waitFor();
  await page.screenshot({ path: join(shots, 'console-models.png'), fullPage: true });

  // A classifier from an archive: its card shows the accuracy and the confusion matrix as a grid.
  await page.locator('select[name="kind"]').selectOption('classify');
  await page.locator('input[name="train-model"]').fill('neu');
  await page.locator('input[name="archive"]').setInputFiles(await neuArchive(files));
  await page.getByRole('button', { name: 'Start training' }).click();
  await page.locator('.job[data-state="succeeded"]').waitFor({ timeout: 180_000 });
  await page.getByRole('link', { name: /Open neu@1\.0\.0/ }).click();
  const grid = page.getByTestId('confusion');
  await grid.waitFor();
  assert.match(await page.getByTestId('validation').innerText(), /Accuracy\s+\d+(\.\d)? %/);
  assert.equal(await grid.locator('tbody tr').count(), 3);
  assert.equal(await grid.locator('tbody td').count(), 9);
  // On a tablet the card still reads.
  await page.setViewportSize({ width: 800, height: 1280 });
  await page.screenshot({ path: join(shots, 'console-model-card-classify-tablet.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });

  assert.deepEqual(await violations(), [], 'no CSP violation');
  // The only error: Chromium's log line for the refused (422) unsigned upload.
  assert.deepEqual(errors.filter((e) => !/status of 422 \(Unprocessable Entity\) \(http:\/\/127\.0\.0\.1:\d+\/api\/models\/pkg\/versions\)/.test(e)), [], 'no other console error');
  assert.equal(errors.length, 1);

  // A viewer: the registry and the cards, no upload, pack or training control.
  const viewer = await watchedPage(browser);
  await signIn(viewer.page, fleet.httpUrl, 'test-viewer');
  await viewer.page.locator('tr[data-version="tiles@1.0.0"]').waitFor();
  assert.deepEqual(await viewer.page.getByRole('button').allInnerTexts(), ['Sign out']);
  assert.equal(await viewer.page.locator('input[type="file"]').count(), 0);
  // And the API refuses what the hidden controls would do.
  // (with the session's own CSRF token, so the refusal is the role's).
  const refused = await viewer.page.evaluate(async () => {
    const { session } = (await (await fetch('/api/auth/session')).json()) as { session: { csrfToken: string } };
    const propose = await fetch('/api/models/propose', { method: 'POST', body: new Uint8Array([1]), headers: { 'content-type': 'application/octet-stream', 'x-osprey-csrf': session.csrfToken } });
    const train = await fetch('/api/training-jobs', { method: 'POST', body: '{}', headers: { 'content-type': 'application/json', 'x-osprey-csrf': session.csrfToken } });
    return [propose.status, ((await propose.json()) as { message: string }).message, train.status, ((await train.json()) as { message: string }).message];
  });
  assert.deepEqual([refused[0], refused[2]], [403, 403]);
  assert.match(String(refused[1]), /registry:write/);
  assert.match(String(refused[3]), /training:write/);
});
