/**
 * Result images at the fleet (issue 5): content-addressed blobs, idempotent uploads, download
 * beside the result, and the result view saying whether an image exists. Real SQLite, real files.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { openSqliteImageStore } from '../../fleet-manager/image-store.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { results, tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('a defect, honestly')]);
const PNG = Buffer.concat([Buffer.from('\x89PNG\r\n\x1a\n', 'latin1'), Buffer.from('another')]);
const STORE_A = 'storeAAAAAAAAAAA';
const STORE_B = 'storeBBBBBBBBBBB';

async function build(t: TestContext) {
  const dir = await tempDir(t);
  const logger = pino({ level: 'silent' });
  const file = join(dir, 'fleet.db');
  const store = openSqliteStore({ file, logger });
  const images = openSqliteImageStore({ file, dir: join(dir, 'images'), logger });
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
  // Images come from the edge that produced them (its enrolled credential); people read them.
  const edge = { authorization: `Bearer ${await creds.enrollEdge('e1')}` };
  const admin = await creds.headers('admin');
  const put = (url: string, body: Buffer, type = 'image/jpeg', hash: string | undefined = sha(body)) =>
    app.inject({ method: 'PUT', url, payload: body, headers: { ...edge, 'content-type': type, ...(hash ? { 'x-osprey-sha256': hash } : {}) } });
  const get = (url: string) => app.inject({ url, headers: admin });
  return { app, dir, put, get };
}

test('an upload is stored by sha256, repeated uploads are no-ops, and the image is served with its result', async (t) => {
  const { put, get, dir } = await build(t);
  const url = `/api/results/e1/2/image?store=${STORE_A}`;
  const first = await put(url, JPEG);
  assert.equal(first.statusCode, 201);
  assert.deepEqual(first.json(), { edgeId: 'e1', storeId: STORE_A, seq: 2, sha256: sha(JPEG), bytes: JPEG.length, contentType: 'image/jpeg', created: true });
  const again = await put(url, JPEG);
  assert.equal(again.statusCode, 200);
  assert.equal(again.json().created, false);

  const got = await get(url);
  assert.equal(got.statusCode, 200);
  assert.equal(got.headers['content-type'], 'image/jpeg');
  assert.equal(got.headers.etag, `"${sha(JPEG)}"`);
  assert.deepEqual(got.rawPayload, JPEG);
  // Only one store has seq 2 with an image, so ?store= may be left out.
  assert.deepEqual((await get('/api/results/e1/2/image')).rawPayload, JPEG);

  // The same bytes for another result share the blob.
  assert.equal((await put(`/api/results/e1/3/image?store=${STORE_A}`, JPEG)).statusCode, 201);
  const blobs = (await readdir(join(dir, 'images', sha(JPEG).slice(0, 2)))).filter((n) => !n.endsWith('.tmp'));
  assert.deepEqual(blobs, [sha(JPEG)]);

  const view = (await get('/api/results?edge=e1')).json() as { items: { seq: number; storeId: string; hasImage: boolean }[] };
  const withImage = view.items.filter((i) => i.hasImage).map((i) => `${i.storeId}/${i.seq}`).sort();
  assert.deepEqual(withImage, [`${STORE_A}/2`, `${STORE_A}/3`]);
});

test('wrong checksum, another image for the same result, and ambiguous seqs are refused clearly', async (t) => {
  const { put, get } = await build(t);
  const bad = await put(`/api/results/e1/1/image?store=${STORE_A}`, JPEG, 'image/jpeg', sha(PNG));
  assert.equal(bad.statusCode, 422);
  assert.equal(bad.json().error, 'OSP_ERR_IMAGE_CHECKSUM');

  assert.equal((await put(`/api/results/e1/1/image?store=${STORE_A}`, JPEG)).statusCode, 201);
  const other = await put(`/api/results/e1/1/image?store=${STORE_A}`, PNG, 'image/png');
  assert.equal(other.statusCode, 409);
  assert.equal(other.json().error, 'OSP_ERR_CONFLICT');

  // seq 1 exists in both stores of e1 (a replaced database): the store must be named.
  assert.equal((await put(`/api/results/e1/1/image?store=${STORE_B}`, PNG, 'image/png', undefined)).statusCode, 201);
  const ambiguous = await get('/api/results/e1/1/image');
  assert.equal(ambiguous.statusCode, 409);
  assert.match(ambiguous.json().message, /add \?store=/);
  assert.deepEqual((await get(`/api/results/e1/1/image?store=${STORE_B}`)).rawPayload, PNG);

  const missing = await get('/api/results/e1/3/image');
  assert.equal(missing.statusCode, 404);
  assert.equal(missing.json().error, 'OSP_ERR_NOT_FOUND');
  assert.equal((await put('/api/results/e1/1/image', Buffer.from('{}'), 'application/json')).statusCode, 415);
  assert.equal((await put('/api/results/e1/0/image', JPEG)).statusCode, 400);
});
