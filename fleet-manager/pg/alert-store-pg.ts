/**
 * Alerts on PostgreSQL (issue 18): the same AlertStore as alert-store.ts. "One open alert per
 * (type, subject)" is the partial unique index `alerts_one_open`, and raise() is one
 * `INSERT … ON CONFLICT (type, subject) WHERE resolved_at IS NULL DO UPDATE`: of several fleet
 * instances raising the same alert at once, one inserts and the others update that row, never a
 * second open alert and never a unique-violation error.
 *
 * The change log (`alert_changes`, see alert-store.ts) is written in the change's transaction
 * under a transaction-scoped advisory lock taken before its number is drawn: change numbers then
 * grow in commit order across instances, so the webhook sender never passes a change that an
 * instance has numbered but not yet committed.
 */
import type pg from 'pg';
import type { AlertStore, AlertRecord, AlertInput } from '../alert-store.js';
import { alertRecordOf, alertDataText, alertChangeOf, alertView, type AlertRow, type AlertChangeRow } from '../alert-store.js';
import type { LoggedAlertChange } from '../alert-schemas.js';
import { noNul, withTransaction, type PgMigration } from './pg-db.js';

/** Key of the advisory lock that orders alert change numbers (any fixed 64-bit value unique to it). */
const CHANGE_LOG_LOCK = 0x6f73_7072_0a1e;

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
  {
    // The change log the webhook sender reads (issue 17: no notification lost to a crash).
    id: 'alerts-2',
    sql: `
CREATE TABLE alert_changes (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  alert_id BIGINT NOT NULL,
  event TEXT NOT NULL,
  at BIGINT NOT NULL,
  alert TEXT NOT NULL
);
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

  /** Logs a change in the caller's transaction; the newest maxAlerts changes are kept. */
  async function logChange(c: pg.PoolClient, event: LoggedAlertChange['event'], alert: AlertRecord, at: number): Promise<void> {
    await c.query('SELECT pg_advisory_xact_lock($1)', [CHANGE_LOG_LOCK]);
    const r = await c.query<{ seq: number }>('INSERT INTO alert_changes (alert_id, event, at, alert) VALUES ($1, $2, $3, $4) RETURNING seq', [
      alert.id,
      event,
      at,
      JSON.stringify(alertView(alert)),
    ]);
    const seq = r.rows[0]!.seq;
    if (seq > opts.maxAlerts) await c.query('DELETE FROM alert_changes WHERE seq <= $1', [seq - opts.maxAlerts]);
  }

  return {
    async raise(input: AlertInput, at: number) {
      return withTransaction(pool, async (c) => {
        // xmax = 0 only on a row this statement inserted (an updated row carries our transaction id).
        const r = await c.query<AlertRow & { inserted: boolean }>(
          `INSERT INTO alerts AS a (type, source, subject, edge_id, line, severity, message, data, source_ts, raised_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10)
           ON CONFLICT (type, subject) WHERE resolved_at IS NULL DO UPDATE SET
             severity = EXCLUDED.severity, message = EXCLUDED.message, data = EXCLUDED.data, line = coalesce(EXCLUDED.line, a.line),
             source_ts = greatest(coalesce(a.source_ts, 0), coalesce(EXCLUDED.source_ts, 0)), updated_at = EXCLUDED.updated_at, count = a.count + 1
           RETURNING a.*, (a.xmax = 0) AS inserted`,
          // An edge's own text (its event's message, its line) may hold NUL, which no text column can.
        [input.type, input.source, input.subject, input.edgeId, noNul(input.line), input.severity, noNul(input.message), alertDataText(input.data), input.sourceTs ?? null, at],
        );
        const { inserted, ...row } = r.rows[0]!;
        const alert = alertRecordOf(row);
        if (inserted) await logChange(c, 'raised', alert, at);
        return { alert, created: inserted };
      });
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
        const alert = alertRecordOf(r);
        await logChange(c, 'resolved', alert, at);
        return alert;
      });
    },
    async acknowledge(id, by, at) {
      const changed = await withTransaction(pool, async (c) => {
        const r = (
          await c.query<AlertRow>('UPDATE alerts SET acknowledged_at = $2, acknowledged_by = $3, updated_at = $2 WHERE id = $1 AND acknowledged_at IS NULL RETURNING *', [id, at, by])
        ).rows[0];
        if (!r) return null;
        const alert = alertRecordOf(r);
        await logChange(c, 'acknowledged', alert, at);
        return alert;
      });
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
    async changesAfter(seq, limit) {
      const r = await pool.query<AlertChangeRow>('SELECT seq, event, alert FROM alert_changes WHERE seq > $1 ORDER BY seq LIMIT $2', [seq, limit]);
      return r.rows.map(alertChangeOf);
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
