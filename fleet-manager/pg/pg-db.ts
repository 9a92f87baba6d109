/**
 * PostgreSQL plumbing shared by the PostgreSQL stores (issue 18): the connection pool (64-bit
 * integers and numerics read as JavaScript numbers: every id, count and epoch-ms time Osprey keeps
 * fits in 2^53), versioned migrations that run exactly once even when several fleet instances
 * start together, and transactions.
 */
import pg from 'pg';

/** One schema step: `id` is recorded in `osprey_migrations` once applied and never changed after release. */
export interface PgMigration {
  id: string;
  sql: string;
}

const INT8 = 20;
const NUMERIC = 1700;

/** Type parsers of the pool: int8 and numeric as numbers, everything else as pg reads it. */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === INT8 || oid === NUMERIC) return (v: string) => (v === null ? null : Number(v));
    return pg.types.getTypeParser(oid, format);
  },
} as unknown as pg.CustomTypesConfig;

export interface PgPoolOptions {
  /** Connections at most (default 10). */
  max?: number;
  /** application_name seen in pg_stat_activity (default osprey-fleet). */
  applicationName?: string;
}

/** A pool on `url` (postgres://user:pass@host:port/db, or ?host=/socket/dir for a Unix socket). */
export function openPgPool(url: string, opts: PgPoolOptions = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    application_name: opts.applicationName ?? 'osprey-fleet',
    types,
  });
  // An idle client that loses its server emits on the pool: without a listener that would crash
  // the process; the next query gets a fresh connection and the error.
  pool.on('error', () => {});
  return pool;
}

/** Runs `fn` in one transaction on one client: COMMIT when it resolves, ROLLBACK when it throws. */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  } finally {
    client.release();
  }
}

const NUL = '\u0000';
/** Whether `v` is text PostgreSQL would refuse: it holds NUL (U+0000), which no text column can. */
export const hasNul = (v: unknown): boolean => typeof v === 'string' && v.includes(NUL);
/**
 * Text as a PostgreSQL text column can hold it: NUL replaced by U+FFFD (anything not a string is
 * answered as it is). Text an edge sent (a label, an event's message, a line name) goes through it,
 * so one odd character never fails the statement and loses the rest of the report.
 */
export const noNul = <T>(v: T): T => (typeof v === 'string' ? (v.replaceAll(NUL, '\ufffd') as T) : v);

/** Key of the transaction-scoped advisory lock that serialises migrations between instances. */
const MIGRATION_LOCK = 0x05_9e_e1_01;

/**
 * Applies the migrations not yet recorded, in order, in one transaction under an advisory lock:
 * of several instances starting together, one applies them and the others wait, then find them
 * applied. Answers the ids applied now.
 */
export async function migratePg(pool: pg.Pool, migrations: readonly PgMigration[]): Promise<string[]> {
  const ids = new Set<string>();
  for (const m of migrations) {
    if (ids.has(m.id)) throw new Error(`migration id ${m.id} appears twice`);
    ids.add(m.id);
  }
  return withTransaction(pool, async (c) => {
    await c.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await c.query('CREATE TABLE IF NOT EXISTS osprey_migrations (id TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)');
    const done = new Set((await c.query<{ id: string }>('SELECT id FROM osprey_migrations')).rows.map((r) => r.id));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      await c.query(m.sql);
      await c.query('INSERT INTO osprey_migrations (id, applied_at) VALUES ($1, $2)', [m.id, Date.now()]);
      applied.push(m.id);
    }
    return applied;
  });
}
