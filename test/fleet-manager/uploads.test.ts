/**
 * Package uploads go to disk as they arrive (never whole in memory), leave no temp file behind
 * whatever happens, and the artifact and image stores have quotas. Real fleet manager, real HTTP;
 * the 500 MB upload runs against a real `osprey fleet` process so its memory can be measured.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Agent, request as undiciRequest } from 'undici';
import { header, packArchive } from '../../models/package-archive.js';
import { enrolledEdgeAt, manifestBytes, packageFiles, startFleet, uploadTar } from './control-helpers.js';
import { startOsprey } from '../helpers/osprey-process.js';
import { openTestIdentity } from '../helpers/identity.js';
import { memoryOf } from '../helpers/mqtt-flood.js';
import { waitFor } from '../helpers/wait-for.js';
import { signedFiles, TEST_PUBLISHER_ID, testPublisher, testPublisherKey, tinyAnomalyModel } from '../helpers/publisher.js';
import { signArtifact } from '../../models/artifact-signature.js';

const MiB = 1024 * 1024;
const files = (dir: string) => readdirSync(dir);

/** POSTs a body (a tar unless headers name another content-type) written by `write` (which may stop early); resolves with status and body, or null if the connection was cut. */
function postTar(url: string, name: string, headers: Record<string, string | number>, write: (req: ClientRequest) => Promise<void>) {
  const u = new URL(url);
  const req = httpRequest({ host: u.hostname, port: u.port, method: 'POST', path: `/api/models/${name}/versions`, headers: { 'content-type': 'application/x-tar', ...headers } });
  const answer = new Promise<{ status: number; body: Record<string, unknown> } | null>((resolve) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown> }));
    });
    req.on('error', () => resolve(null));
  });
  void write(req);
  return answer;
}

/** Writes `bytes` of `fill` in 1 MiB chunks with back-pressure, hashing them; stops if the request dies or `stop()` says so. */
async function writeZeros(req: ClientRequest, bytes: number, stop: () => boolean = () => false): Promise<void> {
  const chunk = Buffer.alloc(MiB);
  for (let sent = 0; sent < bytes && !req.destroyed && !stop(); ) {
    const n = Math.min(chunk.length, bytes - sent);
    sent += n;
    if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
      await new Promise<void>((resolve) => {
        const go = () => {
          req.off('drain', go).off('close', go);
          resolve();
        };
        req.once('drain', go).once('close', go);
      });
    }
  }
}

const BOUNDARY = 'osprey-test-boundary';
const MULTIPART = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };
/** The head of one multipart file part (its bytes follow, then CRLF). */
const partHead = (filename: string) =>
  Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="file"; filename="${filename}"\r\ncontent-type: application/octet-stream\r\n\r\n`);
const formEnd = Buffer.from(`--${BOUNDARY}--\r\n`);
/** A whole multipart body of these files. */
const multipartBody = (parts: Iterable<[string, Uint8Array]>) =>
  Buffer.concat([...[...parts].flatMap(([name, bytes]) => [partHead(name), Buffer.from(bytes), Buffer.from('\r\n')]), formEnd]);

/** A varint (protobuf). */
function varint(n: number): Buffer {
  const out: number[] = [];
  for (; n >= 0x80; n = Math.floor(n / 0x80)) out.push((n % 0x80) | 0x80);
  out.push(n);
  return Buffer.from(out);
}

/**
 * A real model of `size` bytes, nearly all of them zeros, without ever holding them: the tiny
 * anomaly model with one more (unused) initializer whose raw_data is the zeros. Returned as the
 * bytes before the zeros, their count and the bytes after, with the whole model's sha256.
 */
function bigModel(size: number): { prefix: Buffer; zeros: number; suffix: Buffer; sha256: string } {
  const base = Buffer.from(tinyAnomalyModel());
  // ModelProto field 7 (graph, length-delimited): find it among the top-level fields.
  let off = 0;
  let graph: { start: number; body: number; end: number } | undefined;
  while (off < base.length) {
    const start = off;
    let tag = 0;
    for (let shift = 1; ; shift *= 128) {
      const b = base[off++]!;
      tag += (b & 0x7f) * shift;
      if (b < 0x80) break;
    }
    const wire = tag & 7;
    if (wire === 0) while (base[off++]! >= 0x80);
    else if (wire === 2) {
      let len = 0;
      for (let shift = 1; ; shift *= 128) {
        const b = base[off++]!;
        len += (b & 0x7f) * shift;
        if (b < 0x80) break;
      }
      if (tag >> 3 === 7) graph = { start, body: off, end: off + len };
      off += len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  if (!graph) throw new Error('no graph in the tiny model');
  const graphBody = base.subarray(graph.body, graph.end);
  // TensorProto { dims: n, data_type: FLOAT, name: "pad", raw_data: <zeros> } as GraphProto field 5 (initializer).
  const tensorHead = (n: number) => Buffer.concat([Buffer.from([0x08]), varint(n / 4), Buffer.from([0x10, 0x01, 0x42, 0x03]), Buffer.from('pad'), Buffer.from([0x4a]), varint(n)]);
  const build = (n: number) => {
    const tensorLen = tensorHead(n).length + n;
    const init = Buffer.concat([Buffer.from([0x2a]), varint(tensorLen), tensorHead(n)]);
    const graphLen = graphBody.length + init.length + n;
    const prefix = Buffer.concat([base.subarray(0, graph!.start), Buffer.from([0x3a]), varint(graphLen), graphBody, init]);
    return { prefix, suffix: base.subarray(graph!.end) };
  };
  // The zeros take what the rest leaves, rounded down to whole float32s: within 4 bytes of `size`.
  let zeros = size - build(size).prefix.length - build(size).suffix.length;
  zeros -= zeros % 4;
  const { prefix, suffix } = build(zeros);
  const h = createHash('sha256').update(prefix);
  const chunk = Buffer.alloc(MiB);
  for (let left = zeros; left > 0; left -= MiB) h.update(left >= MiB ? chunk : chunk.subarray(0, left));
  return { prefix, zeros, suffix: Buffer.from(suffix), sha256: h.update(suffix).digest('hex') };
}

/**
 * A signed package of a real model of about `size` bytes, to stream: its manifest, the model in
 * three pieces, and the signature.json of its canonical archive (hashed here without holding it).
 */
function bigPackage(name: string, size: number) {
  const model = bigModel(size - (size % 4));
  const modelSize = model.prefix.length + model.zeros + model.suffix.length;
  const manifest = manifestBytes(name, '1', model.sha256, modelSize);
  const pad = (n: number) => Buffer.alloc((512 - (n % 512)) % 512);
  // The canonical archive: manifest.json, model.onnx, end marker (what packArchive would write).
  const h = createHash('sha256').update(Buffer.concat([header('manifest.json', manifest.length, 0), manifest, pad(manifest.length), header('model.onnx', modelSize, 0), model.prefix]));
  const chunk = Buffer.alloc(MiB);
  for (let left = model.zeros; left > 0; left -= MiB) h.update(left >= MiB ? chunk : chunk.subarray(0, left));
  h.update(Buffer.concat([model.suffix, pad(modelSize), Buffer.alloc(1024)]));
  const archiveSize = 512 + manifest.length + pad(manifest.length).length + 512 + modelSize + pad(modelSize).length + 1024;
  const identity = { name, version: '1', sha256: h.digest('hex'), size: archiveSize, pluginSha256: null };
  const signature = Buffer.from(JSON.stringify({ format: 'osprey-artifact/v2', keyId: TEST_PUBLISHER_ID, ...identity, signature: signArtifact(identity, testPublisher.privateKeyPem) }));
  return { manifest, model, modelSize, signature, pad };
}

test('uploads: a streamed upload over registry.maxPackageBytes is 413 and leaves no file; an aborted or empty one neither', async (t) => {
  const f = await startFleet(t, { registry: { maxPackageBytes: 2 * MiB } });
  const uploads = join(f.dataDir, 'uploads');

  let answered = false;
  const over = postTar(f.httpUrl, 'm', { ...f.admin, 'transfer-encoding': 'chunked' }, async (req) => writeZeros(req, 8 * MiB, () => answered));
  void over.then(() => (answered = true));
  const res = await over;
  assert.equal(res?.status, 413);
  assert.equal(res?.body.error, 'OSP_ERR_TOO_LARGE');
  assert.equal(res?.body.message, `upload exceeds registry.maxPackageBytes (${2 * MiB} bytes)`);
  assert.deepEqual(files(uploads), []);

  // The client goes away half-way: the partial file is deleted.
  const aborted = postTar(f.httpUrl, 'm', { ...f.admin, 'content-length': MiB }, async (req) => {
    await writeZeros(req, MiB / 2);
    await waitFor(() => files(uploads).length === 1, 'the partial upload on disk');
    req.destroy();
  });
  assert.equal(await aborted, null);
  await waitFor(() => files(uploads).length === 0, 'the partial upload deleted');

  const empty = await uploadTar(f.httpUrl, 'm', new Uint8Array(0), f.admin);
  assert.equal(empty.status, 400);
  assert.deepEqual(files(uploads), []);
  assert.deepEqual(files(join(f.dataDir, 'artifacts')), []);
});

test('uploads: a canonical tar is moved into place, another tar is re-packed; invalid ones leave nothing', async (t) => {
  const f = await startFleet(t);
  const pkg = packageFiles('m', '1');
  const canonical = packArchive(pkg);
  const up = await uploadTar(f.httpUrl, 'm', canonical, f.admin);
  assert.equal(up.status, 201);
  assert.equal(up.body.sha256, createHash('sha256').update(canonical).digest('hex'));

  // Same files, other order and an mtime: the same artifact, re-packed.
  const entries = [...packageFiles('m', '2')].reverse();
  const odd = Buffer.concat([
    ...entries.flatMap(([name, data]) => {
      const h = header(name, data.length, 1_700_000_000);
      return [h, Buffer.from(data), Buffer.alloc((512 - (data.length % 512)) % 512)];
    }),
    Buffer.alloc(1024),
  ]);
  const repacked = await uploadTar(f.httpUrl, 'm', odd, f.admin);
  assert.equal(repacked.status, 201);
  assert.equal(repacked.body.sha256, createHash('sha256').update(packArchive(packageFiles('m', '2'))).digest('hex'));

  const bad = await uploadTar(f.httpUrl, 'm', Buffer.alloc(4096, 7), f.admin);
  assert.equal(bad.status, 422);
  assert.match(String(bad.body.message), /not a valid model package archive/);
  assert.deepEqual(files(join(f.dataDir, 'uploads')), []);
});

test('uploads: the artifact store quota (registry.maxBytes) refuses a package with 507 naming it', async (t) => {
  const f = await startFleet(t, { registry: { maxBytes: 8 * 1024 } });
  assert.equal((await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1', tinyAnomalyModel({ padBytes: 2700 }))), f.admin)).status, 201);
  const full = await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '2', tinyAnomalyModel({ padBytes: 4700 }))), f.admin);
  assert.equal(full.status, 507);
  assert.equal(full.body.error, 'OSP_ERR_QUOTA');
  assert.match(String(full.body.message), /^artifact store full: 6144 bytes used \+ 8192 would exceed registry\.maxBytes \(8192\)$/);
  assert.deepEqual(files(join(f.dataDir, 'uploads')), []);
  // The same package again takes no space: still accepted.
  assert.equal((await uploadTar(f.httpUrl, 'm', packArchive(packageFiles('m', '1', tinyAnomalyModel({ padBytes: 2700 }))), f.admin)).status, 200);
});

test('uploads: the image store quota (images.maxBytes) answers 507; a repeated image still fits', async (t) => {
  const f = await startFleet(t, { images: { maxBytes: 4096 } });
  // press-1 has reported results up to seq 1000: the fleet takes their images.
  const press1 = await enrolledEdgeAt(f, 'press-1', 1000);
  const put = (seq: number, bytes: Buffer) =>
    fetch(`${f.httpUrl}/api/results/press-1/${seq}/image`, { method: 'PUT', body: bytes, headers: { ...press1, 'content-type': 'image/jpeg' } }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
  assert.equal((await put(1, Buffer.alloc(3000, 1))).status, 201);
  assert.equal((await put(2, Buffer.alloc(3000, 1))).status, 201, 'same bytes: shared blob, no new space');
  const full = await put(3, Buffer.alloc(2000, 2));
  assert.equal(full.status, 507);
  assert.equal(full.body.message, 'image store full: 3000 bytes used + 2000 would exceed images.maxBytes (4096)');
});

/** A real `osprey fleet` process on free ports in a temp dir, killed and removed after the test. */
async function fleetProcess(t: TestContext) {
  const dir = mkdtempSync(join(tmpdir(), 'osprey-upload-'));
  // The fleet trusts the test publisher (registry.publisherKeys), as a real one is configured.
  const configFile = join(dir, 'fleet.json');
  writeFileSync(configFile, JSON.stringify({ registry: { publisherKeys: [testPublisherKey()] } }));
  const fleet = startOsprey(['fleet', 'start', '--config', configFile, '--port', '0', '--mqtt-port', '0', '--data', dir]);
  // One hook, process first: the dir is removed only once nothing writes to it.
  t.after(async () => {
    await fleet.stop('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const { httpUrl } = (await fleet.waitForLine((l) => l.msg === 'fleet manager started')) as { httpUrl: string };
  const admin = await openTestIdentity(t, join(dir, 'fleet.db')).headers('admin');
  return { fleet, httpUrl, dir, admin };
}

test('fleet process: a 500 MB package upload streams to disk; the fleet memory stays bounded', { timeout: 120_000 }, async (t) => {
  const { fleet, httpUrl, dir, admin } = await fleetProcess(t);
  const before = memoryOf(fleet.child.pid!);

  // A valid, signed package with a real 500 MB model, streamed: manifest, the model, its signature.json.
  const size = 500 * MiB;
  const { manifest, model, modelSize, signature, pad } = bigPackage('big', size);
  const head = Buffer.concat([header('manifest.json', manifest.length, 0), manifest, pad(manifest.length), header('model.onnx', modelSize, 0), model.prefix]);
  const tail = Buffer.concat([model.suffix, pad(modelSize), header('signature.json', signature.length, 0), signature, pad(signature.length), Buffer.alloc(1024)]);
  const started = Date.now();
  const res = await postTar(httpUrl, 'big', { ...admin, 'content-length': head.length + model.zeros + tail.length }, async (req) => {
    req.write(head);
    await writeZeros(req, model.zeros);
    req.end(tail);
  });
  const after = memoryOf(fleet.child.pid!);
  assert.equal(res?.status, 201, JSON.stringify(res?.body));
  t.diagnostic(`fleet RSS ${Math.round(before.rss / MiB)} MB before, peak ${Math.round(after.peak / MiB)} MB for a 500 MB upload (${Date.now() - started} ms)`);
  assert.ok(after.peak - before.rss < 100 * MiB, `fleet peak RSS grew ${Math.round((after.peak - before.rss) / MiB)} MB`);
  assert.deepEqual(files(join(dir, 'uploads')), []);
});

test('uploads: a multipart upload is received to a directory; over registry.maxPackageBytes it is 413 as soon as the cap is passed', async (t) => {
  const f = await startFleet(t, { registry: { maxPackageBytes: 2 * MiB } });
  const uploads = join(f.dataDir, 'uploads');

  // A model part that never ends: answered once 2 MiB of file bytes are in, not at the end of the body.
  let answered = false;
  const over = postTar(f.httpUrl, 'm', { ...f.admin, ...MULTIPART, 'transfer-encoding': 'chunked' }, async (req) => {
    req.write(partHead('model.onnx'));
    await writeZeros(req, 64 * MiB, () => answered);
  });
  void over.then(() => (answered = true));
  const res = await over;
  assert.equal(res?.status, 413);
  assert.equal(res?.body.message, `upload exceeds registry.maxPackageBytes (${2 * MiB} bytes)`);
  await waitFor(() => files(uploads).length === 0, 'the partial upload deleted');

  // The client goes away half-way through a part: the directory is deleted.
  const aborted = postTar(f.httpUrl, 'm', { ...f.admin, ...MULTIPART, 'content-length': MiB }, async (req) => {
    req.write(partHead('model.onnx'));
    await writeZeros(req, MiB / 2);
    await waitFor(() => files(uploads).length === 1, 'the partial upload on disk');
    req.destroy();
  });
  assert.equal(await aborted, null);
  await waitFor(() => files(uploads).length === 0, 'the partial upload deleted');

  const good = await postTar(f.httpUrl, 'm', { ...f.admin, ...MULTIPART }, async (req) => void req.end(multipartBody(signedFiles(packageFiles('m', '1')))));
  assert.equal(good?.status, 201, JSON.stringify(good?.body));
  assert.equal(good?.body.sha256, createHash('sha256').update(packArchive(packageFiles('m', '1'))).digest('hex'));
  assert.deepEqual(files(uploads), []);
});

test('uploads: multipart parts that are not flat package files are refused with the reason; nothing is left', async (t) => {
  const f = await startFleet(t);
  const uploads = join(f.dataDir, 'uploads');
  const pkg = [...packageFiles('m', '1')];
  const field = Buffer.from(`--${BOUNDARY}\r\ncontent-disposition: form-data; name="version"\r\n\r\n1\r\n`);
  const cases: [string, Buffer, number, string][] = [
    ['a path', multipartBody([...pkg, ['sub/extra.bin', Buffer.from('x')]]), 422, 'package file name "sub/extra.bin" is not allowed'],
    ['a parent', multipartBody([...pkg, ['../escape.bin', Buffer.from('x')]]), 422, 'package file name "../escape.bin" is not allowed'],
    ['twice', multipartBody([...pkg, ['model.onnx', Buffer.from('x')]]), 400, 'file model.onnx appears twice in the upload'],
    ['a field', Buffer.concat([field, multipartBody(pkg)]), 400, 'multipart field "version" is not a file; send each package file as a file part'],
    ['no files', formEnd, 400, 'the upload holds no files'],
    ['cut short', multipartBody(pkg).subarray(0, 300), 400, 'body is not valid multipart/form-data: Unexpected end of form'],
  ];
  for (const [what, body, status, message] of cases) {
    const res = await postTar(f.httpUrl, 'm', { ...f.admin, ...MULTIPART }, async (req) => void req.end(body));
    assert.equal(res?.status, status, `${what}: ${JSON.stringify(res?.body)}`);
    assert.equal(res?.body.message, message, what);
    assert.deepEqual(files(uploads), [], what);
  }
  assert.deepEqual(files(join(f.dataDir, 'artifacts')), []);
  assert.ok(!files(tmpdir()).includes('escape.bin'));
});

test('fleet process: a 500 MB multipart package upload streams to disk; the fleet memory stays bounded', { timeout: 120_000 }, async (t) => {
  const { fleet, httpUrl, dir, admin } = await fleetProcess(t);
  const before = memoryOf(fleet.child.pid!);

  const size = 500 * MiB;
  const { manifest, model, signature } = bigPackage('big', size);
  const head = Buffer.concat([partHead('manifest.json'), manifest, Buffer.from('\r\n'), partHead('model.onnx'), model.prefix]);
  const tail = Buffer.concat([model.suffix, Buffer.from('\r\n'), partHead('signature.json'), signature, Buffer.from('\r\n'), formEnd]);
  const started = Date.now();
  const res = await postTar(httpUrl, 'big', { ...admin, ...MULTIPART, 'content-length': head.length + model.zeros + tail.length }, async (req) => {
    req.write(head);
    await writeZeros(req, model.zeros);
    req.end(tail);
  });
  const after = memoryOf(fleet.child.pid!);
  assert.equal(res?.status, 201, JSON.stringify(res?.body));
  t.diagnostic(`fleet RSS ${Math.round(before.rss / MiB)} MB before, peak ${Math.round(after.peak / MiB)} MB for a 500 MB multipart upload (${Date.now() - started} ms)`);
  assert.ok(after.peak - before.rss < 100 * MiB, `fleet peak RSS grew ${Math.round((after.peak - before.rss) / MiB)} MB`);
  assert.deepEqual(files(join(dir, 'uploads')), []);
});

test('uploads: image bodies held at once are capped by images.maxInFlightBytes; beyond it 503 with Retry-After before the body is read', async (t) => {
  const f = await startFleet(t, { images: { maxImageBytes: MiB, maxInFlightBytes: 1.5 * MiB } });
  // press-1 has reported results up to seq 1000: the fleet takes their images.
  const press1 = await enrolledEdgeAt(f, 'press-1', 1000);
  const u = new URL(f.httpUrl);
  /** Starts a PUT of an image and leaves it open after `first` bytes; `finish()` sends the rest. */
  const open = (seq: number, headers: Record<string, string | number>, first: Buffer) => {
    const req = httpRequest({ host: u.hostname, port: u.port, method: 'PUT', path: `/api/results/press-1/${seq}/image`, headers: { ...press1, 'content-type': 'image/jpeg', ...headers } });
    const answer = new Promise<{ status: number; retryAfter?: string; body: Record<string, unknown> } | null>((resolve) => {
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, retryAfter: res.headers['retry-after'], body: JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown> }));
      });
      req.on('error', () => resolve(null));
    });
    req.write(first);
    return { req, answer };
  };
  // Its own connections, none open yet: a probe must not overtake the open upload on a kept-alive
  // connection of the set-up above before the fleet has read that upload's headers.
  const probes = new Agent();
  t.after(() => probes.close());
  const put = (seq: number, bytes: Buffer) =>
    undiciRequest(`${f.httpUrl}/api/results/press-1/${seq}/image`, { method: 'PUT', body: bytes, headers: { ...press1, 'content-type': 'image/jpeg' }, dispatcher: probes }).then(async (r) => ({
      status: r.statusCode,
      retryAfter: r.headers['retry-after'] as string | undefined,
      body: (await r.body.json()) as Record<string, unknown>,
    }));

  // Nothing tells the client when the fleet has read an open upload's headers: ask until a 600 KiB image
  // is refused beside it (without the cap it never is, and this times out).
  let seq = 10;
  const refusedBeside = () =>
    waitFor(async () => {
      const r = await put(seq++, Buffer.alloc(600 * 1024, 3));
      return r.status === 503 && r;
    }, 'a 503 while an open upload holds most of images.maxInFlightBytes', 5000);
  /** Accepted only once the open upload's reservation is given back: 1 MiB beside it would pass 1.5 MiB. */
  const wholeFits = () => waitFor(async () => (await put(seq++, Buffer.alloc(MiB, 4))).status === 201, 'a 1 MiB image accepted', 5000);

  // A chunked upload may grow to maxImageBytes: it holds 1 MiB from its headers on.
  const a = open(1, { 'transfer-encoding': 'chunked' }, Buffer.alloc(1024, 1));
  const opened = [a];
  try {
    const busy = await refusedBeside();
    assert.equal(busy.retryAfter, '1');
    assert.equal(busy.body.error, 'OSP_ERR_BUSY');
    assert.equal(busy.body.message, `image uploads in flight would exceed images.maxInFlightBytes (${1.5 * MiB} bytes); retry later`);
    // Refused from its content-length, before the body it is still sending is read.
    const b = open(2, { 'content-length': MiB }, Buffer.alloc(1024, 2));
    opened.push(b);
    assert.equal((await b.answer)?.status, 503);

    // The client goes away: its bytes are given back.
    a.req.destroy();
    assert.equal(await a.answer, null);
    await wholeFits();

    // An upload that completes gives its bytes back too.
    const c = open(3, { 'content-length': MiB }, Buffer.alloc(1024, 5));
    opened.push(c);
    await refusedBeside();
    c.req.end(Buffer.alloc(MiB - 1024, 5));
    assert.equal((await c.answer)?.status, 201);
    await wholeFits();
  } finally {
    // Open uploads would keep the fleet from closing if an assertion failed.
    for (const o of opened) o.req.destroy();
  }
});
