/**
 * Result images at the fleet (issue 5): content-addressed blobs, idempotent uploads, download
 * beside the result, and the result view saying whether an image exists. Real SQLite, real files;
 * the image store's links on SQLite and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity, type TestIdentity } from '../helpers/identity.js';
import { openSqliteImageStore, type FleetImageStore } from '../../fleet-manager/image-store.js';
import { IMAGE_PG_MIGRATIONS, pgImageStore } from '../../fleet-manager/pg/image-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { openSqliteStore, type FleetStore } from '../../fleet-manager/store.js';
import { envelope } from '../../protocol/validator.js';
import { results, tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('a defect, honestly')]);
const PNG = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.from('another')]);
const STORE_A = 'storeAAAAAAAAAAA';
const STORE_B = 'storeBBBBBBBBBBB';

interface Rig {
  app: FastifyInstance;
  dir: string;
  /** e1's edge credential, as `osprey edge enroll` gets it. */
  e1: Record<string, string>;
  /** An admin's API token (reads results and images). */
  admin: Record<string, string>;
  creds: TestIdentity;
  store: FleetStore;
  /** Another image store on the same links and blobs (a second app). */
  openImages(): FleetImageStore;
}

async function build(t: TestContext, backend: StoreBackend): Promise<Rig> {
  const dir = await tempDir(t);
  const logger = pino({ level: 'silent' });
  const file = join(dir, 'fleet.db');
  const store = openSqliteStore({ file, logger });
  const pool = backend === 'postgres' ? await pgTestPool(t, IMAGE_PG_MIGRATIONS) : undefined;
  const openImages = () =>
    pool ? pgImageStore(pool, { dir: join(dir, 'images'), logger }) : openSqliteImageStore({ file, dir: join(dir, 'images'), logger });
  const images = openImages();
  const creds = openTestIdentity(t, file);
  const app = await buildApp({ store, identity: creds.identity, logger, images: { images, maxImageBytes: 1 << 20 } });
  t.after(async () => {
    await app.close();
    await images.close();
    await store.close();
  });
  const meta = { receivedAt: Date.now() };
  await store.ingestResults('e1', results(1, 3), meta, STORE_A);
  await store.ingestResults('e1', results(1, 2), meta, STORE_B);
  const e1 = { authorization: `Bearer ${await creds.enrollEdge('e1')}` };
  return { app, dir, e1, admin: await creds.headers('admin'), creds, store, openImages };
}

/** An upload as e1 (or with `auth`). */
const put = (r: Rig, url: string, body: Buffer, type = 'image/jpeg', hash: string | undefined = sha(body), auth = r.e1) =>
  r.app.inject({ method: 'PUT', url, payload: body, headers: { ...auth, 'content-type': type, ...(hash ? { 'x-osprey-sha256': hash } : {}) } });
/** A read as an admin. */
const get = (r: Rig, url: string) => r.app.inject({ url, headers: r.admin });

testBackends('an upload is stored by sha256, repeated uploads are no-ops, and the image is served with its result', async (t, backend) => {
  const r = await build(t, backend);
  const url = `/api/results/e1/2/image?store=${STORE_A}`;
  const first = await put(r, url, JPEG);
  assert.equal(first.statusCode, 201);
  assert.deepEqual(first.json(), { edgeId: 'e1', storeId: STORE_A, seq: 2, sha256: sha(JPEG), bytes: JPEG.length, contentType: 'image/jpeg', created: true });
  const again = await put(r, url, JPEG);
  assert.equal(again.statusCode, 200);
  assert.equal(again.json().created, false);

  const got = await get(r, url);
  assert.equal(got.statusCode, 200);
  assert.equal(got.headers['content-type'], 'image/jpeg');
  assert.equal(got.headers.etag, `"${sha(JPEG)}"`);
  assert.deepEqual(got.rawPayload, JPEG);
  // Only one store has seq 2 with an image, so ?store= may be left out.
  assert.deepEqual((await get(r, '/api/results/e1/2/image')).rawPayload, JPEG);

  // The same bytes for another result share the blob.
  assert.equal((await put(r, `/api/results/e1/3/image?store=${STORE_A}`, JPEG)).statusCode, 201);
  const blobs = (await readdir(join(r.dir, 'images', sha(JPEG).slice(0, 2)))).filter((n) => !n.endsWith('.tmp'));
  assert.deepEqual(blobs, [sha(JPEG)]);

  const view = (await get(r, '/api/results?edge=e1')).json() as { items: { seq: number; storeId: string; hasImage: boolean }[] };
  const withImage = view.items.filter((i) => i.hasImage).map((i) => `${i.storeId}/${i.seq}`).sort();
  assert.deepEqual(withImage, [`${STORE_A}/2`, `${STORE_A}/3`]);
});

testBackends('wrong checksum, another image for the same result, and ambiguous seqs are refused clearly', async (t, backend) => {
  const r = await build(t, backend);
  const bad = await put(r, `/api/results/e1/1/image?store=${STORE_A}`, JPEG, 'image/jpeg', sha(PNG));
  assert.equal(bad.statusCode, 422);
  assert.equal(bad.json().error, 'OSP_ERR_IMAGE_CHECKSUM');

  assert.equal((await put(r, `/api/results/e1/1/image?store=${STORE_A}`, JPEG)).statusCode, 201);
  const other = await put(r, `/api/results/e1/1/image?store=${STORE_A}`, PNG, 'image/png');
  assert.equal(other.statusCode, 409);
  assert.equal(other.json().error, 'OSP_ERR_CONFLICT');

  // seq 1 exists in both stores of e1 (a replaced database): the store must be named.
  assert.equal((await put(r, `/api/results/e1/1/image?store=${STORE_B}`, PNG, 'image/png', undefined)).statusCode, 201);
  const ambiguous = await get(r, '/api/results/e1/1/image');
  assert.equal(ambiguous.statusCode, 409);
  assert.match(ambiguous.json().message, /add \?store=/);
  assert.deepEqual((await get(r, `/api/results/e1/1/image?store=${STORE_B}`)).rawPayload, PNG);

  const missing = await get(r, '/api/results/e1/3/image');
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.json().error, 'OSP_ERR_NOT_FOUND');
  assert.equal((await put(r, `/api/results/e1/2/image?store=${STORE_B}`, Buffer.from('{}'), 'application/json')).statusCode, 415);
  assert.equal((await put(r, '/api/results/e1/0/image', JPEG)).statusCode, 400);
});

testBackends("an edge uploads only its own results' images: another edge 403, a person 403, no credential 401; nothing stored", async (t, backend) => {
  const r = await build(t, backend);
  const url = `/api/results/e1/2/image?store=${STORE_A}`;
  const e2 = { authorization: `Bearer ${await r.creds.enrollEdge('e2')}` };
  const asOther = await put(r, url, PNG, 'image/png', undefined, e2);
  assert.equal(asOther.statusCode, 403);
  assert.equal(asOther.json().error, 'OSP_ERR_FORBIDDEN');
  assert.match(asOther.json().message, /^the credential of edge e2 cannot upload images of edge e1$/);
  assert.equal((await put(r, url, PNG, 'image/png', undefined, r.admin)).statusCode, 403, 'not even an admin');
  assert.equal((await put(r, url, PNG, 'image/png', undefined, {})).statusCode, 401);
  assert.equal((await get(r, url)).statusCode, 404, 'nothing stored');
  // The real image is then accepted.
  assert.equal((await put(r, url, JPEG)).statusCode, 201);
  assert.deepEqual((await get(r, url)).rawPayload, JPEG);
});

testBackends('an edge uploads images only for seqs it has produced: ahead of the fleet 503 (retried), an old store beyond what reached the fleet 409', async (t, backend) => {
  const r = await build(t, backend);
  // STORE_B is e1's current store (its latest batch): 1..2 at the fleet.
  const ahead = await put(r, `/api/results/e1/3/image?store=${STORE_B}`, JPEG);
  assert.equal(ahead.statusCode, 503);
  assert.equal(ahead.json().error, 'OSP_ERR_RESULT_UNSEEN');
  assert.equal(ahead.headers['retry-after'], '5');
  assert.equal((await put(r, `/api/results/e1/1000000/image?store=${STORE_B}`, JPEG)).statusCode, 503, 'a forged seq far ahead');
  assert.equal((await put(r, '/api/results/e1/1/image?store=storeCCCCCCCCCCC', JPEG)).statusCode, 503, 'a store the fleet has not heard of yet');
  assert.equal((await put(r, '/api/results/e9/1/image', JPEG, 'image/jpeg', sha(JPEG), { authorization: `Bearer ${await r.creds.enrollEdge('e9')}` })).statusCode, 503, 'an edge that never reported');
  // STORE_A is no longer current: what reached the fleet (1..3) only, for good.
  const gone = await put(r, `/api/results/e1/4/image?store=${STORE_A}`, JPEG);
  assert.equal(gone.statusCode, 409);
  assert.match(gone.json().message, /never reached the fleet/);
  for (const url of [`/api/results/e1/3/image?store=${STORE_B}`, `/api/results/e1/1000000/image?store=${STORE_B}`, `/api/results/e1/4/image?store=${STORE_A}`]) {
    assert.equal((await get(r, url)).statusCode, 404, `${url}: nothing stored`);
  }
  // The lastSeq the edge reports (state, telemetry) counts before its results arrive.
  await r.store.recordState('e1', envelope('state', 'e1', { online: true, lastSeq: 4, ackedSeq: 2, storeId: STORE_B }), { receivedAt: Date.now() });
  assert.equal((await put(r, `/api/results/e1/3/image?store=${STORE_B}`, JPEG)).statusCode, 201);
  assert.equal((await put(r, `/api/results/e1/4/image?store=${STORE_B}`, PNG, 'image/png')).statusCode, 201);
  assert.equal((await put(r, `/api/results/e1/5/image?store=${STORE_B}`, JPEG)).statusCode, 503);
});

testBackends('anonymous uploads: refused by default; accepted only by an app built with authentication off (auth.enabled false)', async (t, backend) => {
  const r = await build(t, backend);
  const url = `/api/results/e1/2/image?store=${STORE_A}`;
  assert.equal((await put(r, url, JPEG, 'image/jpeg', sha(JPEG), {})).statusCode, 401);
  const logger = pino({ level: 'silent' });
  const images = r.openImages();
  const open = await buildApp({ store: r.store, identity: r.creds.identity, logger, images: { images, maxImageBytes: 1 << 20 }, auth: { enabled: false } });
  t.after(async () => {
    await open.close();
    await images.close();
  });
  const res = await open.inject({ method: 'PUT', url, payload: JPEG, headers: { 'content-type': 'image/jpeg', 'x-osprey-sha256': sha(JPEG) } });
  assert.equal(res.statusCode, 201, res.body);
});
