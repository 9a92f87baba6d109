/**
 * Two fleet instances on one PostgreSQL database with different data directories (issue 18): a
 * model uploaded through one is downloaded through the other (whole and by Range), an image
 * stored through one is read through the other, although no folder is shared — the database
 * holds every blob's bytes and each instance fetches what it lacks (fleet-manager/blob-cache.ts).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { blobPath } from '../../fleet-manager/blob-files.js';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { openStorage, type StorageSettings } from '../../fleet-manager/storage.js';
import { pgDatabaseUrl } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { register } from './control-helpers.js';
import { results, T0, tempDir } from './helpers.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const NO_AUTH = { authorization: 'Bearer unused-with-auth-off' };

async function startInstance(t: TestContext, url: string, dataDir: string): Promise<string> {
  const fm = createFleetManager({
    dataDir,
    storage: { url },
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    auth: { enabled: false },
    registry: { publisherKeys: [testPublisherKey()] },
    logger: pino({ level: 'silent' }),
  });
  t.after(() => fm.close());
  return (await fm.start()).httpUrl;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; bytes: Buffer }> {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

test('PostgreSQL, two instances, no shared folder: an artifact uploaded through A downloads through B (whole and by Range), an image stored through A reads through B', { skip: postgresSkip(), timeout: 60_000 }, async (t) => {
  const url = await pgDatabaseUrl();
  const dirA = join(await tempDir(t), 'a');
  const dirB = join(await tempDir(t), 'b');
  const a = await startInstance(t, url, dirA);
  const b = await startInstance(t, url, dirB);

  // A model package through A.
  const sha256 = await register(a, 'inspect', '1', NO_AUTH);
  const fromA = await get(`${a}/api/artifacts/${sha256}`);
  assert.equal(fromA.status, 200);
  assert.equal(sha(fromA.bytes), sha256);
  assert.equal(await stat(blobPath(join(dirB, 'artifacts'), sha256)).catch(() => null), null, 'B has no file of it yet');

  // Through B: the same bytes, fetched from the database into B's cache.
  const fromB = await get(`${b}/api/artifacts/${sha256}`);
  assert.equal(fromB.status, 200, fromB.bytes.toString());
  assert.equal(sha(fromB.bytes), sha256);
  assert.deepEqual(fromB.bytes, fromA.bytes);
  assert.equal((await stat(blobPath(join(dirB, 'artifacts'), sha256))).size, fromA.bytes.length);
  const range = await get(`${b}/api/artifacts/${sha256}`, { range: 'bytes=10-99' });
  assert.equal(range.status, 206);
  assert.equal(range.headers.get('content-range'), `bytes 10-99/${fromA.bytes.length}`);
  assert.deepEqual(range.bytes, fromA.bytes.subarray(10, 100));
  // A Range request as the first read on an instance (a third data directory: nothing cached).
  const dirC = join(await tempDir(t), 'c');
  const c = await startInstance(t, url, dirC);
  const rangeC = await get(`${c}/api/artifacts/${sha256}`, { range: 'bytes=-50' });
  assert.equal(rangeC.status, 206);
  assert.deepEqual(rangeC.bytes, fromA.bytes.subarray(fromA.bytes.length - 50));
  // The packed card route reads the archive too.
  assert.equal((await get(`${c}/api/models/inspect/versions/1/card`)).status, 404, 'no card in a test package: a 404 naming it, not a 500');

  // An image: the edge's results are in the database (as ingest puts them), its frame uploaded through A.
  const seed = await openStorage({ ...settings(join(await tempDir(t), 'seed')), url, logger: pino({ level: 'silent' }) });
  t.after(() => seed.close());
  await seed.fleet.ingestResults('e1', results(1, 3), { receivedAt: T0 });
  const jpeg = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), randomBytes(3000)]);
  const put = await fetch(`${a}/api/results/e1/2/image`, { method: 'PUT', body: jpeg, headers: { 'content-type': 'image/jpeg' } });
  assert.equal(put.status, 201, await put.text());
  const img = await get(`${b}/api/results/e1/2/image`);
  assert.equal(img.status, 200, img.bytes.toString());
  assert.deepEqual(img.bytes, jpeg);
  assert.equal(img.headers.get('x-osprey-sha256'), sha(jpeg));
});

function settings(dataDir: string): StorageSettings {
  return { dataDir, imagesMaxBytes: 1e9, maxAlerts: 100, maxOutbox: 100 };
}
