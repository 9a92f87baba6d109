/**
 * A fresh PostgreSQL database for one test: one server per test file (test/helpers/postgres.ts),
 * started on first use and stopped after the file's last test; each call makes a new database,
 * with `migrations` applied, and closes its pool after the test.
 */
import { after, type TestContext } from 'node:test';
import type pg from 'pg';
import { migratePg, openPgPool, type PgMigration } from '../../fleet-manager/pg/pg-db.js';
import { startPostgres, type Postgres } from './postgres.js';

let server: Promise<Postgres> | undefined;

/** The file's server (started once; stopped after the file's last test). */
export function sharedPostgres(): Promise<Postgres> {
  if (!server) {
    server = startPostgres();
    after(async () => {
      const s = await server!.catch(() => undefined);
      server = undefined;
      await s?.close();
    });
  }
  return server;
}

/** A new empty database's URL. */
export async function pgDatabaseUrl(): Promise<string> {
  return (await sharedPostgres()).createDatabase();
}

/** A pool on a new database with `migrations` applied, closed after the test. */
export async function pgTestPool(t: TestContext, migrations: readonly PgMigration[] = []): Promise<pg.Pool> {
  const pool = openPgPool(await pgDatabaseUrl());
  t.after(() => pool.end());
  await migratePg(pool, migrations);
  return pool;
}
