/**
 * Schema changes of the fleet database that `CREATE TABLE IF NOT EXISTS` cannot make on a file
 * created by an older build. Each step checks the shape it finds rather than trusting
 * `user_version` alone, so a file of any age converges on the current shape.
 */
import type Database from 'better-sqlite3';

/** What a migration logs through (a pino logger fits). */
interface MigrationLog {
  info(obj: Record<string, unknown>, msg: string): void;
}

/**
 * The indexes `results` carries or carried (results_line_ts until schema 3); they move with a
 * renamed table and must be dropped before rebuilding.
 */
const RESULT_INDEXES = ['results_line_ts', 'results_ts', 'results_edge_ts'];

function columnsOf(db: Database.Database, table: string): string[] {
  return (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
}

/**
 * Adds the nullable columns a table lacks (a file made by an older build), by column check rather
 * than a schema version, so databases of any age converge on the same shape.
 */
export function addMissingColumns(db: Database.Database, table: string, columns: readonly (readonly [name: string, type: string])[]): void {
  const have = new Set(columnsOf(db, table));
  for (const [name, type] of columns) if (!have.has(name)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${name} ${type}`);
}

/**
 * Issue 5: results are per result store, so a wiped edge database (a new store, seqs from 1
 * again) never collides with the rows of the old one. A file from before gets the edge's current
 * store ('', the store of edges that send no storeId) and its ack in `edge_stores`; its results
 * are rebuilt under that store by migrateToStoreKeys.
 */
export function migrateToStoreIds(db: Database.Database): void {
  if (!columnsOf(db, 'edges').includes('store_id')) {
    db.transaction(() => {
      db.exec("ALTER TABLE edges ADD COLUMN store_id TEXT NOT NULL DEFAULT ''");
      db.exec(`INSERT OR IGNORE INTO edge_stores (edge_id, store_id, acked_seq, first_seen, last_seen)
               SELECT id, '', acked_seq, first_seen, last_seen FROM edges`);
    })();
  }
}

/**
 * Schema 5: results are keyed by (store_key, seq), store_key the integer key of the edge × store
 * row in `edge_stores`, instead of (edge_id, store_id, seq) or, before issue 5, (edge_id, seq).
 * SQLite cannot change a UNIQUE constraint in place, so both tables are rebuilt: renamed,
 * recreated by `createTables` (the current schema), copied (row ids kept, so result cursors stay
 * valid; a store holding rows but no ack row gets one, acked 0) and dropped, in one transaction
 * each. The rebuild reads the whole results table once, at the first start of this build.
 */
export function migrateToStoreKeys(db: Database.Database, createTables: () => void, log: MigrationLog): void {
  if (!columnsOf(db, 'edge_stores').includes('key')) {
    db.transaction(() => {
      db.exec('ALTER TABLE edge_stores RENAME TO edge_stores_before_key');
      createTables();
      db.exec(`INSERT INTO edge_stores (edge_id, store_id, acked_seq, first_seen, last_seen)
               SELECT edge_id, store_id, acked_seq, first_seen, last_seen FROM edge_stores_before_key ORDER BY 1, 2`);
      db.exec('DROP TABLE edge_stores_before_key');
    })();
  }
  const resultColumns = columnsOf(db, 'results');
  if (resultColumns.includes('store_key')) return;
  db.transaction(() => {
    const store = resultColumns.includes('store_id') ? 'old.store_id' : "''";
    db.exec('ALTER TABLE results RENAME TO results_before_store_key');
    for (const index of RESULT_INDEXES) db.exec(`DROP INDEX IF EXISTS ${index}`);
    db.exec(`INSERT OR IGNORE INTO edge_stores (edge_id, store_id, first_seen, last_seen)
             SELECT old.edge_id, ${store}, min(old.ts), max(old.ts) FROM results_before_store_key AS old GROUP BY 1, 2`);
    createTables();
    const target = new Set(columnsOf(db, 'results'));
    const shared = resultColumns.filter((c) => target.has(c));
    const copied = db
      .prepare(
        `INSERT INTO results (${shared.join(', ')}, store_key)
         SELECT ${shared.map((c) => `old.${c}`).join(', ')}, s.key FROM results_before_store_key AS old
         JOIN edge_stores AS s ON s.edge_id = old.edge_id AND s.store_id = ${store} ORDER BY old.id`,
      )
      .run().changes;
    db.exec('DROP TABLE results_before_store_key');
    log.info({ results: copied }, 'results table migrated to integer store keys');
  })();
}

/**
 * Schema 3: per-line statistics come from `line_minutes`, counts per line × minute × verdict ×
 * label × model kept at insert, instead of the covering index results_line_ts (line, ts, verdict,
 * label, model), which cost every stored result a fifth B-tree entry. A database without the
 * table gets it, filled from the rows it holds, and loses the index, in one transaction.
 */
export function migrateToLineMinutes(db: Database.Database, log: MigrationLog): void {
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'line_minutes'").get();
  if (exists) return;
  db.transaction(() => {
    db.exec(`CREATE TABLE line_minutes (
      line TEXT NOT NULL,
      minute INTEGER NOT NULL,
      verdict TEXT NOT NULL,
      label TEXT NOT NULL,
      model TEXT NOT NULL,
      count INTEGER NOT NULL,
      PRIMARY KEY (line, minute, verdict, label, model)
    ) WITHOUT ROWID`);
    const groups = db
      .prepare(
        `INSERT INTO line_minutes (line, minute, verdict, label, model, count)
         SELECT line, (ts / 60000) * 60000, verdict, label, model, count(*) FROM results WHERE true GROUP BY 1, 2, 3, 4, 5`,
      )
      .run().changes;
    db.exec('DROP INDEX IF EXISTS results_line_ts');
    if (groups > 0) log.info({ groups }, 'line statistics aggregated per minute (line_minutes)');
  })();
}

/**
 * Schema 4: the figures rollout gates need, counted per edge × model × mode at ingest
 * (`edge_model_counts`, fleet-manager/gate-counts.ts) instead of scanned from `results` by row id,
 * which is only correct with one writer. A database without the table gets it, filled from the
 * rows it holds (the same meanings as the counters kept at ingest), in one transaction.
 */
export function migrateToGateCounts(db: Database.Database, log: MigrationLog): void {
  const exists = db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'edge_model_counts'").get();
  if (exists) return;
  db.transaction(() => {
    db.exec(`CREATE TABLE edge_model_counts (
      edge_id TEXT NOT NULL,
      model TEXT NOT NULL,
      mode TEXT NOT NULL,
      frames INTEGER NOT NULL,
      defects INTEGER NOT NULL,
      paired INTEGER NOT NULL,
      agree INTEGER NOT NULL,
      base_defects INTEGER NOT NULL,
      errors INTEGER NOT NULL,
      PRIMARY KEY (edge_id, model, mode)
    ) WITHOUT ROWID`);
    const live = db
      .prepare(
        `INSERT INTO edge_model_counts (edge_id, model, mode, frames, defects, paired, agree, base_defects, errors)
         SELECT edge_id, model, 'live', count(*), sum(verdict = 'defect'), 0, 0, 0, 0 FROM results GROUP BY 1, 2`,
      )
      .run().changes;
    const shadow = db
      .prepare(
        `INSERT INTO edge_model_counts (edge_id, model, mode, frames, defects, paired, agree, base_defects, errors)
         SELECT edge_id, shadow_model, 'shadow', count(*), coalesce(sum(shadow_verdict = 'defect'), 0),
                sum(shadow_verdict IS NOT NULL), coalesce(sum(shadow_verdict = verdict), 0),
                sum(shadow_verdict IS NOT NULL AND verdict = 'defect'), sum(shadow_error IS NOT NULL)
         FROM results WHERE shadow_model IS NOT NULL GROUP BY 1, 2`,
      )
      .run().changes;
    if (live + shadow > 0) log.info({ live, shadow }, 'rollout gate counters filled from stored results (edge_model_counts)');
  })();
}
