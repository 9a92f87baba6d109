/**
 * Writing a batch's results into `results` (store-db.ts owns the table and calls this).
 *
 * A backlog batch is nearly always rows the fleet has not seen, so it goes in
 * ROWS_PER_STATEMENT rows per INSERT. One statement per row spends a good part of each insert on
 * the call into better-sqlite3, the bind and the step. In a raw test with the fleet's schema, 100
 * edges and batches of 500, chunks gave about 20 % more rows/s.
 *
 * A chunk only says how many rows it inserted, not which ones. So a chunk that inserts fewer rows
 * than it holds throws BulkShortfall. Causes: a resend, a seq twice in one batch, a required
 * value missing. The caller runs `all` inside a savepoint, which rolls the batch's chunks back;
 * the batch is then stored row by row, where each row's fate is known.
 */
import type Database from 'better-sqlite3';
import type { ResultRecord } from '../protocol/messages.js';

export const ROWS_PER_STATEMENT = 20;

/** Thrown by ResultInserter.all when some row of the batch was not inserted. */
export class BulkShortfall extends Error {
  constructor() {
    super('some rows of the batch were already stored or not insertable');
  }
}

export interface ResultInserter {
  /** Inserts one row: 1 when it was inserted, 0 when it was ignored (its key is taken, or a required value is missing). */
  one(edgeId: string, storeKey: number, line: string, r: ResultRecord): number;
  /** Inserts every row of the batch, or throws BulkShortfall. Call it inside a savepoint. */
  all(edgeId: string, storeKey: number, line: string, results: readonly ResultRecord[]): void;
}

const PLAIN = ['edge_id', 'store_key', 'seq', 'ts', 'line', 'camera', 'source', 'frame', 'model', 'verdict', 'label', 'score', 'latency_ms', 'detections'];
const SHADOW = [...PLAIN, 'shadow_model', 'shadow_verdict', 'shadow_label', 'shadow_score', 'shadow_latency_ms', 'shadow_error'];

function insertSql(columns: readonly string[], rows: number): string {
  const row = `(${columns.map(() => '?').join(', ')})`;
  return `INSERT OR IGNORE INTO results (${columns.join(', ')}) VALUES ${Array(rows).fill(row).join(', ')}`;
}

/** Appends one row's values: the plain columns, then the shadow ones when `shadow` is set. */
function pushRow(out: unknown[], edgeId: string, storeKey: number, line: string, r: ResultRecord, shadowColumns: boolean): void {
  const detections = r.detections === undefined ? null : JSON.stringify(r.detections);
  out.push(edgeId, storeKey, r.seq, r.ts, line, r.camera, r.source, r.frame ?? null, r.model, r.verdict, r.label, r.score, r.latencyMs, detections);
  if (!shadowColumns) return;
  const s = r.shadow;
  out.push(s?.model ?? null, s?.verdict ?? null, s?.label ?? null, s?.score ?? null, s?.latencyMs ?? null, s?.error ?? null);
}

export function createResultInserter(db: Database.Database): ResultInserter {
  // Results without a shadow outcome (most) bind 14 values rather than 20: binding is a good part
  // of an insert's CPU.
  const oneRow = { plain: db.prepare(insertSql(PLAIN, 1)), shadow: db.prepare(insertSql(SHADOW, 1)) };
  const chunk = { plain: db.prepare(insertSql(PLAIN, ROWS_PER_STATEMENT)), shadow: db.prepare(insertSql(SHADOW, ROWS_PER_STATEMENT)) };
  const values: unknown[] = [];

  function run(stmt: Database.Statement, edgeId: string, storeKey: number, line: string, rows: readonly ResultRecord[], shadowColumns: boolean): number {
    values.length = 0;
    for (const r of rows) pushRow(values, edgeId, storeKey, line, r, shadowColumns);
    return stmt.run(values).changes;
  }

  function one(edgeId: string, storeKey: number, line: string, r: ResultRecord): number {
    const shadow = r.shadow !== undefined;
    return run(shadow ? oneRow.shadow : oneRow.plain, edgeId, storeKey, line, [r], shadow);
  }

  return {
    one,
    all(edgeId, storeKey, line, results) {
      for (let at = 0; at < results.length; at += ROWS_PER_STATEMENT) {
        const rows = results.slice(at, at + ROWS_PER_STATEMENT);
        const shadow = rows.some((r) => r.shadow !== undefined);
        // The rows after the last whole chunk go one by one.
        const inserted =
          rows.length === ROWS_PER_STATEMENT
            ? run(shadow ? chunk.shadow : chunk.plain, edgeId, storeKey, line, rows, shadow)
            : rows.reduce((n, r) => n + one(edgeId, storeKey, line, r), 0);
        if (inserted !== rows.length) throw new BulkShortfall();
      }
    },
  };
}
