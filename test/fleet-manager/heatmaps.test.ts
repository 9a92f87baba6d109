/**
 * Anomaly heatmaps at the fleet (issue 16): a second kind beside a result's image, uploaded by
 * the result's own edge only (`PUT /api/results/:edgeId/:seq/heatmap`, PNG, checksummed), served
 * to `results:read` (`GET …/heatmap`), and announced in the result listing (`hasHeatmap`). Real
 * SQLite, real files, real HTTP on port 0; the image store's links on SQLite and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openSqliteImageStore } from '../../fleet-manager/image-store.js';
import { IMAGE_PG_MIGRATIONS, pgImageStore } from '../../fleet-manager/pg/image-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { renderHeatmap } from '../../models/postprocess/heatmap.js';
import { openTestIdentity } from '../helpers/identity.js';
import { results, tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const JPEG = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('a frame')]);
const STORE = 'storeAAAAAAAAAAA';

async function rig(t: TestContext, backend: StoreBackend) {
  const dir = await tempDir(t);
  const logger = pino({ level: 'silent' });
  const file = join(dir, 'fleet.db');
  const store = openSqliteStore({ file, logger });
  const images =
    backend === 'postgres'
      ? pgImageStore(await pgTestPool(t, IMAGE_PG_MIGRATIONS), { dir: join(dir, 'images'), logger })
      : openSqliteImageStore({ file, dir: join(dir, 'images'), logger });
  const creds = openTestIdentity(t, file);
  const app = await buildApp({ store, identity: creds.identity, logger, images: { images, maxImageBytes: 1 << 20 } });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(async () => {
    await app.close();
    await images.close();
    await store.close();
  });
  await store.ingestResults('e1', results(1, 3), { receivedAt: Date.now() }, STORE);
  await store.ingestResults('e2', results(1, 1), { receivedAt: Date.now() }, STORE);
  const auth = {
    e1: { authorization: `Bearer ${await creds.enrollEdge('e1')}` },
    e2: { authorization: `Bearer ${await creds.enrollEdge('e2')}` },
    inspector: await creds.headers('inspector'),
    viewer: await creds.headers('viewer'),
    operator: await creds.headers('operator'),
    none: {} as Record<string, string>,
  };
  const call = async (method: string, path: string, headers: Record<string, string>, body?: Buffer) => {
    const res = await fetch(base + path, { method, headers, ...(body ? { body } : {}) });
    const bytes = Buffer.from(await res.arrayBuffer());
    return { status: res.status, headers: res.headers, bytes, text: bytes.toString('utf8') };
  };
  const put = (path: string, body: Buffer, who: Record<string, string>, type = 'image/png', hash = sha(body)) =>
    call('PUT', path, { ...who, 'content-type': type, 'x-osprey-sha256': hash }, body);
  return { call, put, auth };
}

testBackends("a heatmap is stored beside its result's image, served to results:read, and announced in the listing", async (t, backend) => {
  const { call, put, auth } = await rig(t, backend);
  const heat = await renderHeatmap(new Float32Array([0, 0.2, 0.9, 1]), 2, 2);
  assert.equal((await put(`/api/results/e1/2/image?store=${STORE}`, JPEG, auth.e1, 'image/jpeg')).status, 201);
  const first = await put(`/api/results/e1/2/heatmap?store=${STORE}`, heat, auth.e1);
  assert.equal(first.status, 201, first.text);
  assert.deepEqual(JSON.parse(first.text), { edgeId: 'e1', storeId: STORE, seq: 2, sha256: sha(heat), bytes: heat.length, contentType: 'image/png', created: true });
  assert.equal((await put(`/api/results/e1/2/heatmap?store=${STORE}`, heat, auth.e1)).status, 200, 'a repeated upload is a no-op');

  // An inspector reads it (results:read); the image of the same result is still the image.
  const got = await call('GET', `/api/results/e1/2/heatmap?store=${STORE}`, auth.inspector);
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-type'), 'image/png');
  assert.deepEqual(got.bytes, heat);
  assert.deepEqual((await call('GET', '/api/results/e1/2/heatmap', auth.inspector)).bytes, heat, 'one store: ?store= may be left out');
  assert.deepEqual((await call('GET', `/api/results/e1/2/image?store=${STORE}`, auth.inspector)).bytes, JPEG);

  const list = JSON.parse((await call('GET', '/api/results?edge=e1', auth.inspector)).text) as { items: { seq: number; hasImage: boolean; hasHeatmap?: boolean }[] };
  assert.deepEqual(
    list.items.map((i) => [i.seq, i.hasImage, i.hasHeatmap ?? false]).sort(),
    [[1, false, false], [2, true, true], [3, false, false]],
  );
});

testBackends("heatmap uploads: only the result's own edge, PNG only, checksummed, one per result; reads need results:read; one-line errors", async (t, backend) => {
  const { call, put, auth } = await rig(t, backend);
  const heat = await renderHeatmap(new Float32Array([0, 1, 1, 0]), 2, 2);
  const other = await renderHeatmap(new Float32Array([1, 0, 0, 1]), 2, 2);
  const url = `/api/results/e1/1/heatmap?store=${STORE}`;
  const refusals: [string, Awaited<ReturnType<typeof put>>, number, RegExp][] = [
    ['another edge', await put(url, heat, auth.e2), 403, /edge e2 cannot upload images of edge e1/],
    ['an operator (a person)', await put(url, heat, auth.operator), 403, /needs the permission images:upload, which the role operator does not have/],
    ['no credential', await put(url, heat, auth.none), 401, /./],
    ['not a PNG', await put(url, JPEG, auth.e1, 'image/jpeg'), 415, /a heatmap is sent as image\/png, not image\/jpeg/],
    ['wrong checksum', await put(url, heat, auth.e1, 'image/png', sha(other)), 422, /sha256 is [0-9a-f]{64}, the sender named/],
    ['a seq the edge has not produced', await put(`/api/results/e1/9/heatmap?store=${STORE}`, heat, auth.e1), 503, /not known to the fleet yet/],
  ];
  for (const [who, res, status, message] of refusals) {
    assert.equal(res.status, status, `${who}: ${res.text}`);
    const body = JSON.parse(res.text) as { error: string; message: string };
    assert.match(body.message, message, who);
    assert.doesNotMatch(body.message, /\n/, `${who}: one line`);
  }
  assert.equal((await call('GET', url, auth.inspector)).status, 404, 'nothing was stored by the refused uploads');
  const missing = JSON.parse((await call('GET', url, auth.inspector)).text) as { error: string; message: string };
  assert.deepEqual(missing, { error: 'OSP_ERR_NOT_FOUND', message: `no heatmap for result e1/1 (store ${STORE})` });

  assert.equal((await put(url, heat, auth.e1)).status, 201);
  const conflict = await put(url, other, auth.e1);
  assert.equal(conflict.status, 409, 'another heatmap for the same result is a conflict, never a replacement');
  assert.match(JSON.parse(conflict.text).message, /already has another heatmap/);
  assert.equal((await call('GET', url, auth.none)).status, 401, 'reading needs a credential');
  assert.equal((await call('GET', url, auth.viewer)).status, 403, 'a viewer does not read results (no results:read)');
  assert.equal((await call('GET', url, auth.e2)).status, 403, 'an edge credential does not read results');
});
