/**
 * Golden-set self-test reports on PostgreSQL (issue 18): the latest report of each model version
 * on each edge, with the same interface as the SQLite store (fleet-manager/golden-set-store.ts).
 */
import type pg from 'pg';
import type { GoldenSetReport } from '../../protocol/monitoring.js';
import { toGoldenSetRecord, toGoldenSetRow, type GoldenSetRow, type GoldenSetStore } from '../golden-set-store.js';
import type { PgMigration } from './pg-db.js';

export const GOLDEN_SET_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'golden-set-1',
    sql: `
CREATE TABLE golden_set_reports (
  edge_id TEXT NOT NULL,
  model TEXT NOT NULL,
  ran_at BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  report TEXT NOT NULL,
  outcomes TEXT NOT NULL,
  PRIMARY KEY (edge_id, model)
);
`,
  },
];

/** The golden-set store on `pool`, whose database GOLDEN_SET_PG_MIGRATIONS has been applied to. */
export function pgGoldenSetStore(pool: pg.Pool, _opts: Record<string, never> = {}): GoldenSetStore {
  return {
    async record(edgeId, data, receivedAt) {
      const r = toGoldenSetRow(edgeId, data, receivedAt);
      // The WHERE makes a late, older report a no-op, however instances interleave.
      await pool.query(
        `INSERT INTO golden_set_reports (edge_id, model, ran_at, received_at, report, outcomes) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (edge_id, model) DO UPDATE SET
           ran_at = excluded.ran_at, received_at = excluded.received_at, report = excluded.report, outcomes = excluded.outcomes
         WHERE excluded.ran_at >= golden_set_reports.ran_at`,
        [r.edge_id, r.model, r.ran_at, r.received_at, r.report, r.outcomes],
      );
    },
    async forEdge(edgeId, limit) {
      const { rows } = await pool.query<GoldenSetRow>(
        'SELECT * FROM golden_set_reports WHERE edge_id = $1 ORDER BY ran_at DESC, model COLLATE "C" LIMIT $2',
        [edgeId, limit],
      );
      return rows.map(toGoldenSetRecord);
    },
    async latestFor(edgeIds, model) {
      const out = new Map<string, GoldenSetReport>();
      if (edgeIds.length === 0) return out;
      const { rows } = await pool.query<Pick<GoldenSetRow, 'edge_id' | 'report'>>(
        'SELECT edge_id, report FROM golden_set_reports WHERE edge_id = ANY($1::text[]) AND model = $2',
        [edgeIds, model],
      );
      const byEdge = new Map(rows.map((r) => [r.edge_id, r.report]));
      // In the order asked, like the SQLite store.
      for (const id of edgeIds) {
        const report = byEdge.get(id);
        if (report !== undefined) out.set(id, JSON.parse(report) as GoldenSetReport);
      }
      return out;
    },
    async close() {
      // The pool belongs to the storage factory, which ends it once every store is closed.
    },
  };
}
