/**
 * Training jobs and their logs on PostgreSQL (issue 18): the same TrainingStore as
 * training-store.ts, a job kept whole as JSON (`doc`) beside the columns it is queried by. A job
 * row is locked (`FOR UPDATE`) while it is patched or its log grows, so concurrent updates of one
 * job never lose each other's changes and its log lines keep distinct, dense numbers. Several
 * instances claim from one queue: claimNext() locks the oldest queued row `FOR UPDATE SKIP LOCKED`
 * (a row another claimer holds is passed over, never taken twice), and the owner's writes, its
 * lease renewals and the sweep of expired leases are conditional on the row as it is when locked.
 */
import type { Logger } from 'pino';
import type pg from 'pg';
import { MAX_LOG_LINE, MAX_LOG_LINES, claimedJob, guardHolds, type TrainingJob, type TrainingState, type TrainingStore } from '../training-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

export const TRAINING_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'training-1',
    sql: `
CREATE TABLE training_jobs (
  id TEXT PRIMARY KEY,
  created_at BIGINT NOT NULL,
  state TEXT NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX training_jobs_state ON training_jobs (state, created_at);
CREATE TABLE training_logs (
  job_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  ts BIGINT NOT NULL,
  line TEXT NOT NULL,
  PRIMARY KEY (job_id, n)
);
`,
  },
  {
    // The instance running a job and until when its claim holds unless renewed (several instances).
    id: 'training-2',
    sql: `
ALTER TABLE training_jobs ADD COLUMN owner TEXT;
ALTER TABLE training_jobs ADD COLUMN lease_until BIGINT;
`,
  },
];

export interface PgTrainingStoreOptions {
  logger: Logger;
}

const parse = (row: { doc: string } | undefined): TrainingJob | null => (row ? (JSON.parse(row.doc) as TrainingJob) : null);
const cut = (line: string) => (line.length > MAX_LOG_LINE ? `${line.slice(0, MAX_LOG_LINE - 1)}…` : line);

/** The training store on a PostgreSQL pool (TRAINING_PG_MIGRATIONS applied by the caller). */
export function pgTrainingStore(pool: pg.Pool, opts: PgTrainingStoreOptions): TrainingStore {
  const jobs = async (sql: string, params: unknown[] = []) => (await pool.query<{ doc: string }>(sql, params)).rows.map((r) => JSON.parse(r.doc) as TrainingJob);
  // A job that leaves `running` loses its owner and lease.
  const save = (c: pg.PoolClient, job: TrainingJob) =>
    c.query(
      "UPDATE training_jobs SET state = $1, doc = $2, owner = CASE WHEN $1 = 'running' THEN owner END, lease_until = CASE WHEN $1 = 'running' THEN lease_until END WHERE id = $3",
      [job.state, JSON.stringify(job), job.id],
    );
  const lockedRow = async (c: pg.PoolClient, id: string) => (await c.query<{ doc: string; owner: string | null }>('SELECT doc, owner FROM training_jobs WHERE id = $1 FOR UPDATE', [id])).rows[0];
  const locked = async (c: pg.PoolClient, id: string) => parse(await lockedRow(c, id));

  return {
    async insertJob(job) {
      await pool.query('INSERT INTO training_jobs (id, created_at, state, doc) VALUES ($1, $2, $3, $4)', [job.id, job.createdAt, job.state, JSON.stringify(job)]);
    },
    async getJob(id) {
      return parse((await pool.query<{ doc: string }>('SELECT doc FROM training_jobs WHERE id = $1', [id])).rows[0]);
    },
    listJobs: (limit) => jobs('SELECT doc FROM training_jobs ORDER BY created_at DESC, id DESC LIMIT $1', [limit]),
    async claimNext(owner, now, leaseMs) {
      return withTransaction(pool, async (c) => {
        const job = parse(
          (await c.query<{ doc: string }>("SELECT doc FROM training_jobs WHERE state = 'queued' ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED")).rows[0],
        );
        if (!job) return null;
        const next = claimedJob(job);
        await c.query("UPDATE training_jobs SET state = 'running', doc = $1, owner = $2, lease_until = $3 WHERE id = $4", [JSON.stringify(next), owner, now + leaseMs, job.id]);
        return next;
      });
    },
    async renewLease(id, owner, now, leaseMs) {
      const r = await pool.query("UPDATE training_jobs SET lease_until = $1 WHERE id = $2 AND state = 'running' AND owner = $3", [now + leaseMs, id, owner]);
      return (r.rowCount ?? 0) > 0;
    },
    async countByState() {
      const r = await pool.query<{ state: TrainingState; n: number }>('SELECT state, count(*) AS n FROM training_jobs GROUP BY state');
      return Object.fromEntries(r.rows.map((x) => [x.state, x.n]));
    },
    async updateJob(id, patch, guard) {
      return withTransaction(pool, async (c) => {
        const row = await lockedRow(c, id);
        const job = parse(row);
        if (!job || !guardHolds(guard, job.state, row!.owner)) return null;
        const next = { ...job, ...patch };
        await save(c, next);
        return next;
      });
    },
    async appendLog(id, lines) {
      if (lines.length === 0) return;
      await withTransaction(pool, async (c) => {
        // The job's row lock orders appends to one log (as SQLite's single writer does).
        const job = await locked(c, id);
        let n = (await c.query<{ n: number }>('SELECT count(*) AS n FROM training_logs WHERE job_id = $1', [id])).rows[0]!.n;
        const keep = lines.slice(0, Math.max(0, MAX_LOG_LINES - n));
        const dropped = lines.length - keep.length;
        if (keep.length > 0) {
          await c.query(
            'INSERT INTO training_logs (job_id, n, ts, line) SELECT $1, n, ts, line FROM unnest($2::int[], $3::bigint[], $4::text[]) AS l (n, ts, line)',
            [id, keep.map(() => n++), keep.map((l) => l.ts), keep.map((l) => cut(l.line))],
          );
        }
        if (dropped > 0 && job) await save(c, { ...job, droppedLogLines: job.droppedLogLines + dropped });
      });
    },
    async logs(id, limit) {
      const r = await pool.query<{ ts: number; line: string }>(
        'SELECT ts, line FROM (SELECT n, ts, line FROM training_logs WHERE job_id = $1 ORDER BY n DESC LIMIT $2) AS last ORDER BY n',
        [id, limit],
      );
      return r.rows;
    },
    async failRunning(error, now, owner) {
      const failed = await withTransaction(pool, async (c) => {
        // A lease renewed meanwhile is seen here: FOR UPDATE re-checks the WHERE on the row it waited for.
        const running = (
          await c.query<{ doc: string }>(
            "SELECT doc FROM training_jobs WHERE state = 'running' AND (lease_until IS NULL OR lease_until <= $1 OR owner = $2) FOR UPDATE",
            [now, owner],
          )
        ).rows.map((r) => JSON.parse(r.doc) as TrainingJob);
        for (const j of running) await save(c, { ...j, state: 'failed', phase: 'done', error, finishedAt: now, workDir: null, pid: null });
        return running;
      });
      if (failed.length > 0) opts.logger.warn({ jobs: failed.map((j) => j.id) }, 'training jobs whose fleet instance stopped marked failed');
      return failed;
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
