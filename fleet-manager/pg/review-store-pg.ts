/**
 * Inspectors' reviews on PostgreSQL (issue 18): the same ReviewStore as review-store.ts, one row
 * per result key, answered from this table alone (the result's line, model, call and time are
 * copied into the review when it is made). put() and remove() lock the row they replace, so the
 * review they answer as replaced is the one that was there.
 */
import type pg from 'pg';
import { resultKeyString, type ResultKey } from '../image-store.js';
import { reviewRecordOf, reviewRowOf, type AccuracyCounts, type ReviewRow, type ReviewStore } from '../review-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

export const REVIEW_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'reviews-1',
    sql: `
-- Keys and model names collate byte-wise ("C"), as SQLite compares TEXT: orders and keyset pages agree on both backends.
CREATE TABLE result_reviews (
  edge_id TEXT COLLATE "C" NOT NULL,
  store_id TEXT COLLATE "C" NOT NULL,
  seq BIGINT NOT NULL,
  line TEXT NOT NULL,
  model TEXT COLLATE "C" NOT NULL,
  model_verdict TEXT NOT NULL,
  model_label TEXT NOT NULL,
  ts BIGINT NOT NULL,
  review TEXT NOT NULL,
  verdict TEXT NOT NULL,
  label TEXT NOT NULL,
  reviewer TEXT NOT NULL,
  reviewed_at BIGINT NOT NULL,
  PRIMARY KEY (edge_id, store_id, seq)
);
CREATE INDEX result_reviews_line_ts ON result_reviews (line, ts, edge_id, store_id, seq);
`,
  },
];

const COLUMNS = ['edge_id', 'store_id', 'seq', 'line', 'model', 'model_verdict', 'model_label', 'ts', 'review', 'verdict', 'label', 'reviewer', 'reviewed_at'] as const;
const KEY = 'edge_id = $1 AND store_id = $2 AND seq = $3';
const keyParams = (k: ResultKey) => [k.edgeId, k.storeId, k.seq];

/** The review store on a PostgreSQL pool (REVIEW_PG_MIGRATIONS applied by the caller). */
export function pgReviewStore(pool: pg.Pool, _opts: Record<string, never> = {}): ReviewStore {
  const range = (from?: number, to?: number) => [from ?? 0, to ?? Number.MAX_SAFE_INTEGER];
  const getRow = async (q: pg.Pool | pg.PoolClient, key: ResultKey, lock = '') => (await q.query<ReviewRow>(`SELECT * FROM result_reviews WHERE ${KEY} ${lock}`, keyParams(key))).rows[0];
  return {
    async put(review) {
      const row = reviewRowOf(review);
      return withTransaction(pool, async (c) => {
        const before = await getRow(c, review, 'FOR UPDATE');
        await c.query(
          `INSERT INTO result_reviews (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})
           ON CONFLICT (edge_id, store_id, seq) DO UPDATE SET ${COLUMNS.slice(3).map((col) => `${col} = EXCLUDED.${col}`).join(', ')}`,
          COLUMNS.map((col) => row[col]),
        );
        return before ? reviewRecordOf(before) : null;
      });
    },
    async get(key) {
      const r = await getRow(pool, key);
      return r ? reviewRecordOf(r) : null;
    },
    async remove(key) {
      const r = (await pool.query<ReviewRow>(`DELETE FROM result_reviews WHERE ${KEY} RETURNING *`, keyParams(key))).rows[0];
      return r ? reviewRecordOf(r) : null;
    },
    async reviewed(keys) {
      if (keys.length === 0) return new Set();
      const r = await pool.query<{ edge_id: string; store_id: string; seq: number }>(
        `SELECT r.edge_id, r.store_id, r.seq FROM result_reviews r
         JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k (edge_id, store_id, seq) USING (edge_id, store_id, seq)`,
        [keys.map((k) => k.edgeId), keys.map((k) => k.storeId), keys.map((k) => k.seq)],
      );
      return new Set(r.rows.map((x) => resultKeyString({ edgeId: x.edge_id, storeId: x.store_id, seq: x.seq })));
    },
    async accuracy(line, from, to) {
      const r = await pool.query<AccuracyCounts>(
        `SELECT model,
           count(*) AS "reviewed",
           count(*) FILTER (WHERE model_verdict = 'defect') AS "defectCalls",
           count(*) FILTER (WHERE model_verdict = 'ok') AS "okCalls",
           count(*) FILTER (WHERE review = 'confirmed') AS "confirmed",
           count(*) FILTER (WHERE review = 'confirmed' AND model_verdict = 'defect') AS "confirmedDefects",
           count(*) FILTER (WHERE review = 'false-call') AS "falseCalls",
           count(*) FILTER (WHERE review = 'relabelled') AS "relabelled",
           count(*) FILTER (WHERE review = 'missed-defect') AS "missedDefects"
         FROM result_reviews WHERE line = $1 AND ts >= $2 AND ts < $3
         GROUP BY model ORDER BY model`,
        [line, ...range(from, to)],
      );
      return r.rows;
    },
    async list(q) {
      const params: unknown[] = [q.line, ...range(q.from, q.to), q.limit];
      let after = '';
      if (q.after) {
        params.push(q.after.ts, q.after.edgeId, q.after.storeId, q.after.seq);
        after = 'AND (ts, edge_id, store_id, seq) > ($5, $6, $7, $8)';
      }
      const r = await pool.query<ReviewRow>(
        `SELECT * FROM result_reviews WHERE line = $1 AND ts >= $2 AND ts < $3 ${after} ORDER BY ts, edge_id, store_id, seq LIMIT $4`,
        params,
      );
      return r.rows.map(reviewRecordOf);
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
