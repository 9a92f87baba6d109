/**
 * PostgreSQL plumbing (fleet-manager/pg/pg-db.ts) against a real server: migrations applied once
 * when several instances start together, 64-bit integers read as numbers, and rollback on throw.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { migratePg, openPgPool, withTransaction } from '../../fleet-manager/pg/pg-db.js';
import { pgDatabaseUrl } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';

const skip = postgresSkip();

test('migrations run exactly once when four instances start together', { skip }, async (t) => {
  const url = await pgDatabaseUrl();
  const pools = Array.from({ length: 4 }, () => openPgPool(url, { max: 2 }));
  t.after(() => Promise.all(pools.map((p) => p.end())));
  const migrations = [
    { id: 'test-1', sql: 'CREATE TABLE things (id BIGSERIAL PRIMARY KEY, at BIGINT NOT NULL)' },
    // Not idempotent: a second run would fail the transaction.
    { id: 'test-2', sql: 'ALTER TABLE things ADD COLUMN name TEXT' },
  ];
  const applied = await Promise.all(pools.map((p) => migratePg(p, migrations)));
  assert.deepEqual(applied.flat().sort(), ['test-1', 'test-2']);
  // A later release adds a step: only it runs.
  assert.deepEqual(await migratePg(pools[0]!, [...migrations, { id: 'test-3', sql: 'CREATE INDEX things_at ON things (at)' }]), ['test-3']);
  assert.deepEqual((await pools[1]!.query('SELECT id FROM osprey_migrations ORDER BY id')).rows.map((r) => r.id), ['test-1', 'test-2', 'test-3']);
});

test('64-bit integers and sums come back as numbers; a throw rolls the transaction back', { skip }, async (t) => {
  const pool = openPgPool(await pgDatabaseUrl());
  t.after(() => pool.end());
  await migratePg(pool, [{ id: 't', sql: 'CREATE TABLE n (v BIGINT NOT NULL)' }]);
  const ms = 1_765_000_000_123;
  await pool.query('INSERT INTO n (v) VALUES ($1), ($2)', [ms, 2]);
  const row = (await pool.query('SELECT max(v) AS m, count(*) AS c, sum(v) AS s FROM n')).rows[0];
  assert.deepEqual(row, { m: ms, c: 2, s: ms + 2 });
  await assert.rejects(
    withTransaction(pool, async (c) => {
      await c.query('INSERT INTO n (v) VALUES (3)');
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.equal((await pool.query('SELECT count(*) AS c FROM n')).rows[0].c, 2);
});
