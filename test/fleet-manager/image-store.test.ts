/**
 * The fleet's image store itself (issue 5, 16, 18), the same cases on SQLite and PostgreSQL links
 * (blobs are real files in a temp dir on both): the byte quota counts each distinct blob once,
 * kinds, conflicts and the derived occlusion map replacing its predecessor; and on PostgreSQL,
 * two fleet instances (two pools) storing new blobs at once share one quota and never pass it.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { openSqliteImageStore, type FleetImageStore } from '../../fleet-manager/image-store.js';
import { IMAGE_PG_MIGRATIONS, pgImageStore } from '../../fleet-manager/pg/image-store-pg.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { pgDatabaseUrl, pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { tempDir } from './helpers.js';

const logger = pino({ level: 'silent' });
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const key = (seq: number, storeId = 'sA') => ({ edgeId: 'e1', storeId, seq });

async function open(t: TestContext, backend: StoreBackend, maxBytes?: number): Promise<{ images: FleetImageStore; reopen(): FleetImageStore }> {
  const dir = await tempDir(t);
  const opts = { dir: join(dir, 'images'), logger, ...(maxBytes !== undefined && { maxBytes }) };
  const pool = backend === 'postgres' ? await pgTestPool(t, IMAGE_PG_MIGRATIONS) : undefined;
  const reopen = () => {
    const s = pool ? pgImageStore(pool, opts) : openSqliteImageStore({ file: join(dir, 'fleet.db'), ...opts });
    t.after(() => s.close());
    return s;
  };
  return { images: reopen(), reopen };
}

testBackends('the quota counts distinct blobs once, across kinds and restarts; a repeated image always fits', async (t, backend) => {
  const { images, reopen } = await open(t, backend, 4096);
  const a = Buffer.alloc(3000, 1);
  assert.equal((await images.put(key(1), a, 'image/jpeg')).created, true);
  assert.equal((await images.put(key(2), a, 'image/jpeg')).created, true, 'the same bytes for another result share the blob');
  assert.equal((await images.put(key(1), a, 'image/png', undefined, 'heatmap')).created, true, 'and for another kind');
  await assert.rejects(images.put(key(3), Buffer.alloc(2000, 2), 'image/jpeg'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'OSP_ERR_QUOTA');
    assert.equal(err.message, 'image store full: 3000 bytes used + 2000 would exceed images.maxBytes (4096)');
    return true;
  });
  assert.equal(await images.get(key(3)), null, 'nothing linked');
  assert.equal((await images.put(key(1), a, 'image/jpeg')).created, false, 'a repeat is no new space');
  assert.equal((await images.put(key(4), Buffer.alloc(1096, 3), 'image/jpeg')).created, true, 'exactly up to the quota');
  // Reopened (a restart): the quota still counts what is stored.
  await assert.rejects(reopen().put(key(5), Buffer.alloc(1, 4), 'image/jpeg'), { code: 'OSP_ERR_QUOTA' });
});

testBackends('get, find and has per kind; a checksum mismatch and another image for a result are refused; an occlusion map is replaced', async (t, backend) => {
  const { images } = await open(t, backend);
  const jpeg = Buffer.from('a frame');
  const png = Buffer.from('a heatmap');
  await assert.rejects(images.put(key(1), jpeg, 'image/jpeg', sha(png)), { code: 'OSP_ERR_IMAGE_CHECKSUM' });
  const stored = (await images.put(key(1), jpeg, 'image/jpeg', sha(jpeg).toUpperCase())).image;
  assert.deepEqual([stored.sha256, stored.bytes, stored.contentType, stored.seq], [sha(jpeg), jpeg.length, 'image/jpeg', 1]);
  assert.deepEqual(await readFile(stored.file), jpeg);
  await assert.rejects(images.put(key(1), png, 'image/png'), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'OSP_ERR_CONFLICT');
    assert.match(err.message, /^result e1\/1 \(store sA\) already has another image \([0-9a-f]{64}\)$/);
    return true;
  });
  await images.put(key(1), png, 'image/png', undefined, 'heatmap');
  await images.put(key(1, 'sB'), png, 'image/png');
  assert.equal((await images.get(key(1)))?.sha256, sha(jpeg));
  assert.equal((await images.get(key(1), 'heatmap'))?.sha256, sha(png));
  assert.equal(await images.get(key(2)), null);
  assert.deepEqual((await images.find('e1', 1)).map((i) => i.storeId).sort(), ['sA', 'sB']);
  assert.deepEqual((await images.find('e1', 1, 'heatmap')).map((i) => i.storeId), ['sA']);
  assert.deepEqual(await images.find('e2', 1), []);
  assert.deepEqual([...(await images.has([key(1), key(2), key(1, 'sB')]))].sort(), ['e1/sA/1', 'e1/sB/1']);
  assert.deepEqual([...(await images.has([key(1), key(1, 'sB')], 'heatmap'))], ['e1/sA/1']);
  assert.deepEqual([...(await images.has([]))], []);
  // The fleet's own occlusion map: a new computation replaces the old one.
  const occ1 = Buffer.from('occlusion 1');
  const occ2 = Buffer.from('occlusion 2');
  assert.equal((await images.put(key(1), occ1, 'image/png', undefined, 'occlusion')).created, true);
  const replaced = await images.put(key(1), occ2, 'image/png', undefined, 'occlusion');
  assert.deepEqual([replaced.created, replaced.image.sha256], [true, sha(occ2)]);
  assert.equal((await images.get(key(1), 'occlusion'))?.sha256, sha(occ2));
  assert.equal((await images.put(key(1), occ2, 'image/png', undefined, 'occlusion')).created, false);
});

test('PostgreSQL: two fleet instances storing new images at once share one quota and never pass it', { skip: postgresSkip() }, async (t) => {
  const dir = join(await tempDir(t), 'images');
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 4 }), openPgPool(url, { max: 4 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, IMAGE_PG_MIGRATIONS);
  const maxBytes = 10 * 1000;
  const [a, b] = pools.map((p) => pgImageStore(p, { dir, logger, maxBytes })) as [FleetImageStore, FleetImageStore];
  // 30 distinct 1000-byte images, plus each stored by both instances: room for 10.
  const puts = Array.from({ length: 30 }, (_, i) => Buffer.alloc(1000, i + 1)).flatMap((bytes, i) => [a.put(key(i + 1), bytes, 'image/jpeg'), b.put(key(i + 1), bytes, 'image/jpeg')]);
  const outcomes = await Promise.allSettled(puts);
  const refused = outcomes.filter((o) => o.status === 'rejected');
  for (const o of refused) assert.equal((o.reason as { code?: string }).code, 'OSP_ERR_QUOTA');
  const stored = new Set(outcomes.flatMap((o) => (o.status === 'fulfilled' ? [o.value.image.seq] : [])));
  assert.equal(stored.size, 10, 'exactly the quota of distinct images stored');
  const used = (await pools[1]!.query('SELECT used FROM image_budget')).rows[0].used;
  assert.equal(used, maxBytes);
  assert.deepEqual([...(await b.has([...stored].map((s) => key(s))))].length, 10);
});
