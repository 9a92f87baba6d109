/**
 * Training jobs and their logs (issue 15): one narrow, asynchronous interface like FleetStore,
 * its SQLite implementation on its own connection to `fleet.db`. Logs are bounded per job
 * (MAX_LOG_LINES lines of at most MAX_LOG_LINE chars); older lines are kept, later ones counted.
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { Logger } from 'pino';

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

export interface TrainingStore {
  insertJob(job: TrainingJob): Promise<void>;
  getJob(id: string): Promise<TrainingJob | null>;
  /** Newest first. */
  listJobs(limit: number): Promise<TrainingJob[]>;
  /** Oldest queued job, or null. */
  nextQueued(): Promise<TrainingJob | null>;
  /** How many jobs are in each state (the fleet's /metrics; states with none are absent). */
  countByState(): Promise<Partial<Record<TrainingState, number>>>;
  updateJob(id: string, patch: TrainingJobPatch): Promise<TrainingJob | null>;
  /** Appends lines (cut to MAX_LOG_LINE), keeping at most MAX_LOG_LINES per job. */
  appendLog(id: string, lines: readonly TrainingLogLine[]): Promise<void>;
  /** The job's latest `limit` log lines, oldest first. */
  logs(id: string, limit: number): Promise<TrainingLogLine[]>;
  /**
   * Marks every running job failed with `error` (a fleet restart) and returns them as they were,
   * so their temp folders can be removed.
   */
  failRunning(error: string, now: number): Promise<TrainingJob[]>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS training_jobs (
  id TEXT PRIMARY KEY,
  created_at INTEGER NOT NULL,
  state TEXT NOT NULL,
  doc TEXT NOT NULL
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
}

/** The TrainingStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteTrainingStore(db: Database.Database, opts: SqliteTrainingStoreOptions): TrainingStore {
    const st = {
    insert: db.prepare<[string, number, string, string]>('INSERT INTO training_jobs (id, created_at, state, doc) VALUES (?, ?, ?, ?)'),
    get: db.prepare<[string], { doc: string }>('SELECT doc FROM training_jobs WHERE id = ?'),
    list: db.prepare<[number], { doc: string }>('SELECT doc FROM training_jobs ORDER BY created_at DESC, id DESC LIMIT ?'),
    next: db.prepare<[], { doc: string }>("SELECT doc FROM training_jobs WHERE state = 'queued' ORDER BY created_at, id LIMIT 1"),
    running: db.prepare<[], { doc: string }>("SELECT doc FROM training_jobs WHERE state = 'running'"),
    countByState: db.prepare<[], { state: TrainingState; n: number }>('SELECT state, count(*) AS n FROM training_jobs GROUP BY state'),
    update: db.prepare<[string, string, string]>('UPDATE training_jobs SET state = ?, doc = ? WHERE id = ?'),
    logCount: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM training_logs WHERE job_id = ?'),
    logInsert: db.prepare<[string, number, number, string]>('INSERT INTO training_logs (job_id, n, ts, line) VALUES (?, ?, ?, ?)'),
    logs: db.prepare<[string, number], TrainingLogLine>('SELECT ts, line FROM (SELECT n, ts, line FROM training_logs WHERE job_id = ? ORDER BY n DESC LIMIT ?) ORDER BY n'),
  };
  const parse = (row: { doc: string } | undefined): TrainingJob | null => (row ? (JSON.parse(row.doc) as TrainingJob) : null);
  const update = db.transaction((id: string, patch: TrainingJobPatch): TrainingJob | null => {
    const job = parse(st.get.get(id));
    if (!job) return null;
    const next = { ...job, ...patch };
    st.update.run(next.state, JSON.stringify(next), id);
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
  const failRunning = db.transaction((error: string, now: number): TrainingJob[] => {
    const jobs = st.running.all().map((r) => JSON.parse(r.doc) as TrainingJob);
    for (const j of jobs) st.update.run('failed', JSON.stringify({ ...j, state: 'failed', phase: 'done', error, finishedAt: now, workDir: null, pid: null }), j.id);
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
    async nextQueued() {
      return parse(st.next.get());
    },
    async countByState() {
      return Object.fromEntries(st.countByState.all().map((r) => [r.state, r.n]));
    },
    async updateJob(id, patch) {
      return update(id, patch);
    },
    async appendLog(id, lines) {
      if (lines.length > 0) append(id, lines);
    },
    async logs(id, limit) {
      return st.logs.all(id, limit);
    },
    async failRunning(error, now) {
      const jobs = failRunning(error, now);
      if (jobs.length > 0) opts.logger.warn({ jobs: jobs.map((j) => j.id) }, 'training jobs interrupted by a fleet restart marked failed');
      return jobs;
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}
