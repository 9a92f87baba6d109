/**
 * The PostgreSQL blob store (fleet-manager/pg/blob-store-pg.ts) and the local cache over it
 * (fleet-manager/blob-cache.ts), on a real PostgreSQL server.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { blobPath } from '../../fleet-manager/blob-files.js';
import { ensureLocal } from '../../fleet-manager/blob-cache.js';
import { FILES_ONLY_BLOBS } from '../../fleet-manager/blob-store.js';
import { BLOB_PG_MIGRATIONS, pgBlobStore } from '../../fleet-manager/pg/blob-store-pg.js';
import { OspreyError } from '../../protocol/errors.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { tempDir } from './helpers.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const PART = 64 * 1024;

async function blobFile(dir: string, bytes: Buffer): Promise<{ file: string; sha256: string }> {
  const sha256 = sha(bytes);
  const file = join(dir, `${sha256}.src`);
  await writeFile(file, bytes);
  return { file, sha256 };
}

async function collect(parts: AsyncIterable<Buffer>): Promise<Buffer> {
  const all: Buffer[] = [];
  for await (const p of parts) all.push(p);
  return Buffer.concat(all);
}

test('PostgreSQL blob store: a blob of several parts comes back byte for byte; a second put changes nothing; delete forgets it', { skip: postgresSkip() }, async (t) => {
  const pool = await pgTestPool(t, BLOB_PG_MIGRATIONS);
  const blobs = pgBlobStore(pool, { partBytes: PART });
  const dir = await tempDir(t);
  const bytes = randomBytes(PART * 3 + 123);
  const { file, sha256 } = await blobFile(dir, bytes);

  await blobs.put('artifacts', sha256, file);
  const parts = (await pool.query<{ part: number; n: number }>('SELECT part, length(bytes) AS n FROM osprey_blob_parts WHERE sha256 = $1 ORDER BY part', [sha256])).rows;
  assert.deepEqual(parts, [{ part: 0, n: PART }, { part: 1, n: PART }, { part: 2, n: PART }, { part: 3, n: 123 }]);
  assert.deepEqual(await collect((await blobs.read('artifacts', sha256))!), bytes);
  // Scopes are namespaces of their own.
  assert.equal(await blobs.read('images', sha256), null);

  await blobs.put('artifacts', sha256, file); // idempotent
  assert.equal((await pool.query('SELECT * FROM osprey_blob_parts')).rowCount, 4);
  assert.equal((await pool.query('SELECT * FROM osprey_blobs')).rowCount, 1);

  // An empty blob is one empty part.
  const empty = await blobFile(dir, Buffer.alloc(0));
  await blobs.put('images', empty.sha256, empty.file);
  assert.deepEqual(await collect((await blobs.read('images', empty.sha256))!), Buffer.alloc(0));

  await blobs.delete('artifacts', sha256);
  assert.equal(await blobs.read('artifacts', sha256), null);
  assert.equal((await pool.query('SELECT * FROM osprey_blob_parts WHERE sha256 = $1', [sha256])).rowCount, 0);
  await blobs.delete('artifacts', sha256); // absent: nothing
});

test('PostgreSQL blob store: a file that does not hash to the sha256 named is refused and nothing is stored', { skip: postgresSkip() }, async (t) => {
  const pool = await pgTestPool(t, BLOB_PG_MIGRATIONS);
  const blobs = pgBlobStore(pool, { partBytes: PART });
  const dir = await tempDir(t);
  const { file } = await blobFile(dir, randomBytes(PART + 1));
  const wrong = sha(Buffer.from('other'));
  await assert.rejects(blobs.put('images', wrong, file), /hashes to [0-9a-f]{64}, not [0-9a-f]{64}: not stored/);
  assert.equal((await pool.query('SELECT * FROM osprey_blob_parts')).rowCount, 0);
  assert.equal(await blobs.read('images', wrong), null);
});

test('ensureLocal fetches a missing file from PostgreSQL, verified; a missing or corrupt part is a clear error and leaves no file', { skip: postgresSkip() }, async (t) => {
  const pool = await pgTestPool(t, BLOB_PG_MIGRATIONS);
  const blobs = pgBlobStore(pool, { partBytes: PART });
  const src = await tempDir(t);
  const root = await tempDir(t);
  const bytes = randomBytes(PART * 2 + 7);
  const { file: source, sha256 } = await blobFile(src, bytes);
  await blobs.put('artifacts', sha256, source);

  const target = blobPath(root, sha256);
  assert.equal(await ensureLocal(blobs, 'artifacts', target, sha256), target);
  assert.deepEqual(await readFile(target), bytes);
  // Concurrent fetches of one blob: each its own temp file, one rename wins, same bytes.
  const other = await tempDir(t);
  const target2 = blobPath(other, sha256);
  await Promise.all([1, 2, 3, 4].map(() => ensureLocal(blobs, 'artifacts', target2, sha256)));
  assert.deepEqual(await readFile(target2), bytes);
  assert.deepEqual(await readdir(join(other, sha256.slice(0, 2))), [sha256]);

  // A corrupt part: the copy is refused, nothing lands under the blob's name.
  await pool.query("UPDATE osprey_blob_parts SET bytes = bytes || '\\x00'::bytea WHERE sha256 = $1 AND part = 1", [sha256]);
  const root2 = await tempDir(t);
  const t3 = blobPath(root2, sha256);
  await assert.rejects(ensureLocal(blobs, 'artifacts', t3, sha256), /artifacts blob [0-9a-f]{64} read from the database hashes to [0-9a-f]{64}: its stored parts are corrupt/);
  assert.equal(await stat(t3).catch(() => null), null);
  assert.deepEqual(await readdir(join(root2, sha256.slice(0, 2))), []);

  // A missing part: named.
  await pool.query('DELETE FROM osprey_blob_parts WHERE sha256 = $1 AND part = 2', [sha256]);
  await assert.rejects(ensureLocal(blobs, 'artifacts', t3, sha256), /artifacts blob [0-9a-f]{64}: part 2 of 3 is missing from the database/);
  assert.deepEqual(await readdir(join(root2, sha256.slice(0, 2))), []);

  // Neither here nor in the database: not found, not a crash.
  const absent = sha(Buffer.from('absent'));
  await assert.rejects(ensureLocal(blobs, 'images', blobPath(root2, absent), absent), (err: unknown) => err instanceof OspreyError && err.code === 'OSP_ERR_NOT_FOUND' && /neither in this instance's files nor in the database/.test(err.message));
});

test('ensureLocal with files only (SQLite) returns the path as before, fetching nothing', async (t) => {
  const root = await tempDir(t);
  const absent = sha(Buffer.from('absent'));
  assert.equal(await ensureLocal(FILES_ONLY_BLOBS, 'images', blobPath(root, absent), absent), blobPath(root, absent));
});
