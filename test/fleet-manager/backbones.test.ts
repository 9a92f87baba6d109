/**
 * The fleet's backbone registry at start (issue 15): with OSPREY_DATA set and no backbone yet,
 * `osprey fleet` and `osprey demo` (both createFleetManager) register the shared SqueezeNet,
 * once, copied into the fleet's data dir by sha256; a configured default that is neither a
 * backbone nor a file is a clear config error. The records on real SQLite and on real
 * PostgreSQL (the same cases); real files.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { pino } from 'pino';
import { openSqliteBackboneStore, type BackboneStore } from '../../fleet-manager/backbone-store.js';
import { createBackbones } from '../../fleet-manager/backbones.js';
import { BACKBONE_PG_MIGRATIONS, pgBackboneStore } from '../../fleet-manager/pg/backbone-store-pg.js';
import { BLOB_PG_MIGRATIONS, pgBlobStore } from '../../fleet-manager/pg/blob-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { zooSqueezenet11 } from '../helpers/backbone-graphs.js';
import { postgresSkip } from '../helpers/postgres.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { makeTempDir } from '../helpers/temp-dir.js';

type Backend = 'sqlite' | 'postgres';

async function openStore(t: TestContext, backend: Backend, dir: string): Promise<BackboneStore> {
  const store = backend === 'sqlite' ? openSqliteBackboneStore(join(dir, 'fleet.db')) : pgBackboneStore(await pgTestPool(t, BACKBONE_PG_MIGRATIONS));
  t.after(() => store.close());
  return store;
}

async function openIn(t: TestContext, backend: Backend) {
  const dir = await makeTempDir(t, 'osprey-backbones-');
  const store = await openStore(t, backend, dir);
  return { dir, backbones: createBackbones({ store, dataDir: dir, logger: pino({ level: 'silent' }) }) };
}

for (const backend of ['sqlite', 'postgres'] as const) {
  const pgSkip = backend === 'postgres' ? postgresSkip() : false;
  const open = (t: TestContext) => openIn(t, backend);

  test(`backbones (${backend}): with OSPREY_DATA and no backbone, the SqueezeNet is registered once and is the default`, { skip: pgSkip || dataSkip('models/squeezenet-fp16') }, async (t) => {
    const { dir, backbones } = await open(t);
    const data = ospreyDataDir();
    assert.equal(await backbones.ensureDefault(null, data), null);
    assert.equal(await backbones.ensureDefault(null, data), null);
    const list = await backbones.list();
    assert.deepEqual(list.map((b) => [b.name, b.uploadedBy]), [['squeezenet-fp16', 'fleet']]);
    const bytes = await readFile(join(data, 'models', 'squeezenet-fp16', 'model.onnx'));
    assert.equal(list[0]!.sha256, createHash('sha256').update(bytes).digest('hex'));
    const { file } = await backbones.resolve('squeezenet-fp16');
    assert.equal(file, join(dir, 'backbones', list[0]!.sha256.slice(0, 2), list[0]!.sha256));
    assert.deepEqual(await readFile(file), bytes);
    assert.equal(await backbones.defaultName(null), 'squeezenet-fp16');
    // A configured name wins; a configured path is registered under its folder's name.
    assert.equal(await backbones.ensureDefault(join(data, 'models', 'squeezenet-fp16'), undefined), 'squeezenet-fp16');
  });

  test(`backbones (${backend}): no OSPREY_DATA and nothing configured: no backbone, no default; a configured default that does not exist is a config error`, { skip: pgSkip }, async (t) => {
    const { backbones } = await open(t);
    assert.equal(await backbones.ensureDefault(null, undefined), null);
    assert.deepEqual(await backbones.list(), []);
    assert.equal(await backbones.defaultName(null), null);
    await assert.rejects(backbones.ensureDefault('/nowhere/backbone.onnx', undefined), { code: 'OSP_ERR_CONFIG', message: /^training\.defaultBackbone \/nowhere\/backbone\.onnx is neither a backbone in the fleet nor a file$/ });
    await assert.rejects(backbones.resolve('missing'), { code: 'OSP_ERR_NOT_FOUND' });
  });

  test(`backbone store (${backend}): a name is taken once; records list oldest first, delete answers what went, countSha counts names per file`, { skip: pgSkip }, async (t) => {
    const store = await openStore(t, backend, await makeTempDir(t, 'osprey-backbones-'));
    const rec = (name: string, sha: string, createdAt: number) => ({ name, sha256: sha.repeat(64), size: 6_000_000_000, uploadedBy: 'user:alice', createdAt });
    assert.equal(await store.insert(rec('resnet', 'b', 20)), true);
    assert.equal(await store.insert(rec('squeeze', 'a', 10)), true);
    assert.equal(await store.insert(rec('squeeze-copy', 'a', 20)), true);
    assert.equal(await store.insert(rec('squeeze', 'c', 30)), false, 'a name is taken once');
    assert.deepEqual(await store.get('squeeze'), rec('squeeze', 'a', 10));
    assert.equal(await store.get('missing'), null);
    assert.deepEqual((await store.list()).map((b) => b.name), ['squeeze', 'resnet', 'squeeze-copy']);
    assert.equal(await store.countSha('a'.repeat(64)), 2);
    assert.deepEqual(await store.delete('squeeze'), rec('squeeze', 'a', 10));
    assert.equal(await store.delete('squeeze'), null);
    assert.equal(await store.countSha('a'.repeat(64)), 1);
    assert.equal(await store.countSha('f'.repeat(64)), 0);
  });
}

test('backbones (postgres): added through one instance, resolved through another with its own data directory (fetched from the database); removing the last name deletes the bytes there', { skip: postgresSkip() }, async (t) => {
  const pool = await pgTestPool(t, [...BACKBONE_PG_MIGRATIONS, ...BLOB_PG_MIGRATIONS]);
  const store = pgBackboneStore(pool);
  const blobs = pgBlobStore(pool);
  const open = async () => {
    const dir = await makeTempDir(t, 'osprey-backbones-');
    return { dir, backbones: createBackbones({ store, dataDir: dir, logger: pino({ level: 'silent' }), blobs }) };
  };
  const a = await open();
  const b = await open();
  const bytes = zooSqueezenet11({ width: 0.25 }).bytes;
  const upload = join(a.backbones.uploadDir, 'upload.onnx');
  await writeFile(upload, bytes);
  const rec = await a.backbones.add('tiny', upload, 'test');
  assert.equal(rec.sha256, createHash('sha256').update(bytes).digest('hex'));

  const { file } = await b.backbones.resolve('tiny');
  assert.equal(file, join(b.dir, 'backbones', rec.sha256.slice(0, 2), rec.sha256));
  assert.deepEqual(await readFile(file), Buffer.from(bytes));

  await a.backbones.remove('tiny');
  assert.equal(await blobs.read('backbones', rec.sha256), null);
  await assert.rejects(b.backbones.resolve('tiny'), /backbone tiny is not in the fleet/);
});
