/**
 * Alerts on PostgreSQL (issue 18): the same AlertStore as alert-store.ts. "One open alert per
 * (type, subject)" is the partial unique index `alerts_one_open`, and raise() is one
 * `INSERT … ON CONFLICT (type, subject) WHERE resolved_at IS NULL DO UPDATE`: of several fleet
 * instances raising the same alert at once, one inserts and the others update that row, never a
 * second open alert and never a unique-violation error.
 */
import type pg from 'pg';
import type { AlertStore, AlertRecord, AlertInput } from '../alert-store.js';
import { alertRecordOf, alertDataText, type AlertRow } from '../alert-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

export const ALERT_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'alerts-1',
    sql: `
CREATE TABLE alerts (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  type TEXT NOT NULL,
  source TEXT NOT NULL,
  subject TEXT NOT NULL,
  edge_id TEXT,
  line TEXT,
  severity TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT,
  source_ts BIGINT,
  raised_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  count BIGINT NOT NULL DEFAULT 1,
  acknowledged_at BIGINT,
  acknowledged_by TEXT,
  resolved_at BIGINT
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (type, subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_subject ON alerts (type, subject, id);
CREATE INDEX alerts_active_subject ON alerts (subject) WHERE resolved_at IS NULL;
CREATE INDEX alerts_resolved ON alerts (resolved_at, id) WHERE resolved_at IS NOT NULL;
`,
  },
];

export interface PgAlertStoreOptions {
  /** Resolved alerts kept at most (oldest deleted first); unresolved ones are never deleted. */
  maxAlerts: number;
}

/** The alert store on a PostgreSQL pool (ALERT_PG_MIGRATIONS applied by the caller). */
export function pgAlertStore(pool: pg.Pool, opts: PgAlertStoreOptions): AlertStore {
  const one = async (sql: string, params: unknown[]): Promise<AlertRecord | null> => {
    const r = (await pool.query<AlertRow>(sql, params)).rows[0];
    return r ? alertRecordOf(r) : null;
  };
  const many = async (sql: string, params: unknown[] = []): Promise<AlertRecord[]> => (await pool.query<AlertRow>(sql, params)).rows.map(alertRecordOf);

  return {
    async raise(input: AlertInput, at: number) {
      // xmax = 0 only on a row this statement inserted (an updated row carries our transaction id).
      const r = await pool.query<AlertRow & { inserted: boolean }>(
        `INSERT INTO alerts AS a (type, source, subject, edge_id, line, severity, message, data, source_ts, raised_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
         ON CONFLICT (type, subject) WHERE resolved_at IS NULL DO UPDATE SET
           severity = EXCLUDED.severity, message = EXCLUDED.message, data = EXCLUDED.data, line = coalesce(EXCLUDED.line, a.line),
           source_ts = greatest(coalesce(a.source_ts, 0), coalesce(EXCLUDED.source_ts, 0)), updated_at = EXCLUDED.updated_at, count = a.count + 1
         RETURNING a.*, (a.xmax = 0) AS inserted`,
        [input.type, input.source, input.subject, input.edgeId, input.line, input.severity, input.message, alertDataText(input.data), input.sourceTs ?? null, at],
      );
      const { inserted, ...row } = r.rows[0]!;
      return { alert: alertRecordOf(row), created: inserted };
    },
    async resolve(type, subject, at, sourceTs) {
      return withTransaction(pool, async (c) => {
        const r = (
          await c.query<AlertRow>(
            `UPDATE alerts SET resolved_at = $3, updated_at = $3, source_ts = coalesce($4, source_ts)
             WHERE type = $1 AND subject = $2 AND resolved_at IS NULL RETURNING *`,
            [type, subject, at, sourceTs ?? null],
          )
        ).rows[0];
        if (!r) return null;
        // Bounded: the newest maxAlerts resolved alerts stay; the same statement from two instances deletes the same rows.
        await c.query(
          `DELETE FROM alerts WHERE id IN
             (SELECT id FROM alerts WHERE resolved_at IS NOT NULL ORDER BY resolved_at DESC, id DESC OFFSET $1)`,
          [opts.maxAlerts],
        );
        return alertRecordOf(r);
      });
    },
    async acknowledge(id, by, at) {
      const changed = await one(
        'UPDATE alerts SET acknowledged_at = $2, acknowledged_by = $3, updated_at = $2 WHERE id = $1 AND acknowledged_at IS NULL RETURNING *',
        [id, at, by],
      );
      if (changed) return { alert: changed, changed: true };
      const alert = await one('SELECT * FROM alerts WHERE id = $1', [id]);
      return alert ? { alert, changed: false } : null;
    },
    get: (id) => one('SELECT * FROM alerts WHERE id = $1', [id]),
    open: (type, subject) => one('SELECT * FROM alerts WHERE type = $1 AND subject = $2 AND resolved_at IS NULL', [type, subject]),
    latest: (type, subject) => one('SELECT * FROM alerts WHERE type = $1 AND subject = $2 ORDER BY id DESC LIMIT 1', [type, subject]),
    listActive: () => many('SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id'),
    activeOf: (subject) => many('SELECT * FROM alerts WHERE subject = $1 AND resolved_at IS NULL ORDER BY id', [subject]),
    async list(q) {
      const where: string[] = [];
      const params: unknown[] = [];
      const bind = (clause: (p: string) => string, value: unknown) => {
        params.push(value);
        where.push(clause(`$${params.length}`));
      };
      if (q.state === 'open') where.push('resolved_at IS NULL AND acknowledged_at IS NULL');
      else if (q.state === 'acknowledged') where.push('resolved_at IS NULL AND acknowledged_at IS NOT NULL');
      else if (q.state === 'resolved') where.push('resolved_at IS NOT NULL');
      else if (q.state === 'active') where.push('resolved_at IS NULL');
      if (q.type !== undefined) bind((p) => `type = ${p}`, q.type);
      if (q.line !== undefined) bind((p) => `line = ${p}`, q.line);
      if (q.edgeId !== undefined) bind((p) => `edge_id = ${p}`, q.edgeId);
      if (q.since !== undefined) bind((p) => `raised_at >= ${p}`, q.since);
      if (q.until !== undefined) bind((p) => `raised_at < ${p}`, q.until);
      if (q.before !== undefined) bind((p) => `id < ${p}`, q.before);
      params.push(q.limit);
      // Only fixed clauses are joined; every value is a bound parameter.
      return many(`SELECT * FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT $${params.length}`, params);
    },
    async counts() {
      const r = await pool.query<{ open: number; acknowledged: number }>(
        `SELECT count(*) FILTER (WHERE acknowledged_at IS NULL) AS open, count(*) FILTER (WHERE acknowledged_at IS NOT NULL) AS acknowledged
         FROM alerts WHERE resolved_at IS NULL`,
      );
      return r.rows[0]!;
    },
    async openAlertsByType() {
      const r = await pool.query<{ type: string; n: number }>('SELECT type, count(*) AS n FROM alerts WHERE resolved_at IS NULL GROUP BY type');
      return Object.fromEntries(r.rows.map((x) => [x.type, x.n]));
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
