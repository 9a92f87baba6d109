/**
 * Webhook subscriptions and their durable outbox (issue 17). A delivery row is written when an
 * alert changes and stays until it is delivered (a 2xx) or given up; its id is the
 * `x-osprey-delivery` header, the same on every attempt, and (webhook, alert, event) is unique,
 * so one change is never queued twice. The body is rendered once, when queued, so every attempt
 * sends the same bytes. The outbox is bounded: past `maxOutbox` rows the oldest finished ones are
 * deleted, then the oldest waiting ones are given up. The SQLite implementation opens its own
 * connection to `fleet.db`, like the other stores.
 *
 * The store also keeps the sender's cursor into the alerts' change log (the last change queued),
 * moved in the same transaction as the deliveries it queued: after a crash the sender resumes
 * right after the last change whose deliveries were committed.
 *
 * Each claim (claimDue) carries a token, and an attempt's outcome is recorded only under the
 * token of the claim that is current: a sender that stalled past its lease, while another sender
 * claimed the delivery, has its late marks refused instead of overwriting the newer claim's.
 */
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { addMissingColumns } from './store-migrations.js';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { DeliveryView, WebhookFormat, WebhookView } from './alert-schemas.js';

export interface WebhookInput {
  name: string;
  url: string;
  format: WebhookFormat;
  types: string[];
  lines: string[];
  enabled: boolean;
}

export type WebhookRecord = Omit<WebhookView, 'pending'>;

export interface DeliveryRecord extends DeliveryView {
  body: string;
}

/** A delivery as claimed for one attempt: its marks must carry `claim`. */
export interface ClaimedDelivery extends DeliveryRecord {
  claim: string;
}

export interface NewDelivery {
  id: string;
  webhookId: number;
  alertId: number | null;
  event: string;
  body: string;
}

export interface WebhookStore {
  create(input: WebhookInput, by: string, at: number): Promise<WebhookRecord>;
  update(id: number, patch: Partial<WebhookInput>, at: number): Promise<WebhookRecord | null>;
  /** Deletes the webhook and its deliveries; false when there was none. */
  remove(id: number): Promise<boolean>;
  get(id: number): Promise<WebhookRecord | null>;
  list(): Promise<WebhookRecord[]>;
  /** Waiting deliveries per webhook id. */
  pendingCounts(): Promise<Map<number, number>>;
  /**
   * Queues deliveries (one transaction); ones already queued for (webhook, alert, event) are
   * skipped. With `cursor`, the change-log cursor moves up to it in the same transaction (never
   * down). Returns how many deliveries were new.
   */
  enqueue(deliveries: readonly NewDelivery[], at: number, cursor?: number): Promise<number>;
  /** The last alert change queued (0 before the first). */
  changeCursor(): Promise<number>;
  /** Records a delivery made outside the queue (a test), with its outcome. */
  recordAttempted(delivery: NewDelivery, at: number, outcome: { ok: boolean; status: number | null; error: string | null }): Promise<DeliveryRecord>;
  /** The oldest waiting delivery of each enabled webhook (deliveries of one webhook go in order). */
  heads(): Promise<DeliveryRecord[]>;
  /**
   * Claims the heads due at `at` for one attempt each, atomically: their next attempt moves to
   * `at + leaseMs`, so no other sender (another fleet instance) claims them until this attempt is
   * recorded (markDelivered, markFailed, release) or the lease runs out (its sender died). Answers
   * them as claimed, each with the token of this claim.
   *
   * The three marks below take effect only while `claim` is the delivery's current claim, and
   * end it; false (nothing written) when it is not: the lease ran out and another sender claimed
   * the delivery since, or it was already recorded.
   */
  claimDue(at: number, leaseMs: number): Promise<ClaimedDelivery[]>;
  /** Gives back a claimed delivery untried (its attempt was abandoned): due again at `at`, attempts unchanged. */
  release(id: string, claim: string, at: number): Promise<boolean>;
  /** A 2xx: delivered, never sent again. */
  markDelivered(id: string, claim: string, at: number, status: number): Promise<boolean>;
  /** A failed attempt: retried at `nextAt`, or given up (`nextAt` null). */
  markFailed(id: string, claim: string, at: number, outcome: { status: number | null; error: string }, nextAt: number | null): Promise<boolean>;
  /** The webhook's latest deliveries, newest first. */
  deliveries(webhookId: number, limit: number): Promise<DeliveryRecord[]>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS webhooks (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL,
  url TEXT NOT NULL,
  format TEXT NOT NULL,
  types TEXT NOT NULL,
  lines TEXT NOT NULL,
  enabled INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  webhook_id INTEGER NOT NULL,
  alert_id INTEGER,
  event TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  next_at INTEGER,
  delivered_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  claim_token TEXT,
  UNIQUE (webhook_id, alert_id, event)
);
CREATE INDEX IF NOT EXISTS webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS webhook_deliveries_hook ON webhook_deliveries (webhook_id, seq);
CREATE TABLE IF NOT EXISTS webhook_cursor (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  seq INTEGER NOT NULL
);
`;

interface HookRow {
  id: number;
  name: string;
  url: string;
  format: string;
  types: string;
  lines: string;
  enabled: number;
  created_at: number;
  created_by: string;
  updated_at: number;
}

interface DeliveryRow {
  seq: number;
  id: string;
  webhook_id: number;
  alert_id: number | null;
  event: string;
  body: string;
  status: string;
  attempts: number;
  created_at: number;
  next_at: number | null;
  delivered_at: number | null;
  last_status: number | null;
  last_error: string | null;
  claim_token: string | null;
}

const toHook = (r: HookRow): WebhookRecord => ({
  id: r.id,
  name: r.name,
  url: r.url,
  format: r.format as WebhookFormat,
  types: JSON.parse(r.types) as string[],
  lines: JSON.parse(r.lines) as string[],
  enabled: r.enabled === 1,
  createdAt: r.created_at,
  createdBy: r.created_by,
  updatedAt: r.updated_at,
});

const toDelivery = (r: DeliveryRow): DeliveryRecord => ({
  id: r.id,
  webhookId: r.webhook_id,
  alertId: r.alert_id,
  event: r.event,
  status: r.status as DeliveryRecord['status'],
  attempts: r.attempts,
  createdAt: r.created_at,
  nextAttemptAt: r.status === 'pending' ? r.next_at : null,
  deliveredAt: r.delivered_at,
  lastStatus: r.last_status,
  lastError: r.last_error,
  body: r.body,
});

/** A claimed row as answered by claimDue. */
const toClaimed = (r: DeliveryRow): ClaimedDelivery => ({ ...toDelivery(r), claim: r.claim_token! });

export interface SqliteWebhookStoreOptions {
  file: string;
  /** Delivery rows kept at most (finished ones deleted first, then the oldest waiting given up). */
  maxOutbox: number;
}

/** Opens the webhook store on the fleet database. */
export function openSqliteWebhookStore(opts: SqliteWebhookStoreOptions): WebhookStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateWebhookSchema(db);
    return closingConnection(createSqliteWebhookStore(db, opts), db);
  });
}

/** Creates or upgrades the webhook tables on an open connection (idempotent). */
export function migrateWebhookSchema(db: Database.Database): void {
  db.exec(SCHEMA);
  addMissingColumns(db, 'webhook_deliveries', [['claim_token', 'TEXT']]);
}

/** The WebhookStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteWebhookStore(db: Database.Database, opts: SqliteWebhookStoreOptions): WebhookStore {
  const st = {
    get: db.prepare<[number], HookRow>('SELECT * FROM webhooks WHERE id = ?'),
    list: db.prepare<[], HookRow>('SELECT * FROM webhooks ORDER BY id'),
    insert: db.prepare(
      `INSERT INTO webhooks (name, url, format, types, lines, enabled, created_at, created_by, updated_at)
       VALUES (@name, @url, @format, @types, @lines, @enabled, @at, @by, @at)`,
    ),
    update: db.prepare(
      'UPDATE webhooks SET name = @name, url = @url, format = @format, types = @types, lines = @lines, enabled = @enabled, updated_at = @at WHERE id = @id',
    ),
    remove: db.prepare<[number]>('DELETE FROM webhooks WHERE id = ?'),
    removeDeliveries: db.prepare<[number]>('DELETE FROM webhook_deliveries WHERE webhook_id = ?'),
    pending: db.prepare<[], { webhook_id: number; n: number }>("SELECT webhook_id, count(*) AS n FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id"),
    enqueue: db.prepare(
      `INSERT OR IGNORE INTO webhook_deliveries (id, webhook_id, alert_id, event, body, status, created_at, next_at)
       VALUES (@id, @webhookId, @alertId, @event, @body, 'pending', @at, @at)`,
    ),
    attempted: db.prepare(
      `INSERT INTO webhook_deliveries (id, webhook_id, alert_id, event, body, status, attempts, created_at, delivered_at, last_status, last_error)
       VALUES (@id, @webhookId, @alertId, @event, @body, @status, 1, @at, @deliveredAt, @lastStatus, @lastError)`,
    ),
    heads: db.prepare<[], DeliveryRow>(
      `SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled = 1
       WHERE d.seq IN (SELECT min(seq) FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id)`,
    ),
    delivered: db.prepare<{ id: string; claim: string; at: number; status: number }>(
      `UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = @at, last_status = @status, last_error = NULL, next_at = NULL,
         claim_token = NULL WHERE id = @id AND status = 'pending' AND claim_token = @claim`,
    ),
    failed: db.prepare<{ id: string; claim: string; status: number | null; error: string; nextAt: number | null; final: number }>(
      `UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = @status, last_error = @error, next_at = @nextAt, claim_token = NULL,
         status = CASE WHEN @final = 1 THEN 'failed' ELSE status END WHERE id = @id AND status = 'pending' AND claim_token = @claim`,
    ),
    lease: db.prepare<[number, string, number]>("UPDATE webhook_deliveries SET next_at = ?, claim_token = ? WHERE seq = ? AND status = 'pending'"),
    release: db.prepare<[number, string, string]>("UPDATE webhook_deliveries SET next_at = ?, claim_token = NULL WHERE id = ? AND status = 'pending' AND claim_token = ?"),
    deliveries: db.prepare<[number, number], DeliveryRow>('SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY seq DESC LIMIT ?'),
    total: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM webhook_deliveries'),
    pruneFinished: db.prepare<[number]>("DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries WHERE status != 'pending' ORDER BY seq LIMIT ?)"),
    cursor: db.prepare<[], { seq: number }>('SELECT seq FROM webhook_cursor WHERE id = 1'),
    moveCursor: db.prepare<[number]>('INSERT INTO webhook_cursor (id, seq) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET seq = max(seq, excluded.seq)'),
    giveUpOldest: db.prepare<[number]>(
      "UPDATE webhook_deliveries SET status = 'failed', last_error = 'given up: outbox full', next_at = NULL WHERE seq IN (SELECT seq FROM webhook_deliveries WHERE status = 'pending' ORDER BY seq LIMIT ?)",
    ),
  };
  const hookParams = (w: WebhookInput) => ({ name: w.name, url: w.url, format: w.format, types: JSON.stringify(w.types), lines: JSON.stringify(w.lines), enabled: w.enabled ? 1 : 0 });

  /** Keeps the outbox within maxOutbox rows. */
  function bound(): void {
    let over = st.total.get()!.n - opts.maxOutbox;
    if (over <= 0) return;
    over -= st.pruneFinished.run(over).changes;
    if (over <= 0) return;
    // Only waiting rows are left: the oldest are given up (kept as failed, pruned next time).
    st.giveUpOldest.run(over);
  }

  const enqueue = db.transaction((rows: readonly NewDelivery[], at: number, cursor: number | undefined) => {
    let added = 0;
    for (const r of rows) added += st.enqueue.run({ ...r, at }).changes;
    if (added > 0) bound();
    if (cursor !== undefined) st.moveCursor.run(cursor);
    return added;
  });
  const remove = db.transaction((id: number) => {
    st.removeDeliveries.run(id);
    return st.remove.run(id).changes > 0;
  });
  const update = db.transaction((id: number, patch: Partial<WebhookInput>, at: number) => {
    const row = st.get.get(id);
    if (!row) return null;
    const merged = { ...toHook(row), ...patch };
    st.update.run({ ...hookParams(merged), id, at });
    return toHook(st.get.get(id)!);
  });
  const claimDue = db.transaction((at: number, until: number) => {
    const due = st.heads.all().filter((d) => (d.next_at ?? 0) <= at);
    const claim = randomUUID();
    for (const d of due) st.lease.run(until, claim, d.seq);
    return due.map((d) => toClaimed({ ...d, next_at: until, claim_token: claim }));
  });
  let closed = false;
  return {
    async create(input, by, at) {
      const id = Number(st.insert.run({ ...hookParams(input), by, at }).lastInsertRowid);
      return toHook(st.get.get(id)!);
    },
    async update(id, patch, at) {
      return update(id, patch, at);
    },
    async remove(id) {
      return remove(id);
    },
    async get(id) {
      const r = st.get.get(id);
      return r ? toHook(r) : null;
    },
    async list() {
      return st.list.all().map(toHook);
    },
    async pendingCounts() {
      return new Map(st.pending.all().map((r) => [r.webhook_id, r.n]));
    },
    async enqueue(rows, at, cursor) {
      return enqueue(rows, at, cursor);
    },
    async changeCursor() {
      return st.cursor.get()?.seq ?? 0;
    },
    async recordAttempted(d, at, outcome) {
      st.attempted.run({
        ...d,
        at,
        status: outcome.ok ? 'delivered' : 'failed',
        deliveredAt: outcome.ok ? at : null,
        lastStatus: outcome.status,
        lastError: outcome.error,
      });
      bound();
      return toDelivery(db.prepare<[string], DeliveryRow>('SELECT * FROM webhook_deliveries WHERE id = ?').get(d.id)!);
    },
    async heads() {
      return st.heads.all().map(toDelivery);
    },
    async claimDue(at, leaseMs) {
      // IMMEDIATE: another process's claim cannot come between the read of the heads and their lease.
      return claimDue.immediate(at, at + leaseMs);
    },
    async release(id, claim, at) {
      return st.release.run(at, id, claim).changes > 0;
    },
    async markDelivered(id, claim, at, status) {
      return st.delivered.run({ id, claim, at, status }).changes > 0;
    },
    async markFailed(id, claim, _at, outcome, nextAt) {
      return st.failed.run({ id, claim, status: outcome.status, error: outcome.error.slice(0, 300), nextAt, final: nextAt === null ? 1 : 0 }).changes > 0;
    },
    async deliveries(webhookId, limit) {
      return st.deliveries.all(webhookId, limit).map(toDelivery);
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}

/** The row mappings, shared with the PostgreSQL implementation (pg/webhook-store-pg.ts). */
export { toHook as webhookRecordOf, toDelivery as deliveryRecordOf, toClaimed as claimedDeliveryOf, type HookRow as WebhookRow, type DeliveryRow };
