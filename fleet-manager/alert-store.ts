/**
 * Alerts (issue 17): one row per alert, with when it was raised, acknowledged (and by whom) and
 * resolved. At most one unresolved alert per (type, subject) — the subject is the edge id, or
 * `rollout:ID` — which the database enforces with a partial unique index, so a repeat updates
 * the open alert and never duplicates it. Resolved alerts beyond `maxAlerts` are deleted, oldest
 * first. The SQLite implementation opens its own connection to `fleet.db`, like the other stores.
 *
 * The changes people are told about (raised, acknowledged, resolved) are also written to a change
 * log, `alert_changes`, in the same transaction as the change itself, each with the alert as it
 * was then. The webhook sender reads the log after its own cursor (webhook-sender.ts), so a fleet
 * that dies right after an alert changed still notifies it when it starts again. Change numbers
 * grow in commit order (SQLite has one writer; PostgreSQL takes a lock for them), so a reader
 * that has seen change N has seen every change before it. The newest `maxAlerts` changes are kept.
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { AlertView, LoggedAlertChange, Severity } from './alert-schemas.js';

/** What raises (or repeats) an alert. */
export interface AlertInput {
  type: string;
  source: 'edge' | 'fleet';
  /** The edge id, or `rollout:ID`: one open alert per (type, subject). */
  subject: string;
  edgeId: string | null;
  line: string | null;
  severity: Severity;
  message: string;
  data: Record<string, unknown> | null;
  /** The edge's clock of the report behind it (edge alarms), so an older report never undoes a newer one. */
  sourceTs?: number | null;
}

export interface AlertRecord extends AlertView {
  subject: string;
  sourceTs: number | null;
}

export interface AlertListQuery {
  state?: 'open' | 'acknowledged' | 'resolved' | 'active';
  type?: string;
  line?: string;
  edgeId?: string;
  /** Raised at or after (epoch ms). */
  since?: number;
  /** Raised before. */
  until?: number;
  limit: number;
  /** Ids below this one (newest first). */
  before?: number;
}

export interface AlertStore {
  /** Raises an alert, or updates the open one of (type, subject); `created` tells which. */
  raise(input: AlertInput, at: number): Promise<{ alert: AlertRecord; created: boolean }>;
  /** Resolves the open alert of (type, subject); null when none is open. */
  resolve(type: string, subject: string, at: number, sourceTs?: number | null): Promise<AlertRecord | null>;
  /** Acknowledges an alert; `changed` false when it already was (the first acknowledgement stays). Null: no such alert. */
  acknowledge(id: number, by: string, at: number): Promise<{ alert: AlertRecord; changed: boolean } | null>;
  get(id: number): Promise<AlertRecord | null>;
  /** The open (unresolved) alert of (type, subject), or null. */
  open(type: string, subject: string): Promise<AlertRecord | null>;
  /** The latest alert of (type, subject), resolved or not. */
  latest(type: string, subject: string): Promise<AlertRecord | null>;
  /** Every unresolved alert. */
  listActive(): Promise<AlertRecord[]>;
  /** The unresolved alerts of one subject (an edge id, or `rollout:ID`). */
  activeOf(subject: string): Promise<AlertRecord[]>;
  list(query: AlertListQuery): Promise<AlertRecord[]>;
  /** Unresolved alerts: not acknowledged (`open`) and acknowledged. */
  counts(): Promise<{ open: number; acknowledged: number }>;
  /** Unresolved alerts per type (a metrics gauge). */
  openAlertsByType(): Promise<Record<string, number>>;
  /** Logged changes (raised, acknowledged, resolved) numbered above `seq`, oldest first, at most `limit`. */
  changesAfter(seq: number, limit: number): Promise<LoggedAlertChange[]>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  source TEXT NOT NULL,
  subject TEXT NOT NULL,
  edge_id TEXT,
  line TEXT,
  severity TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT,
  source_ts INTEGER,
  raised_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  count INTEGER NOT NULL DEFAULT 1,
  acknowledged_at INTEGER,
  acknowledged_by TEXT,
  resolved_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (type, subject) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_subject ON alerts (type, subject, id);
CREATE INDEX IF NOT EXISTS alerts_active_subject ON alerts (subject) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS alerts_resolved ON alerts (resolved_at) WHERE resolved_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS alert_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  alert_id INTEGER NOT NULL,
  event TEXT NOT NULL,
  at INTEGER NOT NULL,
  alert TEXT NOT NULL
);
`;

interface Row {
  id: number;
  type: string;
  source: string;
  subject: string;
  edge_id: string | null;
  line: string | null;
  severity: string;
  message: string;
  data: string | null;
  source_ts: number | null;
  raised_at: number;
  updated_at: number;
  count: number;
  acknowledged_at: number | null;
  acknowledged_by: string | null;
  resolved_at: number | null;
}

const ROLLOUT_PREFIX = 'rollout:';

function toRecord(r: Row): AlertRecord {
  return {
    id: r.id,
    type: r.type,
    source: r.source as AlertRecord['source'],
    severity: r.severity as Severity,
    state: r.resolved_at !== null ? 'resolved' : r.acknowledged_at !== null ? 'acknowledged' : 'open',
    edgeId: r.edge_id,
    line: r.line,
    rolloutId: r.subject.startsWith(ROLLOUT_PREFIX) ? r.subject.slice(ROLLOUT_PREFIX.length) : null,
    message: r.message,
    data: r.data === null ? null : (JSON.parse(r.data) as Record<string, unknown>),
    raisedAt: r.raised_at,
    updatedAt: r.updated_at,
    count: r.count,
    acknowledgedAt: r.acknowledged_at,
    acknowledgedBy: r.acknowledged_by,
    resolvedAt: r.resolved_at,
    subject: r.subject,
    sourceTs: r.source_ts,
  };
}

/** The public view of a record (what routes, feeds and webhooks carry). */
export function alertView(r: AlertRecord): AlertView {
  const { subject: _s, sourceTs: _t, ...view } = r;
  return view;
}

/** The subject of a rollout's alert. */
export const rolloutSubject = (rolloutId: string) => `${ROLLOUT_PREFIX}${rolloutId}`;

/** A change log row. */
interface ChangeRow {
  seq: number;
  event: string;
  alert: string;
}

const toChange = (r: ChangeRow): LoggedAlertChange => ({ seq: r.seq, event: r.event as LoggedAlertChange['event'], alert: JSON.parse(r.alert) as AlertView });

/** Most bytes of an alert's data kept (an edge's alarm figures are small; anything bigger is cut). */
const MAX_DATA_BYTES = 4096;

function dataText(data: Record<string, unknown> | null): string | null {
  if (data === null) return null;
  const text = JSON.stringify(data);
  return text.length <= MAX_DATA_BYTES ? text : JSON.stringify({ truncated: true, bytes: text.length });
}

export interface SqliteAlertStoreOptions {
  file: string;
  /** Resolved alerts kept at most (oldest deleted first); unresolved ones are never deleted. */
  maxAlerts: number;
}

/** Opens the alert store on the fleet database. */
export function openSqliteAlertStore(opts: SqliteAlertStoreOptions): AlertStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateAlertSchema(db);
    return closingConnection(createSqliteAlertStore(db, opts), db);
  });
}

/** Creates or upgrades the alert tables on an open connection (idempotent). */
export function migrateAlertSchema(db: Database.Database): void {
  db.exec(SCHEMA);
}

/** The AlertStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteAlertStore(db: Database.Database, opts: SqliteAlertStoreOptions): AlertStore {
    const st = {
    get: db.prepare<[number], Row>('SELECT * FROM alerts WHERE id = ?'),
    open: db.prepare<[string, string], Row>('SELECT * FROM alerts WHERE type = ? AND subject = ? AND resolved_at IS NULL'),
    latest: db.prepare<[string, string], Row>('SELECT * FROM alerts WHERE type = ? AND subject = ? ORDER BY id DESC LIMIT 1'),
    insert: db.prepare(
      `INSERT INTO alerts (type, source, subject, edge_id, line, severity, message, data, source_ts, raised_at, updated_at)
       VALUES (@type, @source, @subject, @edge_id, @line, @severity, @message, @data, @source_ts, @at, @at)`,
    ),
    repeat: db.prepare(
      `UPDATE alerts SET severity = @severity, message = @message, data = @data, line = coalesce(@line, line),
         source_ts = max(coalesce(source_ts, 0), coalesce(@source_ts, 0)), updated_at = @at, count = count + 1 WHERE id = @id`,
    ),
    resolve: db.prepare<{ id: number; at: number; source_ts: number | null }>(
      'UPDATE alerts SET resolved_at = @at, updated_at = @at, source_ts = coalesce(@source_ts, source_ts) WHERE id = @id',
    ),
    ack: db.prepare<{ id: number; at: number; by: string }>(
      'UPDATE alerts SET acknowledged_at = @at, acknowledged_by = @by, updated_at = @at WHERE id = @id AND acknowledged_at IS NULL',
    ),
    active: db.prepare<[], Row>('SELECT * FROM alerts WHERE resolved_at IS NULL ORDER BY id'),
    activeOf: db.prepare<[string], Row>('SELECT * FROM alerts WHERE subject = ? AND resolved_at IS NULL ORDER BY id'),
    counts: db.prepare<[], { open: number | null; acknowledged: number | null }>(
      'SELECT sum(acknowledged_at IS NULL) AS open, sum(acknowledged_at IS NOT NULL) AS acknowledged FROM alerts WHERE resolved_at IS NULL',
    ),
    byType: db.prepare<[], { type: string; n: number }>('SELECT type, count(*) AS n FROM alerts WHERE resolved_at IS NULL GROUP BY type'),
    resolvedCount: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM alerts WHERE resolved_at IS NOT NULL'),
    prune: db.prepare<[number]>(
      'DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE resolved_at IS NOT NULL ORDER BY resolved_at, id LIMIT ?)',
    ),
    logChange: db.prepare<[number, string, number, string]>('INSERT INTO alert_changes (alert_id, event, at, alert) VALUES (?, ?, ?, ?)'),
    pruneChanges: db.prepare<[number]>('DELETE FROM alert_changes WHERE seq <= ?'),
    changesAfter: db.prepare<[number, number], ChangeRow>('SELECT seq, event, alert FROM alert_changes WHERE seq > ? ORDER BY seq LIMIT ?'),
  };
  /** Logs a change in the caller's transaction; the newest maxAlerts changes are kept. */
  function logChange(event: LoggedAlertChange['event'], alert: AlertRecord, at: number): void {
    const seq = Number(st.logChange.run(alert.id, event, at, JSON.stringify(alertView(alert))).lastInsertRowid);
    if (seq > opts.maxAlerts) st.pruneChanges.run(seq - opts.maxAlerts);
  }
  const raise = db.transaction((input: AlertInput, at: number) => {
    const params = {
      type: input.type,
      source: input.source,
      subject: input.subject,
      edge_id: input.edgeId,
      line: input.line,
      severity: input.severity,
      message: input.message,
      data: dataText(input.data),
      source_ts: input.sourceTs ?? null,
      at,
    };
    const open = st.open.get(input.type, input.subject);
    if (open) {
      st.repeat.run({ ...params, id: open.id });
      return { alert: toRecord(st.get.get(open.id)!), created: false };
    }
    const id = Number(st.insert.run(params).lastInsertRowid);
    const alert = toRecord(st.get.get(id)!);
    logChange('raised', alert, at);
    return { alert, created: true };
  });
  const resolve = db.transaction((type: string, subject: string, at: number, sourceTs: number | null) => {
    const open = st.open.get(type, subject);
    if (!open) return null;
    st.resolve.run({ id: open.id, at, source_ts: sourceTs });
    // Bounded: the oldest resolved alerts go once there are more than maxAlerts.
    const over = st.resolvedCount.get()!.n - opts.maxAlerts;
    if (over > 0) st.prune.run(over);
    const alert = toRecord(st.get.get(open.id)!);
    logChange('resolved', alert, at);
    return alert;
  });
  const acknowledge = db.transaction((id: number, by: string, at: number) => {
    if (!st.get.get(id)) return null;
    const changed = st.ack.run({ id, by, at }).changes > 0;
    const alert = toRecord(st.get.get(id)!);
    if (changed) logChange('acknowledged', alert, at);
    return { alert, changed };
  });
  let closed = false;
  return {
    async raise(input, at) {
      return raise(input, at);
    },
    async resolve(type, subject, at, sourceTs) {
      return resolve(type, subject, at, sourceTs ?? null);
    },
    async acknowledge(id, by, at) {
      return acknowledge(id, by, at);
    },
    async get(id) {
      const r = st.get.get(id);
      return r ? toRecord(r) : null;
    },
    async open(type, subject) {
      const r = st.open.get(type, subject);
      return r ? toRecord(r) : null;
    },
    async latest(type, subject) {
      const r = st.latest.get(type, subject);
      return r ? toRecord(r) : null;
    },
    async listActive() {
      return st.active.all().map(toRecord);
    },
    async activeOf(subject) {
      return st.activeOf.all(subject).map(toRecord);
    },
    async list(q) {
      const where: string[] = [];
      const params: Record<string, unknown> = { limit: q.limit };
      if (q.state === 'open') where.push('resolved_at IS NULL AND acknowledged_at IS NULL');
      else if (q.state === 'acknowledged') where.push('resolved_at IS NULL AND acknowledged_at IS NOT NULL');
      else if (q.state === 'resolved') where.push('resolved_at IS NOT NULL');
      else if (q.state === 'active') where.push('resolved_at IS NULL');
      if (q.type !== undefined) (where.push('type = @type'), (params.type = q.type));
      if (q.line !== undefined) (where.push('line = @line'), (params.line = q.line));
      if (q.edgeId !== undefined) (where.push('edge_id = @edge'), (params.edge = q.edgeId));
      if (q.since !== undefined) (where.push('raised_at >= @since'), (params.since = q.since));
      if (q.until !== undefined) (where.push('raised_at < @until'), (params.until = q.until));
      if (q.before !== undefined) (where.push('id < @before'), (params.before = q.before));
      // Only fixed clauses are joined; every value is a bound parameter.
      const sql = `SELECT * FROM alerts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT @limit`;
      return (db.prepare(sql).all(params) as Row[]).map(toRecord);
    },
    async counts() {
      const c = st.counts.get()!;
      return { open: c.open ?? 0, acknowledged: c.acknowledged ?? 0 };
    },
    async openAlertsByType() {
      return Object.fromEntries(st.byType.all().map((r) => [r.type, r.n]));
    },
    async changesAfter(seq, limit) {
      return st.changesAfter.all(seq, limit).map(toChange);
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}

/** The row mapping and data bound, shared with the PostgreSQL implementation (pg/alert-store-pg.ts). */
export { toRecord as alertRecordOf, dataText as alertDataText, toChange as alertChangeOf, type Row as AlertRow, type ChangeRow as AlertChangeRow };
