/**
 * Training jobs and their logs (issue 15): one narrow, asynchronous interface like FleetStore,
 * its SQLite implementation on its own connection to `fleet.db`. Logs are bounded per job
 * (MAX_LOG_LINES lines of at most MAX_LOG_LINE chars); older lines are kept, later ones counted.
 *
 * Several fleet instances may share the jobs (issue 18): a job is claimed (queued → running) by
 * one instance atomically, held under a lease its runner renews, and written by its runner only
 * while that instance still holds it; a job whose lease ran out (its instance died) is failed by
 * the next sweep of any instance. The owner and the lease are columns beside the JSON `doc`.
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { Logger } from 'pino';
import { addMissingColumns } from './store-migrations.js';

export const TRAINING_KINDS = ['anomaly', 'classify'] as const;
export type TrainingKind = (typeof TRAINING_KINDS)[number];
export const TRAINING_STATES = ['queued', 'running', 'succeeded', 'failed', 'cancelled'] as const;
export type TrainingState = (typeof TRAINING_STATES)[number];

/** Lines a job keeps in its log; the rest are counted in `droppedLogLines`. */
export const MAX_LOG_LINES = 2000;
/** Longest stored log line. */
export const MAX_LOG_LINE = 500;

export interface TrainingJob {
  id: string;
  kind: TrainingKind;
  model: string;
  /** The version asked for; null: the next patch version, chosen when the job starts. */
  requestedVersion: string | null;
  /** The version it registers (set when it starts). */
  version: string | null;
  /** The trainer's process id while it runs. */
  pid: number | null;
  /** Backbone name in the fleet's backbone registry. */
  backbone: string;
  options: { operatingPoint?: string; valFraction?: number; goodLabel?: string };
  /** What the images came from (the request's source, as given). */
  source: Record<string, unknown>;
  state: TrainingState;
  /** What the job is doing (queued, preparing, training, fitting, validating, registering, done). */
  phase: string;
  /** 0..1. */
  progress: number;
  /** Images per folder (good, defects, or one per label) as materialised. */
  counts: Record<string, number>;
  /** One line when failed or cancelled. */
  error: string | null;
  /** Who started it (`user:alice`). */
  createdBy: string;
  createdAt: number;
  startedAt: number | null;
  finishedAt: number | null;
  /** The registered version and its artifact when succeeded. */
  resultVersion: string | null;
  resultSha256: string | null;
  modelCard: Record<string, unknown> | null;
  /** The job's temp folder (images, output package) while it exists. */
  workDir: string | null;
  droppedLogLines: number;
}

export interface TrainingLogLine {
  ts: number;
  line: string;
}

export type TrainingJobPatch = Partial<Pick<TrainingJob,
  'state' | 'phase' | 'progress' | 'error' | 'startedAt' | 'finishedAt' | 'resultVersion' | 'resultSha256' | 'modelCard' | 'workDir' | 'version' | 'pid'>>;

/** A condition on a job's write; the write is refused (null) when it does not hold. */
export interface TrainingJobGuard {
  /** Only while the job is running under this owner (a runner's own writes: a stale owner's are refused). */
  owner?: string;
  /** Only while the job is in one of these states. */
  states?: readonly TrainingState[];
}

export interface TrainingStore {
  insertJob(job: TrainingJob): Promise<void>;
  getJob(id: string): Promise<TrainingJob | null>;
  /** Newest first. */
  listJobs(limit: number): Promise<TrainingJob[]>;
  /**
   * Claims the oldest queued job for `owner` (a fleet instance's id) atomically — of several
   * claimers at once, each job goes to one: it becomes running, held by `owner` until
   * `now + leaseMs` unless renewed. Null when none is queued.
   */
  claimNext(owner: string, now: number, leaseMs: number): Promise<TrainingJob | null>;
  /**
   * Extends `owner`'s lease of a running job to `now + leaseMs`; false when it no longer holds it
   * (finished, cancelled elsewhere, or failed by a sweep after its lease ran out).
   */
  renewLease(id: string, owner: string, now: number, leaseMs: number): Promise<boolean>;
  /** How many jobs are in each state (the fleet's /metrics; states with none are absent). */
  countByState(): Promise<Partial<Record<TrainingState, number>>>;
  /**
   * Patches a job; null when there is none or `guard` does not hold (nothing written). A job that
   * leaves `running` loses its owner and lease.
   */
  updateJob(id: string, patch: TrainingJobPatch, guard?: TrainingJobGuard): Promise<TrainingJob | null>;
  /** Appends lines (cut to MAX_LOG_LINE), keeping at most MAX_LOG_LINES per job. */
  appendLog(id: string, lines: readonly TrainingLogLine[]): Promise<void>;
  /** The job's latest `limit` log lines, oldest first. */
  logs(id: string, limit: number): Promise<TrainingLogLine[]>;
  /**
   * Marks failed with `error` the running jobs whose instance is gone: those whose lease ended at
   * or before `now` (or that have none: rows from before leases), and, when `owner` is given,
   * those it holds (its runner restarted). A job another instance holds under a live lease is left
   * alone. Returns them as they were, so their temp folders can be removed.
   */
  failRunning(error: string, now: number, owner: string | null): Promise<TrainingJob[]>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS training_jobs (
  id TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  doc TEXT NOT NULL,
  owner TEXT,
  lease_until INTEGER
);
CREATE INDEX IF NOT EXISTS training_jobs_state ON training_jobs (state, created_at);
CREATE TABLE IF NOT EXISTS training_logs (
  job_id TEXT NOT NULL,
  n INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  line TEXT NOT NULL,
  PRIMARY KEY (job_id, n)
) WITHOUT ROWID;
`;

export interface SqliteTrainingStoreOptions {
  /** The fleet database file (created by openSqliteStore first). */
  file: string;
  logger: Logger;
}

/** The columns a file made before leases lacks. */
const LEASE_COLUMNS = [['owner', 'TEXT'], ['lease_until', 'INTEGER']] as const;

/** The claim written into a job's document when an instance takes it. */
export const claimedJob = (job: TrainingJob): TrainingJob => ({ ...job, state: 'running', phase: 'preparing' });

/** Whether a guarded write may go ahead on a job in `state` held by `owner`. */
export function guardHolds(guard: TrainingJobGuard | undefined, state: TrainingState, owner: string | null): boolean {
  if (!guard) return true;
  if (guard.owner !== undefined && (state !== 'running' || owner !== guard.owner)) return false;
  return !guard.states || guard.states.includes(state);
}

/** Opens the training store on the fleet database. */
export function openSqliteTrainingStore(opts: SqliteTrainingStoreOptions): TrainingStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateTrainingSchema(db);
    return closingConnection(createSqliteTrainingStore(db, opts), db);
  });
}

/** Creates or upgrades the training tables on an open connection (idempotent). */
export function migrateTrainingSchema(db: Database.Database): void {
  db.exec(SCHEMA);
  addMissingColumns(db, 'training_jobs', LEASE_COLUMNS);
}

/** The TrainingStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteTrainingStore(db: Database.Database, opts: SqliteTrainingStoreOptions): TrainingStore {
  const st = {
    insert: db.prepare<[string, number, string, string]>('INSERT INTO training_jobs (id, created_at, state, doc) VALUES (?, ?, ?, ?)'),
    get: db.prepare<[string], { doc: string; owner: string | null }>('SELECT doc, owner FROM training_jobs WHERE id = ?'),
    list: db.prepare<[number], { doc: string }>('SELECT doc FROM training_jobs ORDER BY created_at DESC, id DESC LIMIT ?'),
    next: db.prepare<[], { doc: string }>("SELECT doc FROM training_jobs WHERE state = 'queued' ORDER BY created_at, id LIMIT 1"),
    claim: db.prepare<[string, string, number, string]>("UPDATE training_jobs SET state = 'running', doc = ?, owner = ?, lease_until = ? WHERE id = ? AND state = 'queued'"),
    renew: db.prepare<[number, string, string]>("UPDATE training_jobs SET lease_until = ? WHERE id = ? AND state = 'running' AND owner = ?"),
    abandoned: db.prepare<[number, string | null], { doc: string }>(
      "SELECT doc FROM training_jobs WHERE state = 'running' AND (lease_until IS NULL OR lease_until <= ? OR owner = ?)",
    ),
    countByState: db.prepare<[], { state: TrainingState; n: number }>('SELECT state, count(*) AS n FROM training_jobs GROUP BY state'),
    update: db.prepare<[string, string, string]>('UPDATE training_jobs SET state = ?, doc = ? WHERE id = ?'),
    release: db.prepare<[string]>("UPDATE training_jobs SET owner = NULL, lease_until = NULL WHERE id = ? AND state != 'running'"),
    logCount: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM training_logs WHERE job_id = ?'),
    logInsert: db.prepare<[string, number, number, string]>('INSERT INTO training_logs (job_id, n, ts, line) VALUES (?, ?, ?, ?)'),
    logs: db.prepare<[string, number], TrainingLogLine>('SELECT ts, line FROM (SELECT n, ts, line FROM training_logs WHERE job_id = ? ORDER BY n DESC LIMIT ?) ORDER BY n'),
  };
  const parse = (row: { doc: string } | undefined): TrainingJob | null => (row ? (JSON.parse(row.doc) as TrainingJob) : null);
  const update = db.transaction((id: string, patch: TrainingJobPatch, guard?: TrainingJobGuard): TrainingJob | null => {
    const row = st.get.get(id);
    const job = parse(row);
    if (!job || !guardHolds(guard, job.state, row!.owner)) return null;
    const next = { ...job, ...patch };
    st.update.run(next.state, JSON.stringify(next), id);
    st.release.run(id);
    return next;
  });
  const claim = db.transaction((owner: string, until: number): TrainingJob | null => {
    const job = parse(st.next.get());
    if (!job) return null;
    const next = claimedJob(job);
    st.claim.run(JSON.stringify(next), owner, until, job.id);
    return next;
  });
  const append = db.transaction((id: string, lines: readonly TrainingLogLine[]) => {
    let n = st.logCount.get(id)!.n;
    let dropped = 0;
    for (const l of lines) {
      if (n >= MAX_LOG_LINES) dropped++;
      else st.logInsert.run(id, n++, l.ts, l.line.length > MAX_LOG_LINE ? `${l.line.slice(0, MAX_LOG_LINE - 1)}…` : l.line);
    }
    if (dropped > 0) {
      const job = parse(st.get.get(id));
      if (job) st.update.run(job.state, JSON.stringify({ ...job, droppedLogLines: job.droppedLogLines + dropped }), id);
    }
  });
  const failRunning = db.transaction((error: string, now: number, owner: string | null): TrainingJob[] => {
    const jobs = st.abandoned.all(now, owner).map((r) => JSON.parse(r.doc) as TrainingJob);
    for (const j of jobs) {
      st.update.run('failed', JSON.stringify({ ...j, state: 'failed', phase: 'done', error, finishedAt: now, workDir: null, pid: null }), j.id);
      st.release.run(j.id);
    }
    return jobs;
  });
  let closed = false;
  return {
    async insertJob(job) {
      st.insert.run(job.id, job.createdAt, job.state, JSON.stringify(job));
    },
    async getJob(id) {
      return parse(st.get.get(id));
    },
    async listJobs(limit) {
      return st.list.all(limit).map((r) => JSON.parse(r.doc) as TrainingJob);
    },
    async claimNext(owner, now, leaseMs) {
      // IMMEDIATE: the write lock is taken before the read, so another process cannot claim in between.
      return claim.immediate(owner, now + leaseMs);
    },
    async renewLease(id, owner, now, leaseMs) {
      return st.renew.run(now + leaseMs, id, owner).changes > 0;
    },
    async countByState() {
      return Object.fromEntries(st.countByState.all().map((r) => [r.state, r.n]));
    },
    async updateJob(id, patch, guard) {
      return update.immediate(id, patch, guard);
    },
    async appendLog(id, lines) {
      if (lines.length > 0) append(id, lines);
    },
    async logs(id, limit) {
      return st.logs.all(id, limit);
    },
    async failRunning(error, now, owner) {
      const jobs = failRunning.immediate(error, now, owner);
      if (jobs.length > 0) opts.logger.warn({ jobs: jobs.map((j) => j.id) }, 'training jobs whose fleet instance stopped marked failed');
      return jobs;
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}
