/**
 * The model registry over real HTTP: tar and multipart uploads, validation, immutability,
 * content-addressed downloads with Range, and signatures that verify with the served public key.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stat, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { packArchive, unpackArchive } from '../../models/package-archive.js';
import { sha256Hex } from '../../models/package-reader.js';
import { verifyArtifact } from '../../models/artifact-signature.js';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { pino } from 'pino';
import { packageFiles, startFleet, uploadTar } from './control-helpers.js';
import { tempDir } from './helpers.js';
import { signedFiles, TEST_PUBLISHER_ID, testPublisher, tinyAnomalyModel } from '../helpers/publisher.js';

test('registry: a tar upload becomes a signed, content-addressed version; listings show it', async (t) => {
  const f = await startFleet(t);
  const archive = packArchive(packageFiles('scratch-net', '1.0.0'));
  const sha = sha256Hex(archive);

  const res = await uploadTar(f.httpUrl, 'scratch-net', archive, f.admin);
  assert.equal(res.status, 201);
  assert.equal(res.body.name, 'scratch-net');
  assert.equal(res.body.version, '1.0.0');
  assert.equal(res.body.sha256, sha);
  assert.equal(res.body.size, archive.length);
  assert.equal(res.body.url, `${f.httpUrl}/api/artifacts/${sha}`);
  assert.equal(res.body.task, 'anomaly');

  // Stored under artifacts/ab/abcdef…
  assert.deepEqual(await readFile(join(f.dataDir, 'artifacts', sha.slice(0, 2), sha)), archive);

  // The signature verifies with the served key; the private key is the fleet's own.
  const pem = await f.api('GET', '/api/fleet/public-key');
  assert.equal(pem.status, 200);
  assert.match(pem.headers.get('content-type')!, /^text\/plain/);
  assert.match(pem.body, /^-----BEGIN PUBLIC KEY-----/);
  // Signed by the publisher (the test key the fleet trusts), not by the fleet.
  assert.equal(res.body.keyId, TEST_PUBLISHER_ID);
  verifyArtifact({ name: 'scratch-net', version: '1.0.0', sha256: sha, size: archive.length, pluginSha256: null }, String(res.body.signature), testPublisher.publicKeyPem);
  assert.equal((await stat(join(f.dataDir, 'keys', 'fleet-signing.key'))).mode & 0o777, 0o600);

  const models = await f.api('GET', '/api/models');
  assert.deepEqual(models.body.models.map((m: { name: string; versions: number; latestVersion: string }) => [m.name, m.versions, m.latestVersion]), [
    ['scratch-net', 1, '1.0.0'],
  ]);
  const versions = await f.api('GET', '/api/models/scratch-net/versions');
  assert.equal(versions.status, 200);
  assert.equal(versions.body.versions[0].sha256, sha);
  assert.equal(versions.body.versions[0].manifest.name, 'scratch-net');
  assert.equal((await f.api('GET', '/api/models/scratch-net/versions/1.0.0')).body.sha256, sha);
  assert.equal((await f.api('GET', '/api/models/nope/versions')).status, 404);
  assert.equal((await f.api('GET', '/api/models/scratch-net/versions/9')).body.error, 'OSP_ERR_NOT_FOUND');
});

test('registry: versions are immutable; the same package again is idempotent', async (t) => {
  const f = await startFleet(t);
  const first = packArchive(packageFiles('m', '1'));
  assert.equal((await uploadTar(f.httpUrl, 'm', first, f.admin)).status, 201);
  const again = await uploadTar(f.httpUrl, 'm', first, f.admin);
  assert.equal(again.status, 200);
  assert.equal(again.body.sha256, sha256Hex(first));

  const other = await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1', tinyAnomalyModel({ offset: 0.25 }))), f.admin);
  assert.equal(other.status, 409);
  assert.equal(other.body.error, 'OSP_ERR_CONFLICT');
  assert.match(String(other.body.message), /immutable/);
  assert.equal((await f.api('GET', '/api/models/m/versions')).body.versions.length, 1);
});

test('registry: a multipart upload of the package files is the same artifact as its tar', async (t) => {
  const f = await startFleet(t);
  const files = packageFiles('seal-check', '2.1');
  const form = new FormData();
  for (const [name, bytes] of signedFiles(files)) form.append('file', new Blob([bytes]), name);
  const res = await fetch(`${f.httpUrl}/api/models/seal-check/versions`, { method: 'POST', body: form, headers: f.admin });
  const body = (await res.json()) as { sha256: string };
  assert.equal(res.status, 201);
  assert.equal(body.sha256, sha256Hex(packArchive(files)));
  // …so the tar of the same files is an idempotent re-upload.
  assert.equal((await uploadTar(f.httpUrl, 'seal-check', packArchive(files), f.admin)).status, 200);

  const text = new FormData();
  text.append('manifest', '{}');
  const bad = await fetch(`${f.httpUrl}/api/models/seal-check/versions`, { method: 'POST', body: text, headers: f.admin });
  assert.equal(bad.status, 400);
  assert.match(((await bad.json()) as { message: string }).message, /not a file/);
});

test('registry: invalid packages are refused with a reason', async (t) => {
  const f = await startFleet(t);
  const good = packageFiles('m', '1');
  const cases: [string, Uint8Array, number, RegExp][] = [
    ['wrong name', packArchive(packageFiles('other', '1')), 422, /names model "other", not "m"/],
    ['bad checksum', packArchive(new Map([...good, ['model.onnx', Buffer.from('tampered')]])), 422, /sha256/],
    ['no manifest', packArchive(new Map([['model.onnx', good.get('model.onnx')!]])), 422, /no manifest\.json/],
    ['not a tar', Buffer.from('hello, this is not an archive'.repeat(30)), 422, /not a valid model package archive/],
    ['bad manifest', packArchive(new Map([...good, ['manifest.json', Buffer.from('{"name":"m"}')]])), 422, /invalid manifest/],
  ];
  for (const [what, body, status, message] of cases) {
    const res = await uploadTar(f.httpUrl, 'm', body, f.admin);
    assert.equal(res.status, status, what);
    assert.match(String(res.body.message), message, what);
  }
  const json = await f.api('POST', '/api/models/m/versions', { manifest: {} });
  assert.equal(json.status, 415);
  assert.equal(json.body.error, 'OSP_ERR_CONTENT_TYPE');
  assert.equal((await f.api('GET', '/api/models')).body.models.length, 0);
});

test('registry: artifacts download whole or by Range (206, 416), with a sha256 ETag', async (t) => {
  const f = await startFleet(t);
  const model = tinyAnomalyModel({ padBytes: 3000 });
  const archive = packArchive(packageFiles('m', '1', model));
  const sha = sha256Hex(archive);
  await uploadTar(f.httpUrl, 'm', archive, f.admin);
  const url = `${f.httpUrl}/api/artifacts/${sha}`;

  const full = await fetch(url, { headers: f.admin });
  assert.equal(full.status, 200);
  assert.equal(full.headers.get('etag'), `"${sha}"`);
  assert.equal(full.headers.get('accept-ranges'), 'bytes');
  assert.equal(Number(full.headers.get('content-length')), archive.length);
  assert.equal(sha256Hex(Buffer.from(await full.arrayBuffer())), sha);
  assert.deepEqual(unpackArchive(archive).get('model.onnx'), Buffer.from(model));

  const ranged = async (range: string, extra: Record<string, string> = {}) => fetch(url, { headers: { ...f.admin, range, ...extra } });
  const first = await ranged('bytes=0-99');
  assert.equal(first.status, 206);
  assert.equal(first.headers.get('content-range'), `bytes 0-99/${archive.length}`);
  assert.deepEqual(Buffer.from(await first.arrayBuffer()), archive.subarray(0, 100));

  // Resuming from an offset, and a suffix.
  const rest = await ranged('bytes=1000-');
  assert.equal(rest.status, 206);
  assert.deepEqual(Buffer.from(await rest.arrayBuffer()), archive.subarray(1000));
  const tail = await ranged('bytes=-24');
  assert.equal(tail.headers.get('content-range'), `bytes ${archive.length - 24}-${archive.length - 1}/${archive.length}`);
  assert.deepEqual(Buffer.from(await tail.arrayBuffer()), archive.subarray(archive.length - 24));
  // An end past the size is clipped.
  const clipped = await ranged(`bytes=${archive.length - 10}-${archive.length + 100}`);
  assert.equal((await clipped.arrayBuffer()).byteLength, 10);

  const beyond = await ranged(`bytes=${archive.length}-`);
  assert.equal(beyond.status, 416);
  assert.equal(beyond.headers.get('content-range'), `bytes */${archive.length}`);
  assert.equal(((await beyond.json()) as { error: string }).error, 'OSP_ERR_RANGE');

  // A stale If-Range gets the whole artifact; a matching one gets the range.
  assert.equal((await ranged('bytes=0-9', { 'if-range': '"0000"' })).status, 200);
  assert.equal((await ranged('bytes=0-9', { 'if-range': `"${sha}"` })).status, 206);
  // Several ranges are not served as multipart: the whole artifact instead.
  assert.equal((await ranged('bytes=0-9,20-29')).status, 200);
  assert.equal((await fetch(url, { headers: { ...f.admin, 'if-none-match': `"${sha}"` } })).status, 304);

  const head = await fetch(url, { method: 'HEAD', headers: f.admin });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers.get('content-length')), archive.length);

  assert.equal((await fetch(`${f.httpUrl}/api/artifacts/${'0'.repeat(64)}`, { headers: f.admin })).status, 404);
  assert.equal((await fetch(`${f.httpUrl}/api/artifacts/xyz`, { headers: f.admin })).status, 400);
});

test('registry: a package over registry.maxPackageBytes is 413', async (t) => {
  const f = await startFleet(t, { registry: { maxPackageBytes: 4096 } });
  const res = await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1', Buffer.alloc(8192, 1))), f.admin);
  assert.equal(res.status, 413);
  assert.equal(res.body.error, 'OSP_ERR_TOO_LARGE');
  assert.match(String(res.body.message), /exceeds registry\.maxPackageBytes \(4096 bytes\)/);
});

test('registry: the signing key survives a restart', async (t) => {
  const dataDir = await tempDir(t);
  const keys: string[] = [];
  for (let i = 0; i < 2; i++) {
    const fm = createFleetManager({ dataDir, http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 }, logger: pino({ level: 'silent' }) });
    const { httpUrl } = await fm.start();
    keys.push(await (await fetch(`${httpUrl}/api/fleet/public-key`)).text());
    await fm.close();
  }
  assert.equal(keys[0], keys[1]);
});

test("registry: a version's model card and golden set are read out of its archive; a version without them is a clear 404", async (t) => {
  const f = await startFleet(t);
  const card = { schema: 'osprey-model-card/1', method: { name: 'gaussian-image-features' }, createdBy: 'user:rm' };
  const golden = { schema: 'osprey-golden-set/1', tolerance: 0.001, expectedAccuracy: 1, images: [] };
  const files = packageFiles('carded', '1.0.0');
  files.set('model-card.json', Buffer.from(JSON.stringify(card)));
  files.set('golden.json', Buffer.from(JSON.stringify(golden)));
  assert.equal((await uploadTar(f.httpUrl, 'carded', packArchive(files), f.admin)).status, 201);
  assert.equal((await uploadTar(f.httpUrl, 'plain', packArchive(packageFiles('plain', '1.0.0')), f.admin)).status, 201);

  const got = await f.api('GET', '/api/models/carded/versions/1.0.0/card');
  assert.equal(got.status, 200);
  assert.deepEqual(got.body, card);
  const gs = await f.api('GET', '/api/models/carded/versions/1.0.0/golden');
  assert.equal(gs.status, 200);
  assert.deepEqual(gs.body, golden);

  const none = await f.api('GET', '/api/models/plain/versions/1.0.0/card');
  assert.equal(none.status, 404);
  assert.match(String((none.body as { message: string }).message), /plain@1\.0\.0 has no model card \(model-card\.json\)/);
  assert.equal((await f.api('GET', '/api/models/nope/versions/1.0.0/golden')).status, 404);
});
