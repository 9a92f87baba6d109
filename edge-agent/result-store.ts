/**
 * The edge's durable result log: one SQLite file (better-sqlite3, WAL) holding every result with
 * its per-edge `seq`, and the highest seq the fleet has acknowledged.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { OspreyError } from '../protocol/errors.js';
import type { Detection, ResultRecord } from '../protocol/messages.js';

/** A result before the store gives it its seq. */
export type NewResult = Omit<ResultRecord, 'seq'>;

export interface ResultCounts {
  results: number;
  defects: number;
  pending: number;
}

export interface ResultStore {
  /** Persists one result and returns the seq it was given (strictly increasing, never reused). */
  append(record: NewResult): number;
  /** Up to `limit` results with seq > `afterSeq`, ascending. */
  pendingAfter(afterSeq: number, limit: number): ResultRecord[];
  /** Records the fleet's ack; never moves backwards, never past lastSeq. Returns the acked seq now. */
  markAcked(seq: number): number;
  /** Highest seq ever assigned (0 when none). */
  readonly lastSeq: number;
  /** Highest seq acknowledged by the fleet (0 when none). */
  readonly ackedSeq: number;
  /** Results not yet acknowledged. */
  readonly pending: number;
  counts(): ResultCounts;
  readonly file: string;
  /** The durability settings in force, as SQLite reports them. */
  readonly settings: { journalMode: string; synchronous: 'FULL' | 'NORMAL' | 'OFF' | 'EXTRA' };
  close(): void;
}

export interface ResultStoreOptions {
  /**
   * `full` (default): every append fsyncs the WAL before it returns, so a verdict the line has
   * been given survives a power cut. `normal`: survives process crashes, but a power cut may
   * roll back the last transactions — and the edge would then reuse seqs the fleet may already
   * hold. Only for benchmarks or disposable edges.
   */
  durability?: 'full' | 'normal';
}

interface Row {
  seq: number;
  ts: number;
  camera: string;
  source: ResultRecord['source'];
  frame: string | null;
  model: string;
  verdict: ResultRecord['verdict'];
  label: string;
  score: number;
  latency_ms: number;
  detections: string | null;
}

function toRecord(row: Row): ResultRecord {
  const rec: ResultRecord = {
    seq: row.seq,
    ts: row.ts,
    camera: row.camera,
    source: row.source,
    model: row.model,
    verdict: row.verdict,
    label: row.label,
    score: row.score,
    latencyMs: row.latency_ms,
  };
  if (row.frame !== null) rec.frame = row.frame;
  if (row.detections !== null) rec.detections = JSON.parse(row.detections) as Detection[];
  return rec;
}

/** Opens (creating if needed) `results.db` in `dataDir`. */
export function openResultStore(dataDir: string, opts: ResultStoreOptions = {}): ResultStore {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'results.db');
  let db: Database.Database;
  try {
    db = new Database(file);
  } catch (err) {
    throw new OspreyError('OSP_ERR_STORE', `cannot open result store ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    db.pragma('journal_mode = WAL');
    // Decision (DESIGN "Store and forward", issue 5): FULL. In WAL mode FULL costs one fsync of
    // the WAL per commit (well under the inference time of a frame) and makes "answered" mean
    // "on disk": NORMAL could lose the last commits on power loss and then re-issue their seqs.
    db.pragma(`synchronous = ${opts.durability === 'normal' ? 'NORMAL' : 'FULL'}`);
    db.pragma('busy_timeout = 5000');
    db.exec(`
      CREATE TABLE IF NOT EXISTS results (
        -- AUTOINCREMENT: seqs are never reused, even after retention deletes the newest rows.
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        ts INTEGER NOT NULL,
        camera TEXT NOT NULL,
        source TEXT NOT NULL,
        frame TEXT,
        model TEXT NOT NULL,
        verdict TEXT NOT NULL,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        latency_ms REAL NOT NULL,
        detections TEXT
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT OR IGNORE INTO meta (key, value) VALUES ('acked_seq', 0);
    `);
  } catch (err) {
    db.close();
    throw new OspreyError('OSP_ERR_STORE', `cannot initialise result store ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }

  const insert = db.prepare(`
    INSERT INTO results (ts, camera, source, frame, model, verdict, label, score, latency_ms, detections)
    VALUES (@ts, @camera, @source, @frame, @model, @verdict, @label, @score, @latencyMs, @detections)`);
  const selectAfter = db.prepare<[number, number], Row>('SELECT * FROM results WHERE seq > ? ORDER BY seq LIMIT ?');
  const selectLast = db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'results'");
  const selectAcked = db.prepare<[], { value: number }>("SELECT value FROM meta WHERE key = 'acked_seq'");
  const updateAcked = db.prepare<[number]>("UPDATE meta SET value = max(value, ?) WHERE key = 'acked_seq'");
  const selectCounts = db.prepare<[number], { results: number; defects: number | null; pending: number | null }>(
    `SELECT count(*) AS results, sum(verdict = 'defect') AS defects, sum(seq > ?) AS pending FROM results`,
  );

  const syncNames = ['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const;
  const settings = {
    journalMode: String(db.pragma('journal_mode', { simple: true })),
    synchronous: syncNames[Number(db.pragma('synchronous', { simple: true }))] ?? 'OFF',
  };

  // One writer process owns the file, so the cached values are the truth after open.
  let lastSeq = selectLast.get()?.seq ?? 0;
  let ackedSeq = selectAcked.get()?.value ?? 0;
  let closed = false;

  return {
    file,
    settings,
    append(record) {
      try {
        const info = insert.run({
          ts: record.ts,
          camera: record.camera,
          source: record.source,
          frame: record.frame ?? null,
          model: record.model,
          verdict: record.verdict,
          label: record.label,
          score: record.score,
          latencyMs: record.latencyMs,
          detections: record.detections ? JSON.stringify(record.detections) : null,
        });
        lastSeq = Number(info.lastInsertRowid);
        return lastSeq;
      } catch (err) {
        throw new OspreyError('OSP_ERR_STORE', `cannot write result: ${(err as Error).message}`, { cause: err });
      }
    },
    pendingAfter(afterSeq, limit) {
      return selectAfter.all(afterSeq, limit).map(toRecord);
    },
    markAcked(seq) {
      // An ack past lastSeq means the fleet holds seqs this file never issued (a wiped edge?):
      // clamping keeps our own results from being skipped.
      const target = Math.min(Math.floor(seq), lastSeq);
      if (target > ackedSeq) {
        updateAcked.run(target);
        ackedSeq = target;
      }
      return ackedSeq;
    },
    get lastSeq() {
      return lastSeq;
    },
    get ackedSeq() {
      return ackedSeq;
    },
    get pending() {
      return lastSeq - ackedSeq;
    },
    counts() {
      const row = selectCounts.get(ackedSeq)!;
      return { results: row.results, defects: row.defects ?? 0, pending: row.pending ?? 0 };
    },
    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}
