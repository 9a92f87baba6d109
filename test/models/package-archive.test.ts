import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { extractArchive, packArchive, unpackArchive } from '../../models/package-archive.js';
import { generateSigningKeys, signArtifact, verifyArtifact } from '../../models/artifact-signature.js';
import { isOspreyError } from '../../protocol/errors.js';

const files = { 'manifest.json': Buffer.from('{"a":1}'), 'model.onnx': Buffer.alloc(1300, 7) };

test('archives round-trip and are deterministic', async (t) => {
  const a = packArchive(files);
  assert.equal(a.length % 512, 0);
  assert.deepEqual(packArchive({ 'model.onnx': files['model.onnx'], 'manifest.json': files['manifest.json'] }), a);
  const back = unpackArchive(a);
  assert.deepEqual([...back.keys()], ['manifest.json', 'model.onnx']);
  assert.deepEqual(back.get('model.onnx'), files['model.onnx']);
  const dir = await mkdtemp(join(tmpdir(), 'osprey-archive-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await extractArchive(a, join(dir, 'pkg'));
  assert.deepEqual((await readdir(join(dir, 'pkg'))).sort(), ['manifest.json', 'model.onnx']);
  assert.deepEqual(await readFile(join(dir, 'pkg', 'manifest.json')), files['manifest.json']);
});

test('corrupt, truncated and hostile archives are refused with a reason', () => {
  const a = packArchive(files);
  const flipped = Buffer.from(a);
  flipped[10] = flipped[10]! ^ 1; // inside the first header
  assert.throws(() => unpackArchive(flipped), /header checksum mismatch/);
  assert.throws(() => unpackArchive(a.subarray(0, 1024)), /truncated/);
  assert.throws(() => packArchive({ '../evil': Buffer.alloc(1) }), /not allowed/);
  const evil = Buffer.from(packArchive({ 'x.bin': Buffer.alloc(1) }));
  evil.write('../x.bin\0', 0, 'utf8');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : evil[i]!;
  evil.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'ascii');
  assert.throws(() => unpackArchive(evil), /entry name "\.\.\/x\.bin" is not allowed/);
});

test('signatures: valid, flipped byte, other key', () => {
  const fleet = generateSigningKeys();
  const other = generateSigningKeys();
  const archive = packArchive(files);
  const sha256 = createHash('sha256').update(archive).digest('hex');
  const id = { name: 'm', version: '1', sha256, size: archive.length, pluginSha256: null };
  const sig = signArtifact(id, fleet.privateKeyPem);
  verifyArtifact(id, sig, fleet.publicKeyPem);

  const tampered = Buffer.from(archive);
  tampered[700] = tampered[700]! ^ 0xff;
  const tamperedSha = createHash('sha256').update(tampered).digest('hex');
  assert.throws(() => verifyArtifact({ ...id, sha256: tamperedSha }, sig, fleet.publicKeyPem), (e) => isOspreyError(e, 'OSP_ERR_MODEL_SIGNATURE'));
  assert.throws(() => verifyArtifact(id, signArtifact(id, other.privateKeyPem), fleet.publicKeyPem), /not signed by key "fleet"/);
  assert.throws(() => verifyArtifact({ ...id, version: '2' }, sig, fleet.publicKeyPem), /not signed/);
  // The statement covers the size and the plug-in too: neither can be changed under a valid signature.
  assert.throws(() => verifyArtifact({ ...id, size: id.size + 1 }, sig, fleet.publicKeyPem), /not signed/);
  assert.throws(() => verifyArtifact({ ...id, pluginSha256: sha256 }, sig, fleet.publicKeyPem), /not signed/);
});
