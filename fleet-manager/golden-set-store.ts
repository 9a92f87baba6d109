/**
 * Golden-set self-test reports from edges (issue 17): the latest report of each model version on
 * each edge, with its per-image outcomes, as the edge's `golden-set` events carry them. The
 * edge view (`GET /api/edges/:id/golden-set`) and the rollout gate `goldenSet` read it. The
 * SQLite implementation opens its own connection to `fleet.db`, like the other stores.
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { GoldenImageOutcome, GoldenSetEventData, GoldenSetReport } from '../protocol/monitoring.js';

/** A stored report: what the edge said, and when the fleet received it. */
export interface GoldenSetRecord extends GoldenSetReport {
  edgeId: string;
  receivedAt: number;
  outcomes: GoldenImageOutcome[];
}

export interface GoldenSetStore {
  /** Keeps the report unless one of the same model on the same edge that ran later is stored already. */
  record(edgeId: string, data: GoldenSetEventData, receivedAt: number): Promise<void>;
  /** An edge's latest report per model, newest first (at most `limit`). */
  forEdge(edgeId: string, limit: number): Promise<GoldenSetRecord[]>;
  /** The latest report of `model` (name@version) on each of these edges that has one (no outcomes). */
  latestFor(edgeIds: readonly string[], model: string): Promise<Map<string, GoldenSetReport>>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS golden_set_reports (
  edge_id TEXT NOT NULL,
  model TEXT NOT NULL,
  ran_at INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  report TEXT NOT NULL,
  outcomes TEXT NOT NULL,
  PRIMARY KEY (edge_id, model)
) WITHOUT ROWID;
`;

export interface GoldenSetRow {
  edge_id: string;
  model: string;
  ran_at: number;
  received_at: number;
  report: string;
  outcomes: string;
}

/** A report as stored (shared by the SQLite and PostgreSQL stores). */
export function toGoldenSetRow(edgeId: string, data: GoldenSetEventData, receivedAt: number): GoldenSetRow {
  const { outcomes, ...report } = data;
  return { edge_id: edgeId, model: report.model, ran_at: report.ranAt, received_at: receivedAt, report: JSON.stringify(report), outcomes: JSON.stringify(outcomes) };
}

/** A stored row as the record the edge view shows. */
export function toGoldenSetRecord(r: GoldenSetRow): GoldenSetRecord {
  return {
    ...(JSON.parse(r.report) as GoldenSetReport),
    edgeId: r.edge_id,
    receivedAt: r.received_at,
    outcomes: JSON.parse(r.outcomes) as GoldenImageOutcome[],
  };
}

/** Opens the golden-set store on the fleet database. */
export function openSqliteGoldenSetStore(opts: { file: string }): GoldenSetStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateGoldenSetSchema(db);
    return closingConnection(createSqliteGoldenSetStore(db, opts), db);
  });
}

/** Creates or upgrades the golden set tables on an open connection (idempotent). */
export function migrateGoldenSetSchema(db: Database.Database): void {
  db.exec(SCHEMA);
}

/** The GoldenSetStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteGoldenSetStore(db: Database.Database, opts: { file: string }): GoldenSetStore {
  const st = {
    upsert: db.prepare<GoldenSetRow>(
      `INSERT INTO golden_set_reports (edge_id, model, ran_at, received_at, report, outcomes)
       VALUES (@edge_id, @model, @ran_at, @received_at, @report, @outcomes)
       ON CONFLICT (edge_id, model) DO UPDATE SET
         ran_at = excluded.ran_at, received_at = excluded.received_at, report = excluded.report, outcomes = excluded.outcomes
       WHERE excluded.ran_at >= golden_set_reports.ran_at`,
    ),
    forEdge: db.prepare<[string, number], GoldenSetRow>('SELECT * FROM golden_set_reports WHERE edge_id = ? ORDER BY ran_at DESC, model LIMIT ?'),
    one: db.prepare<[string, string], Pick<GoldenSetRow, 'report'>>('SELECT report FROM golden_set_reports WHERE edge_id = ? AND model = ?'),
  };
  let closed = false;
  return {
    async record(edgeId, data, receivedAt) {
      st.upsert.run(toGoldenSetRow(edgeId, data, receivedAt));
    },
    async forEdge(edgeId, limit) {
      return st.forEdge.all(edgeId, limit).map(toGoldenSetRecord);
    },
    async latestFor(edgeIds, model) {
      const out = new Map<string, GoldenSetReport>();
      for (const id of edgeIds) {
        const row = st.one.get(id, model);
        if (row) out.set(id, JSON.parse(row.report) as GoldenSetReport);
      }
      return out;
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}
