/**
 * Inspectors' reviews of results (issue 16): one current review per result key (edge, store,
 * seq), with what the inspector said (`review`), the frame's verdict and label after review, who
 * and when. The result's line, model, call and time are copied into the review when it is made,
 * so the accuracy figures and the dataset export are answered from this table alone (no store
 * reads another's tables). Changing a review replaces it; the audit log keeps before and after.
 * The SQLite implementation opens its own connection to `fleet.db`, like the image store.
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { Verdict } from '../protocol/messages.js';
import { resultKeyString, type ResultKey } from './image-store.js';
import type { ReviewVerdict } from './review-schemas.js';

export type { ReviewVerdict };

/** The result a review is about, as it was when reviewed. */
export interface ReviewedResult extends ResultKey {
  line: string;
  /** `name@version` that made the call. */
  model: string;
  /** The model's call. */
  modelVerdict: Verdict;
  modelLabel: string;
  /** When the frame was inspected (epoch ms). */
  ts: number;
}

export interface ReviewRecord extends ReviewedResult {
  review: ReviewVerdict;
  /** The frame's verdict after review (what training and exports use). */
  verdict: Verdict;
  /** The frame's label after review. */
  label: string;
  /** Who reviewed it (`user:NAME`). */
  reviewer: string;
  reviewedAt: number;
}

/** Reviews of one model version on a line, counted. */
export interface AccuracyCounts {
  model: string;
  reviewed: number;
  /** Reviewed frames the model called defect. */
  defectCalls: number;
  /** Reviewed frames the model called ok. */
  okCalls: number;
  /** Calls confirmed as right (defect calls and ok calls). */
  confirmed: number;
  /** Defect calls confirmed as defects with the model's label. */
  confirmedDefects: number;
  falseCalls: number;
  relabelled: number;
  missedDefects: number;
}

export interface ReviewListQuery {
  line: string;
  /** Inclusive epoch ms of the result's time. */
  from?: number;
  /** Exclusive. */
  to?: number;
  limit: number;
  /** Keyset: results after this (ts, edge, store, seq), oldest first. */
  after?: ReviewRecord;
}

export interface ReviewStore {
  /** Stores the review of a result (replacing any); returns the one it replaced. */
  put(review: ReviewRecord): Promise<ReviewRecord | null>;
  get(key: ResultKey): Promise<ReviewRecord | null>;
  /** Removes a result's review; returns it, or null when there was none. */
  remove(key: ResultKey): Promise<ReviewRecord | null>;
  /** Which of these results have a review, as `resultKeyString` strings. */
  reviewed(keys: readonly ResultKey[]): Promise<Set<string>>;
  /** Counts per model version of the reviews of a line's results in [from, to). */
  accuracy(line: string, from?: number, to?: number): Promise<AccuracyCounts[]>;
  /** A line's reviews, oldest result first, paged by keyset. */
  list(query: ReviewListQuery): Promise<ReviewRecord[]>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS result_reviews (
  edge_id TEXT NOT NULL,
  store_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  line TEXT NOT NULL,
  model TEXT NOT NULL,
  model_verdict TEXT NOT NULL,
  model_label TEXT NOT NULL,
  ts INTEGER NOT NULL,
  review TEXT NOT NULL,
  verdict TEXT NOT NULL,
  label TEXT NOT NULL,
  reviewer TEXT NOT NULL,
  reviewed_at INTEGER NOT NULL,
  PRIMARY KEY (edge_id, store_id, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS result_reviews_line_ts ON result_reviews (line, ts, edge_id, store_id, seq);
`;

interface Row {
  edge_id: string;
  store_id: string;
  seq: number;
  line: string;
  model: string;
  model_verdict: string;
  model_label: string;
  ts: number;
  review: string;
  verdict: string;
  label: string;
  reviewer: string;
  reviewed_at: number;
}

const toRecord = (r: Row): ReviewRecord => ({
  edgeId: r.edge_id,
  storeId: r.store_id,
  seq: r.seq,
  line: r.line,
  model: r.model,
  modelVerdict: r.model_verdict as Verdict,
  modelLabel: r.model_label,
  ts: r.ts,
  review: r.review as ReviewVerdict,
  verdict: r.verdict as Verdict,
  label: r.label,
  reviewer: r.reviewer,
  reviewedAt: r.reviewed_at,
});

const toRow = (r: ReviewRecord): Row => ({
  edge_id: r.edgeId,
  store_id: r.storeId,
  seq: r.seq,
  line: r.line,
  model: r.model,
  model_verdict: r.modelVerdict,
  model_label: r.modelLabel,
  ts: r.ts,
  review: r.review,
  verdict: r.verdict,
  label: r.label,
  reviewer: r.reviewer,
  reviewed_at: r.reviewedAt,
});

/** Opens the review store on the fleet database (created by openSqliteStore first). */
export function openSqliteReviewStore(opts: { file: string }): ReviewStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateReviewSchema(db);
    return closingConnection(createSqliteReviewStore(db, opts), db);
  });
}

/** Creates or upgrades the review tables on an open connection (idempotent). */
export function migrateReviewSchema(db: Database.Database): void {
  db.exec(SCHEMA);
}

/** The ReviewStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteReviewStore(db: Database.Database, opts: { file: string }): ReviewStore {
    const st = {
    get: db.prepare<[string, string, number], Row>('SELECT * FROM result_reviews WHERE edge_id = ? AND store_id = ? AND seq = ?'),
    upsert: db.prepare<Row>(
      `INSERT INTO result_reviews (edge_id, store_id, seq, line, model, model_verdict, model_label, ts, review, verdict, label, reviewer, reviewed_at)
       VALUES (@edge_id, @store_id, @seq, @line, @model, @model_verdict, @model_label, @ts, @review, @verdict, @label, @reviewer, @reviewed_at)
       ON CONFLICT (edge_id, store_id, seq) DO UPDATE SET
         line = excluded.line, model = excluded.model, model_verdict = excluded.model_verdict, model_label = excluded.model_label,
         ts = excluded.ts, review = excluded.review, verdict = excluded.verdict, label = excluded.label,
         reviewer = excluded.reviewer, reviewed_at = excluded.reviewed_at`,
    ),
    remove: db.prepare<[string, string, number]>('DELETE FROM result_reviews WHERE edge_id = ? AND store_id = ? AND seq = ?'),
    accuracy: db.prepare<{ line: string; from: number; to: number }, AccuracyCounts>(
      `SELECT model,
         count(*) AS reviewed,
         sum(model_verdict = 'defect') AS defectCalls,
         sum(model_verdict = 'ok') AS okCalls,
         sum(review = 'confirmed') AS confirmed,
         sum(review = 'confirmed' AND model_verdict = 'defect') AS confirmedDefects,
         sum(review = 'false-call') AS falseCalls,
         sum(review = 'relabelled') AS relabelled,
         sum(review = 'missed-defect') AS missedDefects
       FROM result_reviews WHERE line = @line AND ts >= @from AND ts < @to
       GROUP BY model ORDER BY model`,
    ),
    list: db.prepare<{ line: string; from: number; to: number; limit: number }, Row>(
      `SELECT * FROM result_reviews WHERE line = @line AND ts >= @from AND ts < @to
       ORDER BY ts, edge_id, store_id, seq LIMIT @limit`,
    ),
    listAfter: db.prepare<{ line: string; from: number; to: number; limit: number; ts: number; edge: string; store: string; seq: number }, Row>(
      `SELECT * FROM result_reviews WHERE line = @line AND ts < @to
         AND (ts, edge_id, store_id, seq) > (@ts, @edge, @store, @seq) AND ts >= @from
       ORDER BY ts, edge_id, store_id, seq LIMIT @limit`,
    ),
  };
  const replace = db.transaction((row: Row) => {
    const before = st.get.get(row.edge_id, row.store_id, row.seq);
    st.upsert.run(row);
    return before ? toRecord(before) : null;
  });
  const take = db.transaction((key: ResultKey) => {
    const before = st.get.get(key.edgeId, key.storeId, key.seq);
    if (before) st.remove.run(key.edgeId, key.storeId, key.seq);
    return before ? toRecord(before) : null;
  });
  let closed = false;
  const range = (from?: number, to?: number) => ({ from: from ?? 0, to: to ?? Number.MAX_SAFE_INTEGER });
  return {
    async put(review) {
      return replace(toRow(review));
    },
    async get(key) {
      const r = st.get.get(key.edgeId, key.storeId, key.seq);
      return r ? toRecord(r) : null;
    },
    async remove(key) {
      return take(key);
    },
    async reviewed(keys) {
      const found = new Set<string>();
      for (const k of keys) if (st.get.get(k.edgeId, k.storeId, k.seq)) found.add(resultKeyString(k));
      return found;
    },
    async accuracy(line, from, to) {
      return st.accuracy.all({ line, ...range(from, to) });
    },
    async list(q) {
      const base = { line: q.line, ...range(q.from, q.to), limit: q.limit };
      const rows = q.after
        ? st.listAfter.all({ ...base, ts: q.after.ts, edge: q.after.edgeId, store: q.after.storeId, seq: q.after.seq })
        : st.list.all(base);
      return rows.map(toRecord);
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}

/** The row mappings, shared with the PostgreSQL implementation (pg/review-store-pg.ts). */
export { toRecord as reviewRecordOf, toRow as reviewRowOf, type Row as ReviewRow };
