/**
 * `osprey model keygen|sign|validate` as a release manager runs them (child processes): a key
 * pair whose private half is 0600 and never printed, a detached signature.json over the
 * package, checked by validate; and validate runs the model, so random bytes with a matching
 * sha256 are refused.
 */
import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { writeModelPackage, type ManifestDraft } from '../../models/authoring.js';
import { archiveDirectory, unpackArchive } from '../../models/package-archive.js';
import { identityOfFiles, readPackageDirectory } from '../../models/package-signature.js';
import { runOsprey } from '../helpers/osprey-process.js';
import { tinyAnomalyModel } from '../helpers/publisher.js';
import { tempDir } from '../models/helpers.js';


const osprey = runOsprey;

const draft = (version: string) =>
  ({
    schemaVersion: 1,
    name: 'seal-check',
    version,
    task: 'anomaly',
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch' },
    outputs: { anomaly: { format: 'osprey', score: 'score' } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  }) as ManifestDraft;

test('model keygen + sign + validate: a detached signature over the package, verified with the public key only', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-sign-');
  const keys = join(dir, 'keys');
  const gen = await osprey('model', 'keygen', '--out', keys, '--id', 'release-2026');
  assert.equal(gen.code, 0, gen.stderr);
  assert.doesNotMatch(gen.stdout, /PRIVATE KEY/);
  assert.equal((await stat(join(keys, 'release-2026.key'))).mode & 0o777, 0o600);
  assert.match(await readFile(join(keys, 'release-2026.pub'), 'utf8'), /^-----BEGIN PUBLIC KEY-----/);
  const again = await osprey('model', 'keygen', '--out', keys, '--id', 'release-2026');
  assert.notEqual(again.code, 0, 'an existing key is not replaced without --force');

  const pkg = join(dir, 'pkg');
  await writeModelPackage(pkg, draft('1.0.0'), tinyAnomalyModel());
  const signed = await osprey('model', 'sign', '--key', join(keys, 'release-2026.key'), '--key-id', 'release-2026', pkg);
  assert.equal(signed.code, 0, signed.stderr);
  assert.doesNotMatch(signed.stdout, /PRIVATE KEY/);
  const sig = JSON.parse(await readFile(join(pkg, 'signature.json'), 'utf8')) as Record<string, unknown>;
  const identity = identityOfFiles(await readPackageDirectory(pkg));
  assert.deepEqual({ ...sig, signature: undefined }, { format: 'osprey-artifact/v2', keyId: 'release-2026', ...identity, signature: undefined });

  const valid = await osprey('model', 'validate', pkg, '--public-key', join(keys, 'release-2026.pub'));
  assert.equal(valid.code, 0, valid.stderr);
  assert.deepEqual(JSON.parse(valid.stdout).signature, { keyId: 'release-2026', verified: true });

  // Another key's public half does not verify it.
  await osprey('model', 'keygen', '--out', keys, '--id', 'other');
  const wrongKey = await osprey('model', 'validate', pkg, '--public-key', join(keys, 'other.pub'));
  assert.notEqual(wrongKey.code, 0);
  assert.match(wrongKey.stderr, /is not signed by key "release-2026".*OSP_ERR_MODEL_SIGNATURE/);

  // The package changed after signing (a threshold in the manifest): the signature no longer states it.
  const manifest = JSON.parse(await readFile(join(pkg, 'manifest.json'), 'utf8')) as { thresholds: { default: number } };
  manifest.thresholds.default = 0.9;
  await writeFile(join(pkg, 'manifest.json'), JSON.stringify(manifest));
  const changed = await osprey('model', 'validate', pkg);
  assert.notEqual(changed.code, 0);
  assert.match(changed.stderr, /signature\.json signs another package \(sign it again after changing it\)/);

  // An archive is signed in place: signature.json is added to it.
  const archive = join(dir, 'pkg.tar');
  await writeModelPackage(join(dir, 'pkg2'), draft('2.0.0'), tinyAnomalyModel({ offset: 0.5 }));
  await writeFile(archive, await archiveDirectory(join(dir, 'pkg2')));
  assert.equal((await osprey('model', 'sign', '--key', join(keys, 'release-2026.key'), '--key-id', 'release-2026', archive)).code, 0);
  assert.deepEqual([...unpackArchive(await readFile(archive)).keys()].sort(), ['manifest.json', 'model.onnx', 'signature.json']);
});

test('model validate runs the model: random bytes with a matching sha256 are refused', async (t) => {
  const dir = await tempDir(t, 'osprey-cli-validate-');
  const random = Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 131 + 7) % 256));
  await writeModelPackage(dir, draft('1.0.0'), random);
  const r = await osprey('model', 'validate', dir);
  assert.notEqual(r.code, 0);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /onnxruntime cannot load model\.onnx.*OSP_ERR_MODEL_LOAD/);
});
