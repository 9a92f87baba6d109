/**
 * Fuzzes the fleet's HTTP API through `inject()`: the app built by buildApp around real parts
 * (SQLite in a temp dir, the registry and its keys, an embedded broker for desired states), with
 * some edges, results, an image and a model version in it. Random paths and query strings go to
 * every GET route, mutated JSON bodies to every JSON-body route, and mutated tar and multipart
 * bodies to the package upload. Every answer is a success or a JSON error with a known code and
 * a one-line message, never a 5xx, and memory stays bounded.
 *
 * Every request goes through `send`, which adds the headers `credential()` made: an admin's API
 * token, or for the image upload (edges only) the edge's own credential, both through the real
 * identity store. The registry does not require publisher signatures here (registry config
 * requirePublisherSignature false), so fuzzed packages reach every check behind the signature's.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { connectAsync, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { FLEET_MQTT_USERNAME } from '../../fleet-manager/broker-auth.js';
import { openSqliteIdentityStore, type IdentityStore } from '../../fleet-manager/identity-store.js';
import { credentialsFor } from '../helpers/identity.js';
import { startBroker, type EmbeddedBroker } from '../../fleet-manager/broker.js';
import { openSqliteControlStore } from '../../fleet-manager/control-store.js';
import { createDesiredPublisher } from '../../fleet-manager/desired-state.js';
import { openSqliteImageStore } from '../../fleet-manager/image-store.js';
import { createRegistry } from '../../fleet-manager/registry.js';
import { createRolloutEngine } from '../../fleet-manager/rollout-engine.js';
import { createRolloutMembership } from '../../fleet-manager/rollout-membership.js';
import { loadOrCreateSigningKeys } from '../../fleet-manager/signing-keys.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { packArchive } from '../../models/package-archive.js';
import { sha256Hex } from '../../models/package-reader.js';
import { packageFiles } from '../fleet-manager/control-helpers.js';
import { assertBoundedMemory, assertErrorAnswer, editArchive, fuzz, jsonInput, nastyString, queryString, routePath, sampleMessages, tarEdit, urlPiece } from './arbitraries.js';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';

const MB = 1024 * 1024;
const EDGE = 'edge-1';
const LINE = 'line-1';
const STORE_ID = 'store-fuzz-0001';

type Caller = 'user' | 'edge';

/**
 * The one place that authenticates the fuzz: headers for a user (an admin's API token) and for
 * the edge EDGE (its enrolled credential), made through the identity store's own paths.
 */
async function credential(identity: IdentityStore): Promise<Record<Caller, Record<string, string>>> {
  const creds = credentialsFor(identity);
  return { user: await creds.headers('admin'), edge: { authorization: `Bearer ${await creds.enrollEdge(EDGE)}` } };
}

/**
 * The JSON-body routes and one valid body each: the fuzz sends mutations of it. A new route is
 * one line here (e.g. sign-in: `{ method: 'POST', url: '/api/auth/sign-in', valid: { … } }`).
 */
const JSON_BODY_ROUTES: { method: 'POST' | 'PUT' | 'PATCH'; url: string; valid: unknown }[] = [
  { method: 'POST', url: '/api/auth/sign-in', valid: { username: 'test-admin', password: 'password of test-admin' } },
  { method: 'POST', url: '/api/edges/enroll', valid: { token: 'ospn_abcdefghijkl.bm90IGEgcmVhbCB0b2tlbg', edgeId: 'edge-9' } },
  { method: 'POST', url: '/api/users', valid: { username: 'fuzz-user', password: 'a long enough password', role: 'viewer' } },
  { method: 'PATCH', url: '/api/users/fuzz-user', valid: { role: 'operator', disabled: false } },
  { method: 'PUT', url: '/api/users/fuzz-user/password', valid: { password: 'another long password' } },
  { method: 'POST', url: '/api/tokens', valid: { name: 'ci', role: 'viewer', expiresInDays: 30 } },
  { method: 'POST', url: '/api/enrollment-tokens', valid: { edgeId: 'edge-9', line: LINE, ttlSeconds: 600 } },
  { method: 'PUT', url: '/api/config', valid: { thresholds: { default: 0.5, perLabel: { dent: 0.4 } }, sampling: { keepDefectImages: true, uncertainBand: 0.05, keepGoodEvery: 0 } } },
  { method: 'PUT', url: `/api/lines/${LINE}/config`, valid: { thresholds: { default: 0.6 } } },
  { method: 'PUT', url: `/api/edges/${EDGE}/config`, valid: { sampling: { keepGoodEvery: 10 } } },
  {
    method: 'POST',
    url: '/api/rollouts',
    valid: { model: 'part', version: '1.0.0', target: { edges: [EDGE] }, stages: [{ name: 'canary', mode: 'shadow', gates: { minFrames: 10 }, soakSeconds: 1, promotion: 'manual' }], onFailure: 'pause', silenceTimeoutSeconds: 60, minSample: 1 },
  },
];

/** The GET routes, with the query names each knows (the rest are sent too, and must be refused cleanly). */
const GET_ROUTES: { path: string; query: readonly string[] }[] = [
  { path: '/', query: [] },
  { path: '/health', query: [] },
  { path: '/api/edges', query: [] },
  { path: '/api/edges/:id/events', query: ['limit'] },
  { path: '/api/edges/:id/config', query: [] },
  { path: '/api/edges/:id/effective-config', query: [] },
  { path: '/api/lines', query: [] },
  { path: '/api/lines/:line/stats', query: ['from', 'to', 'bucket', 'format'] },
  { path: '/api/lines/:line/config', query: [] },
  { path: '/api/results', query: ['limit', 'cursor', 'offset', 'edge', 'line', 'verdict', 'label', 'model', 'from', 'to'] },
  { path: '/api/results/:edgeId/:seq/image', query: ['store'] },
  { path: '/api/results/:edgeId/:seq/heatmap', query: ['store'] },
  { path: '/api/config', query: [] },
  { path: '/api/models', query: [] },
  { path: '/api/models/:name/versions', query: [] },
  { path: '/api/models/:name/versions/:version', query: [] },
  { path: '/api/artifacts/:sha256', query: [] },
  { path: '/api/fleet/public-key', query: [] },
  { path: '/api/rollouts', query: [] },
  { path: '/api/rollouts/:id', query: [] },
  { path: '/api/auth/me', query: [] },
  { path: '/api/users', query: [] },
  { path: '/api/tokens', query: [] },
  { path: '/api/enrollment-tokens', query: [] },
  { path: '/api/edge-credentials', query: [] },
  { path: '/api/audit', query: ['from', 'to', 'actor', 'action', 'limit', 'beforeId'] },
];

let app: FastifyInstance;
let auth: Record<Caller, Record<string, string>> = { user: {}, edge: {} };
let artifactSha = '';
const closers: (() => Promise<unknown>)[] = [];

/** Fails when no request of `test` succeeded: the fuzz then only tested a refusal (a missing credential?). */
function assertSomeSucceeded(test: string): void {
  assert.ok((succeeded.get(test) ?? 0) > 0, `${test}: no fuzzed request succeeded; if the API now requires sign-in, make credential() supply it`);
}

/** Injects with the caller's credential; answers status, headers and body text. */
async function send(opts: InjectOptions, as: Caller = 'user'): Promise<{ statusCode: number; headers: Record<string, unknown>; body: string }> {
  const res = await app.inject({ ...opts, headers: { ...auth[as], ...(opts.headers ?? {}) } });
  return { statusCode: res.statusCode, headers: res.headers, body: res.body };
}

/** Successes per fuzz test: none at all means every request was refused before reaching its route. */
const succeeded = new Map<string, number>();

/** A success, or the one error shape (no 5xx but 503 busy / 507 quota, which the API documents). */
function assertAnswer(res: { statusCode: number; headers: Record<string, unknown>; body: string }, what: string, test: string): void {
  if (res.statusCode < 400) {
    succeeded.set(test, (succeeded.get(test) ?? 0) + 1);
    return;
  }
  assertErrorAnswer(res, `${what} → ${res.statusCode} ${res.body.slice(0, 200)}`, [503, 507]);
}

before(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-fuzz-fleet-'));
  closers.push(() => rm(dir, { recursive: true, force: true }));
  const logger = pino({ level: process.env.OSPREY_TEST_LOG ?? 'silent' });
  const file = join(dir, 'fleet.db');
  const store = openSqliteStore({ file, logger });
  closers.push(() => store.close());
  const identity = openSqliteIdentityStore({ file, logger });
  closers.push(() => identity.close());
  const control = openSqliteControlStore({ file, logger });
  closers.push(() => control.close());
  const images = openSqliteImageStore({ file, dir: join(dir, 'images'), logger, maxBytes: 64 * MB });
  closers.push(() => images.close());
  const registry = createRegistry({ store: control, dataDir: dir, keys: await loadOrCreateSigningKeys(dir, logger), logger, maxBytes: 256 * MB, requirePublisherSignature: false });
  const fleetSecret = randomBytes(32).toString('base64url');
  const broker: EmbeddedBroker = await startBroker({ host: '127.0.0.1', port: 0, logger, fleetSecret, resolveEdgeCredential: (c) => identity.resolveEdgeCredential(c) });
  closers.push(() => broker.close());
  const client: MqttClient = await connectAsync(broker.url, { clientId: 'osprey-fleet-fuzz', username: FLEET_MQTT_USERNAME, password: fleetSecret, reconnectPeriod: 0 });
  closers.push(() => client.endAsync(true));
  const membership = createRolloutMembership();
  const publisher = createDesiredPublisher({ client, store: control, fleet: store, registry, logger, shadowOf: membership.shadowOf, baseUrl: () => 'http://127.0.0.1:1' });
  const engine = createRolloutEngine({ control, fleet: store, publisher, membership, logger, tickMs: 60_000 });
  app = await buildApp({
    store,
    identity,
    logger,
    control: { store: control, registry, publisher, engine, maxPackageBytes: 4 * MB, baseUrl: () => 'http://127.0.0.1:1' },
    images: { images, maxImageBytes: 1 * MB, maxInFlightBytes: 8 * MB },
  });
  closers.push(() => app.close());
  auth = await credential(identity);

  // Something for the routes to find: an edge with state and results, an image, a model version.
  const samples = sampleMessages(EDGE, STORE_ID);
  const meta = { receivedAt: Date.now(), replay: false };
  await store.recordState(EDGE, samples.state as never, meta);
  await store.ingestResults(EDGE, (samples.results as { results: never[] }).results, meta, STORE_ID);
  const put = await send({ method: 'PUT', url: `/api/results/${EDGE}/1/image?store=${STORE_ID}`, headers: { 'content-type': 'image/jpeg' }, payload: Buffer.from([0xff, 0xd8, 0xff, 0xd9]) }, 'edge');
  assert.equal(put.statusCode, 201, put.body);
  const up = await send({ method: 'POST', url: '/api/models/part/versions', headers: { 'content-type': 'application/x-tar' }, payload: packArchive(packageFiles('part', '1.0.0')) });
  assert.equal(up.statusCode, 201, up.body);
  artifactSha = (JSON.parse(up.body) as { sha256: string }).sha256;
});

after(async () => {
  for (const close of closers.reverse()) await close();
});

const known = (): Record<string, readonly string[]> => ({
  id: [EDGE, 'nope'],
  edgeId: [EDGE],
  seq: ['1', '2', '0', '-1', '1e3', '99999999999999999999', '1e400', 'Infinity'],
  line: [LINE],
  name: ['part'],
  version: ['1.0.0'],
  sha256: [artifactSha, 'a'.repeat(64)],
});

test('GET routes answer any path and query string with a success or a one-line JSON error', async () => {
  const requests = fc
    .constantFrom(...GET_ROUTES)
    .chain((r) => fc.tuple(fc.constant(r.path), routePath(r.path, known()), queryString(r.query)));
  const headers = fc.record({
    range: fc.option(fc.oneof(fc.constantFrom('bytes=0-0', 'bytes=-1', 'bytes=5-2', 'bytes=0-', 'bytes=99999999999-', 'bytes=0-1,3-4', 'items=1-2'), nastyString), { nil: undefined }),
    'if-none-match': fc.option(fc.constantFrom('*', 'W/"x"', '"a"'), { nil: undefined }),
  });
  await assertBoundedMemory(128 * MB, 'GET routes', () =>
    fuzz(
      'fleet GET routes',
      fc.asyncProperty(requests, headers, async ([pattern, path, query], extra) => {
        const h = Object.fromEntries(Object.entries(extra).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v).replace(/[\r\n]/g, '')]));
        const res = await send({ method: 'GET', url: path + query, headers: h });
        assertAnswer(res, `GET ${pattern} ${path}${query}`, 'GET');
      }),
      4,
    ),
  );
  assertSomeSucceeded('GET');
});

test('JSON-body routes answer any body with a success or a one-line JSON error', async () => {
  const bodies = fc.constantFrom(...JSON_BODY_ROUTES).chain((r) =>
    fc.tuple(
      fc.constant(r),
      fc.oneof(
        { weight: 5, arbitrary: jsonInput(r.valid).map((v) => JSON.stringify(v) ?? '') },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 100 }) },
        { weight: 1, arbitrary: fc.constantFrom('{"a":\n\nx}', '{"__proto__":{"x":1}}', '[', '', 'null', '{"constructor":{"prototype":{"x":1}}}') },
      ),
      fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', ''),
    ),
  );
  await assertBoundedMemory(128 * MB, 'JSON bodies', () =>
    fuzz(
      'fleet JSON-body routes',
      fc.asyncProperty(bodies, async ([route, payload, type]) => {
        const res = await send({ method: route.method, url: route.url, payload, headers: type ? { 'content-type': type } : {} });
        assertAnswer(res, `${route.method} ${route.url} ${payload.slice(0, 200)}`, 'JSON');
        assert.equal(({} as Record<string, unknown>).x, undefined, 'prototype polluted');
      }),
      4,
    ),
  );
  assertSomeSucceeded('JSON');
});

/** A multipart body: parts with odd names and file names, maybe a broken boundary or cut short. */
const multipart = fc
  .record({
    parts: fc.array(
      fc.record({ field: fc.oneof(fc.constant('file'), nastyString), filename: fc.option(fc.oneof(fc.constantFrom('manifest.json', 'model.onnx', '../x', '.hidden'), nastyString), { nil: undefined }), data: fc.uint8Array({ maxLength: 600 }) }),
      { maxLength: 4 },
    ),
    boundary: fc.oneof(fc.constant('fuzzboundary'), fc.string({ unit: 'grapheme-ascii', maxLength: 80 })),
    cut: fc.option(fc.nat(4000), { nil: undefined }),
  })
  .map(({ parts, boundary, cut }) => {
    const chunks: Buffer[] = [];
    for (const p of parts) {
      const disp = `form-data; name="${p.field.replace(/[\r\n"]/g, '')}"${p.filename === undefined ? '' : `; filename="${p.filename.replace(/[\r\n"]/g, '')}"`}`;
      chunks.push(Buffer.from(`--fuzzboundary\r\nContent-Disposition: ${disp}\r\nContent-Type: application/octet-stream\r\n\r\n`), Buffer.from(p.data), Buffer.from('\r\n'));
    }
    chunks.push(Buffer.from('--fuzzboundary--\r\n'));
    const body = Buffer.concat(chunks);
    return { body: cut === undefined ? body : body.subarray(0, cut), type: `multipart/form-data; boundary=${boundary.replace(/[\r\n]/g, '')}` };
  });

/** Many tiny file parts (past the package's 64-file cap), each an open file while it is written. */
const manyParts = fc.integer({ min: 60, max: 400 }).map((n) => {
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`--b\r\nContent-Disposition: form-data; name="f"; filename="f${i}"\r\n\r\nx\r\n`);
  return { body: Buffer.from(parts.join('') + '--b--\r\n'), type: 'multipart/form-data; boundary=b' };
});

test('package uploads (tar and multipart) answer any body with a success or a one-line JSON error', async () => {
  const base = packArchive(packageFiles('part', '1.0.0'));
  const tar = fc
    .record({ header: fc.constantFrom(0, 1024), edits: fc.array(tarEdit, { minLength: 1, maxLength: 3 }), reseal: fc.boolean() })
    .map(({ header, edits, reseal }) => ({ body: editArchive(base, edits, header, reseal), type: 'application/x-tar' }));
  const names = fc.oneof({ weight: 4, arbitrary: fc.constant('part') }, { weight: 1, arbitrary: urlPiece });
  await assertBoundedMemory(128 * MB, 'uploads', () =>
    fuzz(
      'fleet package upload',
      fc.asyncProperty(names, fc.oneof({ weight: 4, arbitrary: tar }, { weight: 4, arbitrary: multipart }, { weight: 1, arbitrary: manyParts }), async (name, { body, type }) => {
        const res = await send({ method: 'POST', url: `/api/models/${name}/versions`, payload: body, headers: { 'content-type': type } });
        assertAnswer(res, `POST /api/models/${name}/versions ${type}`, 'upload');
      }),
      2,
    ),
  );
});

test('regression: router refusals and long field names come back in the one error shape, one bounded line (found by fuzzing)', async () => {
  const cases: [string, InjectOptions][] = [
    // Fastify's router answered these itself, as {"error":"Bad Request","code":"FST_ERR_…"} quoting the whole URL.
    ['an over-long path parameter', { method: 'GET', url: `/api/models/${'x'.repeat(200)}/versions` }],
    ['broken percent-encoding in a parameter', { method: 'GET', url: '/api/edges/%zz/events' }],
    // The validation message named the unknown property in full.
    ['a 5000-char unknown property', { method: 'PUT', url: '/api/config', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ ['x'.repeat(5000)]: 1 }) }],
    ['an unknown property named by a line break', { method: 'PUT', url: '/api/config', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ 'a\nb': 1 }) }],
  ];
  for (const [what, req] of cases) {
    const res = await send(req);
    assertErrorAnswer(res, `${what} → ${res.statusCode} ${res.body.slice(0, 200)}`);
    assert.ok(res.body.length < 1000, `${what}: ${res.body.length} bytes`);
  }
});

test('regression: a package whose manifest nests plug-in options 10 000 deep is refused with 422, not a 500 (found while fuzzing)', async () => {
  const model = Buffer.from('model bytes');
  const plugin = Buffer.from('export default {}');
  const n = 10_000;
  const manifest = Buffer.from(
    `{"schemaVersion":1,"name":"deep","version":"1.0.0","task":"anomaly","model":{"file":"model.onnx","sha256":"${sha256Hex(model)}"},` +
      '"input":{"name":"image","layout":"nchw","width":8,"height":8,"dtype":"float32","color":"gray","resize":"stretch"},' +
      `"outputs":{"anomaly":{"format":"plugin"}},"labels":[],"defectLabels":["anomaly"],"thresholds":{"default":0.5},` +
      `"postprocess":{"module":"post.mjs","sha256":"${sha256Hex(plugin)}","options":{"x":${'['.repeat(n)}${']'.repeat(n)}}}}`,
  );
  const res = await send({ method: 'POST', url: '/api/models/deep/versions', headers: { 'content-type': 'application/x-tar' }, payload: packArchive({ 'manifest.json': manifest, 'model.onnx': model, 'post.mjs': plugin }) });
  assertErrorAnswer(res, `deep manifest → ${res.statusCode} ${res.body.slice(0, 200)}`);
  assert.equal(res.statusCode, 422);
});

test('image uploads answer any body, content type, checksum header and key with a success or a one-line JSON error', async () => {
  const anyUpload = fc.record({
    // Seqs the edge produced (its state says lastSeq 5) and others.
    path: fc.oneof(fc.integer({ min: 1, max: 7 }).map((seq) => `/api/results/${EDGE}/${seq}/image`), routePath('/api/results/:edgeId/:seq/image', known())),
    query: fc.oneof(fc.constant(''), fc.constant(`?store=${STORE_ID}`), queryString(['store'])),
    type: fc.option(fc.oneof(fc.constantFrom('image/jpeg', 'image/png', 'application/octet-stream', 'text/plain', 'application/json', 'image/jpeg; q=1'), nastyString.map((s) => s.replace(/[\x00-\x1f\x7f]/g, ''))), { nil: undefined }),
    // The body's own sha256 ('match'), none, or another.
    sha: fc.oneof(fc.constantFrom(undefined, 'match'), fc.constantFrom('a'.repeat(64), 'A'.repeat(64), 'zz'), fc.stringMatching(/^[0-9a-f]{64}$/)),
    body: fc.oneof(fc.uint8Array({ maxLength: 2000 }), fc.constant(new Uint8Array(0))),
  });
  // Well-formed uploads of produced results, so the storing path (and its conflicts on a second upload) is fuzzed too.
  const goodUpload = fc.record({
    path: fc.integer({ min: 2, max: 5 }).map((seq) => `/api/results/${EDGE}/${seq}/image`),
    query: fc.constant(`?store=${STORE_ID}`),
    type: fc.constantFrom('image/jpeg', 'image/png', 'application/octet-stream'),
    sha: fc.constantFrom(undefined, 'match'),
    body: fc.uint8Array({ minLength: 1, maxLength: 2000 }),
  });
  const uploads = fc.oneof({ weight: 3, arbitrary: anyUpload }, { weight: 1, arbitrary: goodUpload });
  await assertBoundedMemory(128 * MB, 'image uploads', () =>
    fuzz(
      'fleet image upload',
      fc.asyncProperty(uploads, async (u) => {
        const headers: Record<string, string> = {};
        if (u.type !== undefined) headers['content-type'] = u.type;
        if (u.sha !== undefined) headers['x-osprey-sha256'] = u.sha === 'match' ? sha256Hex(u.body) : u.sha;
        const res = await send({ method: 'PUT', url: u.path + u.query, headers, payload: Buffer.from(u.body) }, 'edge');
        assertAnswer(res, `PUT ${u.path}${u.query} ${JSON.stringify(headers)}`, 'image');
      }),
      1,
    ),
  );
  assertSomeSucceeded('image');
});

test('regression: a multipart upload of 30 000 one-byte files is refused at the package file cap, not written (found while fuzzing)', async () => {
  const many = (n: number) => {
    const parts: string[] = [];
    for (let i = 0; i < n; i++) parts.push(`--b\r\nContent-Disposition: form-data; name="f"; filename="f${i}"\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n`);
    return Buffer.from(parts.join('') + '--b--\r\n');
  };
  // Each part was an open file: 30 000 of them ran the process out of descriptors (EMFILE, a 500).
  const res = await send({ method: 'POST', url: '/api/models/part/versions', headers: { 'content-type': 'multipart/form-data; boundary=b' }, payload: many(30_000) });
  assertErrorAnswer(res, `30 000 parts → ${res.statusCode} ${res.body.slice(0, 200)}`);
  assert.equal(res.statusCode, 422);
  assert.match(res.body, /more than 64 files/);
});

test('regression: non-finite numbers in the URL are refused with 400, not passed to SQLite as Infinity (found while fuzzing)', async () => {
  // ajv coerced "1e400" to Infinity and skipped maximum for it: limit=1e400 was a 500 (datatype mismatch).
  for (const url of ['/api/results?limit=1e400', `/api/results?limit=${'9'.repeat(400)}`, '/api/results?offset=Infinity', `/api/edges/${EDGE}/events?limit=1e400`, `/api/results/${EDGE}/1e400/image`]) {
    const res = await send({ method: 'GET', url });
    assertErrorAnswer(res, `${url.slice(0, 60)} → ${res.statusCode} ${res.body.slice(0, 200)}`);
    assert.equal(res.statusCode, 400, url.slice(0, 60));
  }
  // The 404 message quoted the whole path (10 KB here).
  const res = await send({ method: 'GET', url: `/api/nothing/${'x'.repeat(10_000)}` });
  assertErrorAnswer(res, 'a 10 KB unknown path');
  assert.ok(res.body.length < 1000, `404 body of ${res.body.length} bytes`);
});
