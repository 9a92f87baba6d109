/**
 * Issue 14, "Models are code", at the fleet: uploads need a publisher signature (by default) by
 * a key in registry.publisherKeys over this very package, and a model that does not run is
 * refused at upload. Real fleet manager, real HTTP, real onnxruntime in the check's child process.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createPrivateKey, sign } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from './helpers.js';
import { generateSigningKeys, verifyArtifact } from '../../models/artifact-signature.js';
import { packArchive } from '../../models/package-archive.js';
import { sha256Hex } from '../../models/package-reader.js';
import { SIGNATURE_FILE } from '../../models/package-signature.js';
import { manifestBytes, packageFiles, startFleet, uploadTar } from './control-helpers.js';
import { signedFiles, tinyAnomalyModel } from '../helpers/publisher.js';

/** A package whose anomaly score comes from a plug-in (code the edge would import). */
function pluginPackage(name: string, version: string): Map<string, Uint8Array> {
  const model = tinyAnomalyModel();
  const plugin = Buffer.from('export default function (outputs) { return { score: outputs.score.data[0] }; }\n');
  const manifest = JSON.parse(manifestBytes(name, version, sha256Hex(model), model.length).toString()) as Record<string, unknown>;
  manifest.outputs = { anomaly: { format: 'plugin' } };
  manifest.postprocess = { module: 'score.mjs', sha256: sha256Hex(plugin) };
  return new Map<string, Uint8Array>([
    ['manifest.json', Buffer.from(JSON.stringify(manifest))],
    ['model.onnx', model],
    ['score.mjs', plugin],
  ]);
}

test('registry: an unsigned package with a plug-in is refused (422), nothing is registered', async (t) => {
  const f = await startFleet(t);
  const res = await uploadTar(f.httpUrl, 'm', packArchive(pluginPackage('m', '1')), f.admin, { signed: false });
  assert.equal(res.status, 422, JSON.stringify(res.body));
  assert.equal(res.body.error, 'OSP_ERR_MODEL_SIGNATURE');
  assert.match(String(res.body.message), /m@1 \(sha256 [0-9a-f]{64}\) is not signed: upload it with the signature\.json of `osprey model sign`/);
  assert.equal((await f.api('GET', '/api/models/m/versions')).status, 404);

  // The same package signed by the trusted publisher is accepted; its statement names the plug-in.
  const files = pluginPackage('m', '1');
  const ok = await uploadTar(f.httpUrl, 'm', packArchive(files), f.admin);
  assert.equal(ok.status, 201, JSON.stringify(ok.body));
  assert.equal(ok.body.pluginSha256, sha256Hex(files.get('score.mjs')!));
});

test('registry: a signature by a key not in registry.publisherKeys, or over another package, is refused', async (t) => {
  const f = await startFleet(t);
  const stranger = { id: 'stranger', privateKeyPem: generateSigningKeys().privateKeyPem };
  const byStranger = await uploadTar(f.httpUrl, 'm', packArchive(signedFiles(packageFiles('m', '1'), stranger)), f.admin, { signed: false });
  assert.equal(byStranger.status, 422);
  assert.match(String(byStranger.body.message), /signed by key "stranger", which is not in registry\.publisherKeys \(trusted: test-publisher\)/);

  // A valid signature.json of version 1 moved onto version 2.
  const v1 = signedFiles(packageFiles('m', '1'));
  const v2 = new Map([...packageFiles('m', '2'), [SIGNATURE_FILE, v1.get(SIGNATURE_FILE)!]]);
  const moved = await uploadTar(f.httpUrl, 'm', packArchive(v2), f.admin, { signed: false });
  assert.equal(moved.status, 422);
  assert.match(String(moved.body.message), /signature\.json version is 1 but the uploaded package's is 2: it signs another package/);
});

test('registry: a model.onnx of random bytes with a matching sha256 is refused at upload: the model is run first', async (t) => {
  const f = await startFleet(t);
  const random = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919 + 13) % 256));
  const res = await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1', random)), f.admin);
  assert.equal(res.status, 422, JSON.stringify(res.body));
  assert.equal(res.body.error, 'OSP_ERR_MODEL_LOAD');
  assert.match(String(res.body.message), /^model\.onnx does not run: onnxruntime cannot load model\.onnx/);

  // A real model whose input is not the manifest's (a 16×16 model, an 8×8 manifest).
  const wrong = await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1', tinyAnomalyModel({ size: 16 }))), f.admin);
  assert.equal(wrong.status, 422);
  assert.equal(wrong.body.error, 'OSP_ERR_MODEL_INPUT');
  assert.equal((await f.api('GET', '/api/models/m/versions')).status, 404);
  assert.equal((await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1')), f.admin)).status, 201);
});

test('registry: with requirePublisherSignature off an unsigned upload is signed by the fleet key (id "fleet")', async (t) => {
  const f = await startFleet(t, { registry: { requirePublisherSignature: false } });
  const archive = packArchive(packageFiles('m', '1'));
  const res = await uploadTar(f.httpUrl, 'm', archive, f.admin, { signed: false });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  assert.equal(res.body.keyId, 'fleet');
  const pem = (await f.api('GET', '/api/fleet/public-key')).body as string;
  verifyArtifact({ name: 'm', version: '1', sha256: sha256Hex(archive), size: archive.length, pluginSha256: null }, String(res.body.signature), pem);
});

test('registry: versions the fleet key signed before v2 are re-signed at start; a row edited in the database is not', async (t) => {
  const dataDir = await tempDir(t);
  const first = await startFleet(t, { dataDir, registry: { requirePublisherSignature: false } });
  const a = packArchive(packageFiles('m', '1'));
  const b = packArchive(packageFiles('m', '2'));
  assert.equal((await uploadTar(first.httpUrl, 'm', a, first.admin, { signed: false })).status, 201);
  assert.equal((await uploadTar(first.httpUrl, 'm', b, first.admin, { signed: false })).status, 201);
  await first.fm.close();
  // As an older fleet left them: v1 signed in the v1 statement by the fleet key; v2 a forged row.
  const key = createPrivateKey(await readFile(join(dataDir, 'keys', 'fleet-signing.key'), 'utf8'));
  const v1 = sign(null, Buffer.from(`osprey-artifact/v1\nm\n1\n${sha256Hex(a)}`), key).toString('base64');
  const db = new Database(join(dataDir, 'fleet.db'));
  db.prepare('UPDATE model_versions SET signature = ? WHERE sha256 = ?').run(v1, sha256Hex(a));
  db.prepare('UPDATE model_versions SET signature = ? WHERE sha256 = ?').run('Zm9yZ2Vk', sha256Hex(b));
  db.close();

  const second = await startFleet(t, { dataDir, registry: { requirePublisherSignature: false } });
  const pem = (await second.api('GET', '/api/fleet/public-key')).body as string;
  const one = (await second.api('GET', '/api/models/m/versions/1')).body;
  verifyArtifact({ name: 'm', version: '1', sha256: sha256Hex(a), size: a.length, pluginSha256: null }, String(one.signature), pem);
  assert.equal((await second.api('GET', '/api/models/m/versions/2')).body.signature, 'Zm9yZ2Vk');
});
