/** The command-line contract: --help, exit codes, one-line errors, `osprey infer` output. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { runOsprey } from '../helpers/osprey-process.js';


const osprey = runOsprey;

test('every command answers --help with exit 0', async () => {
  for (const args of [['--help'], ['demo', '--help'], ['fleet', 'start', '--help'], ['edge', 'start', '--help'], ['infer', '--help'], ['model', '--help'], ['sample', '--help'], ['sample', 'image', '--help']]) {
    const r = await osprey(...args);
    assert.equal(r.code, 0, args.join(' '));
    assert.match(r.stdout, /Usage: osprey/);
  }
});

test('bad usage is one line on stderr and a non-zero exit', async () => {
  for (const [args, pattern] of [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['infer'], /infer needs --model DIR/],
    [['infer', '--model', 'pkg', '--threshold', '2', 'part.jpg'], /--threshold must be a number from 0 to 1, got "2"/],
    [['infer', '--model', 'pkg', '--threshold=-0.1', 'part.jpg'], /--threshold must be a number from 0 to 1, got "-0.1"/],
    [['demo', '--edges', 'many'], /--edges must be an integer/],
    [['edge', 'start'], /edge start needs --config FILE/],
    [['sample', 'image'], /sample image needs --out FILE/],
    [['sample', 'image', '--out', 'x.jpg', '--defect', 'crack'], /--defect must be one of scratch, spot, dent, missing, got "crack"/],
    [['fleet', 'start', '--bogus'], /Unknown option '--bogus'/],
  ] as const) {
    const r = await osprey(...args);
    assert.notEqual(r.code, 0, args.join(' '));
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
  }
});

test('a bad edge config stops start-up with a message naming the field', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'edge.json');
  await writeFile(file, JSON.stringify({ edgeId: 'e1', line: 'l', dataDir: dir, model: { dir }, http: { port: 70000 } }));
  const r = await osprey('edge', 'start', '--config', file);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /http\.port/);
  assert.equal(r.stderr.trim().split('\n').length, 1);

  await writeFile(file, '{ not json');
  const r2 = await osprey('edge', 'start', '--config', file);
  assert.equal(r2.code, 1);
  assert.match(r2.stderr, /edge\.json/);
});

test('osprey infer prints one JSON line per image and flags bad images', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const model = await ensureDemoModel(join(dir, 'models'));
  const good = join(dir, 'good.jpg');
  const bad = join(dir, 'scratch.png');
  const text = join(dir, 'notes.txt');
  await writeFile(good, await generatePartImage({ seed: 1, defect: null, format: 'jpeg' }));
  await writeFile(bad, await generatePartImage({ seed: 2, defect: 'scratch', format: 'png' }));
  await writeFile(text, 'this is not an image');

  const r = await osprey('infer', '--model', model, good, bad);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines.map((l) => [l.file, l.verdict]), [[good, 'ok'], [bad, 'defect']]);
  for (const l of lines) {
    assert.equal(typeof l.score, 'number');
    assert.equal(typeof l.latencyMs, 'number');
  }

  const r2 = await osprey('infer', '--model', model, text, good);
  assert.equal(r2.code, 1);
  const [first, second] = r2.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(first!.error, 'OSP_ERR_IMAGE_DECODE');
  assert.equal(second!.verdict, 'ok');
});
