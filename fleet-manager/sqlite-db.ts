/**
 * The one way fleet.db is opened: a better-sqlite3 connection with the settings every store
 * relies on. The storage factory (storage.ts) opens it once and hands it to every store; the
 * `openSqliteXStore({ file })` helpers of single stores (tests, CLI tools) open their own.
 */
import Database from 'better-sqlite3';

export interface SqliteOpenOptions {
  /** Refuse to create the file (a store that must find the fleet database already made). */
  fileMustExist?: boolean;
}

/**
 * Opens the fleet database: WAL; synchronous=FULL because an ack (or a 2xx) tells the sender it
 * may delete its copy, so a committed write must survive a power cut; a busy timeout for other
 * processes (CLI tools) writing the same file.
 */
export function openSqliteDatabase(file: string, opts: SqliteOpenOptions = {}): Database.Database {
  const db = new Database(file, opts.fileMustExist ? { fileMustExist: true } : {});
  try {
    // 8 KiB pages for a new database (an existing one keeps its own): about 15 % less CPU per
    // stored result, fewer B-tree levels and splits in the result indexes (bench/fleet-ingest.ts).
    // It has to come before WAL mode, which fixes the page size.
    db.pragma('page_size = 8192');
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    // Checkpoint every ~40 MB of WAL (5000 pages of 8 KiB) instead of SQLite's 1000 pages: an index
    // page rewritten by many batches is copied into the database once per checkpoint rather than
    // again and again (bench/fleet-ingest.ts: about +40 % ingest rate on a large database).
    db.pragma('wal_autocheckpoint = 5000');
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * A store over a connection of its own: the store's close also closes the connection. For the
 * single-store helpers; stores made by the storage factory share one connection it closes.
 */
export function closingConnection<T extends { close(): Promise<void> }>(store: T, db: Database.Database): T {
  const close = store.close;
  return Object.assign(store, {
    async close() {
      await close();
      if (db.open) db.close();
    },
  });
}

/** Runs `fn` over a freshly opened connection, closing it if `fn` throws (a failed schema step). */
export function withNewConnection<T>(file: string, opts: SqliteOpenOptions, fn: (db: Database.Database) => T): T {
  const db = openSqliteDatabase(file, opts);
  try {
    return fn(db);
  } catch (err) {
    db.close();
    throw err;
  }
}
