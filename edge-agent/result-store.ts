/**
 * The edge's durable result log: one SQLite file (better-sqlite3, WAL) holding every result with
 * its per-edge `seq`, and the highest seq the fleet has acknowledged.
 *
 * A damaged file must not become a restart loop (issue 13). At open, a file SQLite refuses
 * (SQLITE_NOTADB, SQLITE_CORRUPT) or whose `PRAGMA quick_check` is not `ok` is moved aside with
 * its -wal and -shm (`results.db.corrupt-<time>`, `…-wal`, `…-shm`: still openable by hand), and a
 * new store (a new storeId, seqs from 1) is created in its place; `recovery` says so, for the
 * agent's alarm. A zero-length file (a crash while it was being created, or a truncation) holds
 * nothing: it is replaced by a new store on purpose, reported as `empty`. Every error names the file.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
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
  /**
   * Runs `fn` (appends) in one transaction: one commit, so one fsync for all of its rows (group
   * commit); each row is as durable as a lone append once `batch` returns. All or nothing: if `fn`
   * or the commit throws, none of its rows is stored, lastSeq and the counts are as before, and the
   * error is rethrown.
   */
  batch<T>(fn: () => T): T;
  /** Up to `limit` results with seq > `afterSeq`, ascending. */
  pendingAfter(afterSeq: number, limit: number): ResultRecord[];
  /**
   * Keeps row `seq` and every later one out of pendingAfter until completeShadow(seq): its shadow
   * outcome is still coming (issue 4: the verdict is answered first). Call it in the same tick as
   * append, before the sync loop can read the row. In memory only: after a crash the row goes
   * without its shadow.
   */
  hold(seq: number): void;
  /** Stores the shadow outcome of a held row (undefined: none) and releases it. */
  completeShadow(seq: number, shadow: ResultRecord['shadow']): void;
  /** Records the fleet's ack; never moves backwards, never past lastSeq. Returns the acked seq now. */
  markAcked(seq: number): number;
  /** Highest seq ever assigned (0 when none). */
  readonly lastSeq: number;
  /** Highest seq acknowledged by the fleet (0 when none). */
  readonly ackedSeq: number;
  /** Results not yet acknowledged. */
  readonly pending: number;
  counts(): ResultCounts;
  /**
   * This store's random identity, created with the database (issue 5): a wiped or replaced
   * database is a new store whose seqs restart at 1, and the fleet keys results by
   * (edgeId, storeId, seq). Undefined only for a database that held results before storeIds.
   */
  readonly storeId: string | undefined;
  /**
   * Deletes acknowledged rows, oldest first: among the `limit` oldest rows, those with
   * seq ≤ min(`maxSeq`, ackedSeq) and ts < `beforeTs` (default: any age). Returns rows deleted.
   * Never touches an unacknowledged row.
   */
  prune(opts: { maxSeq?: number; beforeTs?: number; limit: number }): number;
  /** Rows held and bytes used by the database's live pages (cheap: no table scan). */
  usage(): { rows: number; bytes: number };
  readonly file: string;
  /** Set when open found the file damaged or empty and started a new store in its place. */
  readonly recovery: StoreRecovery | undefined;
  /** The durability settings in force, as SQLite reports them. */
  readonly settings: { journalMode: string; synchronous: 'FULL' | 'NORMAL' | 'OFF' | 'EXTRA' };
  close(): void;
}

/** What open did about a damaged or empty results.db. */
export interface StoreRecovery {
  /** `corrupt`: moved aside; `empty`: a 0-byte file replaced. */
  kind: 'corrupt' | 'empty';
  file: string;
  /** Where the damaged file went (with `-wal` and `-shm` beside it when they existed). */
  movedTo?: string;
  /** What SQLite said, one line. */
  reason: string;
}

const CORRUPT_CODES = new Set(['SQLITE_NOTADB', 'SQLITE_CORRUPT', 'SQLITE_CORRUPT_INDEX', 'SQLITE_CORRUPT_SEQUENCE', 'SQLITE_CORRUPT_VTAB']);

/** The database file itself is damaged (as opposed to missing permissions, a full disk, a lock). */
function isCorruption(err: unknown): boolean {
  const code = (err as { code?: string; cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code;
  return code !== undefined && CORRUPT_CODES.has(code);
}

function sizeOf(file: string): number | undefined {
  try {
    return statSync(file).size;
  } catch {
    return undefined;
  }
}

/** Moves `file` and its -wal/-shm aside as `file.corrupt-<time>[-wal|-shm]`; returns the new name. */
function moveAside(file: string): string {
  const target = `${file}.corrupt-${new Date().toISOString().replace(/[:.]/g, '-')}`;
  try {
    for (const suffix of ['-wal', '-shm']) if (existsSync(file + suffix)) renameSync(file + suffix, target + suffix);
    renameSync(file, target);
  } catch (err) {
    throw new OspreyError('OSP_ERR_STORE', `result store ${file} is damaged and cannot be moved aside to ${target}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return target;
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
  shadow: string | null;
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
  if (row.shadow !== null) rec.shadow = JSON.parse(row.shadow) as NonNullable<ResultRecord['shadow']>;
  return rec;
}

/**
 * Opens (creating if needed) `results.db` in `dataDir`. A damaged or zero-length file is replaced
 * by a new store (see the top of this file; `recovery` on the result says what happened).
 */
export function openResultStore(dataDir: string, opts: ResultStoreOptions = {}): ResultStore {
  mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'results.db');
  if (sizeOf(file) === 0) {
    // Nothing was ever committed to a 0-byte file, unless a WAL beside it holds commits: then the
    // pair is damaged and goes aside like any other.
    if ((sizeOf(`${file}-wal`) ?? 0) > 0) {
      const movedTo = moveAside(file);
      return openChecked(file, opts, { kind: 'corrupt', file, movedTo, reason: 'zero-length database beside a non-empty WAL' });
    }
    for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
    return openChecked(file, opts, { kind: 'empty', file, reason: 'results.db was 0 bytes: a new store was created' });
  }
  const damage = sizeOf(file) !== undefined ? checkFile(file) : undefined;
  if (damage) {
    const movedTo = moveAside(file);
    return openChecked(file, opts, { kind: 'corrupt', file, movedTo, reason: damage });
  }
  try {
    return openChecked(file, opts, undefined);
  } catch (err) {
    if (!isCorruption(err)) throw err;
    const movedTo = moveAside(file);
    return openChecked(file, opts, { kind: 'corrupt', file, movedTo, reason: (err as Error).message });
  }
}

/**
 * What is wrong with an existing file, or undefined when SQLite finds nothing (or the trouble is
 * not damage: permissions, locks, a full disk are left to the real open to report). Read-only, so
 * closing it neither checkpoints a WAL into a damaged file nor deletes the WAL: both go aside as
 * they were. `quick_check` reads every page once without the index cross-checks of
 * `integrity_check`.
 */
function checkFile(file: string): string | undefined {
  let db: Database.Database;
  try {
    db = new Database(file, { readonly: true, fileMustExist: true });
  } catch (err) {
    return isCorruption(err) ? `${(err as { code?: string }).code}: ${(err as Error).message}` : undefined;
  }
  try {
    const result = db.pragma('quick_check(1)', { simple: true });
    return result === 'ok' ? undefined : `quick_check: ${String(result)}`;
  } catch (err) {
    return isCorruption(err) ? `${(err as { code?: string }).code}: ${(err as Error).message}` : undefined;
  } finally {
    db.close();
  }
}

function openChecked(file: string, opts: ResultStoreOptions, recovery: StoreRecovery | undefined): ResultStore {
  let db: Database.Database;
  let storeId: string | undefined;
  let rows = 0;
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
        detections TEXT,
        shadow TEXT
      );
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
      INSERT OR IGNORE INTO meta (key, value) VALUES ('acked_seq', 0);
    `);
    storeId = ensureStoreId(db);
    // Files from before shadow mode (issue 4) lack the column; NULL reads as "no shadow".
    const columns = db.prepare<[], { name: string }>('PRAGMA table_info(results)').all();
    if (!columns.some((c) => c.name === 'shadow')) db.exec('ALTER TABLE results ADD COLUMN shadow TEXT');
    rows = db.prepare<[], number>('SELECT count(*) FROM results').pluck().get() ?? 0;
  } catch (err) {
    db.close();
    throw new OspreyError('OSP_ERR_STORE', `cannot initialise result store ${file}: ${(err as Error).message}`, { cause: err });
  }

  const insert = db.prepare(`
    INSERT INTO results (ts, camera, source, frame, model, verdict, label, score, latency_ms, detections, shadow)
    VALUES (@ts, @camera, @source, @frame, @model, @verdict, @label, @score, @latencyMs, @detections, @shadow)`);
  const selectAfter = db.prepare<[number, number], Row>('SELECT * FROM results WHERE seq > ? ORDER BY seq LIMIT ?');
  const updateShadow = db.prepare<[string | null, number]>('UPDATE results SET shadow = ? WHERE seq = ?');
  // Rows whose shadow outcome is still coming; few (at most one per pipeline slot) and short-lived.
  const held = new Set<number>();
  const selectLast = db.prepare<[], { seq: number }>("SELECT seq FROM sqlite_sequence WHERE name = 'results'");
  const selectAcked = db.prepare<[], { value: number }>("SELECT value FROM meta WHERE key = 'acked_seq'");
  const updateAcked = db.prepare<[number]>("UPDATE meta SET value = max(value, ?) WHERE key = 'acked_seq'");
  const deleteAcked = db.prepare<{ maxSeq: number; beforeTs: number; limit: number }>(
    // Bounded to the `limit` oldest rows, so a young head never makes this scan the whole table.
    `DELETE FROM results WHERE seq IN (SELECT seq FROM results WHERE seq <= @maxSeq ORDER BY seq LIMIT @limit)
       AND ts < @beforeTs`,
  );
  const selectPages = db.prepare<[], { pages: number; free: number; size: number }>(
    'SELECT p.page_count AS pages, f.freelist_count AS free, s.page_size AS size FROM pragma_page_count() p, pragma_freelist_count() f, pragma_page_size() s',
  );
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
  // `rows` was counted once at open (one index scan), then kept by append and prune.
  let closed = false;
  // Inside batch(): an append that finds the transaction gone (SQLite rolls a whole transaction
  // back on some errors, e.g. SQLITE_FULL) must fail the batch rather than commit on its own.
  let inBatch = false;
  const transaction = db.transaction(<T>(fn: () => T): T => fn());

  return {
    file,
    recovery,
    settings,
    batch(fn) {
      if (inBatch) return fn();
      const before = { lastSeq, rows };
      inBatch = true;
      try {
        return transaction(fn) as ReturnType<typeof fn>;
      } catch (err) {
        lastSeq = before.lastSeq;
        rows = before.rows;
        throw err;
      } finally {
        inBatch = false;
      }
    },
    append(record) {
      if (inBatch && !db.inTransaction) {
        throw new OspreyError('OSP_ERR_STORE', `cannot write result to ${file}: the batch transaction was rolled back`);
      }
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
          shadow: record.shadow ? JSON.stringify(record.shadow) : null,
        });
        lastSeq = Number(info.lastInsertRowid);
        rows++;
        return lastSeq;
      } catch (err) {
        throw new OspreyError('OSP_ERR_STORE', `cannot write result to ${file}: ${(err as Error).message}`, { cause: err });
      }
    },
    pendingAfter(afterSeq, limit) {
      const rows = selectAfter.all(afterSeq, limit).map(toRecord);
      if (held.size === 0) return rows;
      // Seqs go out in order, so nothing from the first held row on.
      const firstHeld = Math.min(...held);
      const cut = rows.findIndex((r) => r.seq >= firstHeld);
      return cut === -1 ? rows : rows.slice(0, cut);
    },
    hold(seq) {
      held.add(seq);
    },
    completeShadow(seq, shadow) {
      try {
        if (shadow) updateShadow.run(JSON.stringify(shadow), seq);
      } catch (err) {
        throw new OspreyError('OSP_ERR_STORE', `cannot write shadow outcome to ${file}: ${(err as Error).message}`, { cause: err });
      } finally {
        held.delete(seq);
      }
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
    get storeId() {
      return storeId;
    },
    prune({ maxSeq = Number.MAX_SAFE_INTEGER, beforeTs = Number.MAX_SAFE_INTEGER, limit }) {
      const upTo = Math.min(maxSeq, ackedSeq);
      if (upTo <= 0 || limit <= 0) return 0;
      try {
        const deleted = deleteAcked.run({ maxSeq: upTo, beforeTs, limit }).changes;
        rows -= deleted;
        return deleted;
      } catch (err) {
        throw new OspreyError('OSP_ERR_STORE', `cannot prune results in ${file}: ${(err as Error).message}`, { cause: err });
      }
    },
    usage() {
      const p = selectPages.get()!;
      return { rows, bytes: (p.pages - p.free) * p.size };
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

/**
 * Reads the store's identity, creating it when the database holds no result yet (a new file, or
 * one that never stored anything). A file that already held results before storeIds existed keeps
 * none: its seqs were sent without one, and giving it one now would make the fleet treat its next
 * rows as a new store starting above 1.
 */
function ensureStoreId(db: Database.Database): string | undefined {
  db.exec('CREATE TABLE IF NOT EXISTS store_info (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID');
  const existing = db.prepare<[], string>("SELECT value FROM store_info WHERE key = 'store_id'").pluck().get();
  if (existing !== undefined) return existing;
  const used = db.prepare<[], number>("SELECT count(*) FROM sqlite_sequence WHERE name = 'results'").pluck().get() ?? 0;
  if (used > 0) return undefined;
  const id = randomBytes(12).toString('base64url');
  db.prepare("INSERT INTO store_info (key, value) VALUES ('store_id', ?)").run(id);
  return id;
}
