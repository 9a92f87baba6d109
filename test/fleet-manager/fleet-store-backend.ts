/**
 * A FleetStore of either backend for the behaviour tests (issue 18, run by testBackends): SQLite in a
 * temp dir, or PostgreSQL on a fresh database of the file's private server (test/helpers/pg-database.ts).
 * `rows` lets a test recount what the store keeps with its own SQL, written once for both.
 */
import type { TestContext } from 'node:test';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino, type Logger } from 'pino';
import type pg from 'pg';
import { openSqliteStore, type FleetStore } from '../../fleet-manager/store.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { FLEET_PG_MIGRATIONS, pgFleetStore } from '../../fleet-manager/pg/fleet-store-pg.js';
import { pgDatabaseUrl } from '../helpers/pg-database.js';
import type { StoreBackend } from '../helpers/store-backends.js';
import { tempDir } from './helpers.js';

export interface FleetStoreUnderTest {
  store: FleetStore;
  /** Another store on the same database (a restarted or second fleet instance), closed after the test. */
  open(): Promise<FleetStore>;
  /** A read-only query of the test's own; `$1`-style parameters in both backends. */
  rows<T = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<T[]>;
  /** SQLite only: the database file. */
  file?: string;
  /** PostgreSQL only: the database URL. */
  url?: string;
}

const silent = pino({ level: 'silent' });

/** A fresh, empty fleet database of `backend` and a store on it (silent unless given a logger); everything is closed after the test. */
export async function openFleetStore(t: TestContext, backend: StoreBackend, logger: Logger = silent): Promise<FleetStoreUnderTest> {
  if (backend === 'sqlite') {
    const file = join(await tempDir(t), 'fleet.db');
    const open = async () => {
      const store = openSqliteStore({ file, logger });
      t.after(() => store.close());
      return store;
    };
    const store = await open();
    let db: Database.Database | undefined;
    t.after(() => db?.close());
    return {
      store,
      open,
      file,
      async rows<T>(sql: string, params: unknown[] = []) {
        db ??= new Database(file, { readonly: true });
        return sqliteRows<T>(db, sql, params);
      },
    };
  }
  const url = await pgDatabaseUrl();
  const pools: pg.Pool[] = [];
  const open = async () => {
    const pool = openPgPool(url);
    pools.push(pool);
    await migratePg(pool, FLEET_PG_MIGRATIONS);
    const store = pgFleetStore(pool, { logger });
    t.after(async () => {
      await store.close();
      await pool.end();
    });
    return store;
  };
  const store = await open();
  return {
    store,
    open,
    url,
    async rows<T>(sql: string, params: unknown[] = []) {
      return (await pools[0]!.query(sql, params)).rows as T[];
    },
  };
}

/** `rows` on a SQLite database: `$1`, `$2`… bound as the named parameters @p1, @p2… */
export function sqliteRows<T>(db: Database.Database, sql: string, params: unknown[] = []): T[] {
  const named = Object.fromEntries(params.map((v, i) => [`p${i + 1}`, v]));
  return db.prepare(sql.replace(/\$(\d+)/g, '@p$1')).all(named) as T[];
}
