/**
 * Webhooks and their durable outbox on PostgreSQL (issue 18): the same WebhookStore as
 * webhook-store.ts. Several fleet instances send from one outbox: claimDue() locks the due heads
 * with `FOR UPDATE SKIP LOCKED` and moves their next attempt to the end of a lease in the same
 * statement, so a delivery claimed by one instance is neither claimed nor sent by another until
 * its attempt is recorded or the lease runs out (its sender died). Each claim writes a new token
 * (`claim_token`); an attempt's marks are conditional on it, so a sender that stalled past its
 * lease cannot overwrite the state of the claim that followed.
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import {
  claimedDeliveryOf,
  deliveryRecordOf,
  webhookRecordOf,
  type ClaimedDelivery,
  type DeliveryRow,
  type NewDelivery,
  type WebhookInput,
  type WebhookRow,
  type WebhookStore,
} from '../webhook-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

export const WEBHOOK_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'webhooks-1',
    sql: `
CREATE TABLE webhooks (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name TEXT NOT NULL,
  url TEXT NOT NULL,
  format TEXT NOT NULL,
  types TEXT NOT NULL,
  lines TEXT NOT NULL,
  enabled BOOLEAN NOT NULL,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE webhook_deliveries (
  seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  webhook_id BIGINT NOT NULL,
  alert_id BIGINT,
  event TEXT NOT NULL,
  body TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at BIGINT NOT NULL,
  next_at BIGINT,
  delivered_at BIGINT,
  last_status INTEGER,
  last_error TEXT,
  UNIQUE (webhook_id, alert_id, event)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (webhook_id, seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, seq);
`,
  },
  {
    // The token of a delivery's current claim: marks carrying another are refused (issue 18).
    id: 'webhooks-2',
    sql: 'ALTER TABLE webhook_deliveries ADD COLUMN claim_token TEXT;',
  },
  {
    // The sender's cursor into the alerts' change log, moved with the deliveries it queued (issue 17).
    id: 'webhooks-3',
    sql: 'CREATE TABLE webhook_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);',
  },
];

export interface PgWebhookStoreOptions {
  /** Delivery rows kept at most (finished ones deleted first, then the oldest waiting given up). */
  maxOutbox: number;
}

type PgHookRow = Omit<WebhookRow, 'enabled'> & { enabled: boolean };
const toHook = (r: PgHookRow) => webhookRecordOf({ ...r, enabled: r.enabled ? 1 : 0 });

/** The oldest waiting delivery of each enabled webhook. */
const HEADS = `
  SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id AND w.enabled
  WHERE d.seq IN (SELECT min(seq) FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id)`;

/** The webhook store on a PostgreSQL pool (WEBHOOK_PG_MIGRATIONS applied by the caller). */
export function pgWebhookStore(pool: pg.Pool, opts: PgWebhookStoreOptions): WebhookStore {
  const hookParams = (w: WebhookInput) => [w.name, w.url, w.format, JSON.stringify(w.types), JSON.stringify(w.lines), w.enabled];

  /** Keeps the outbox within maxOutbox rows. */
  async function bound(c: pg.PoolClient): Promise<void> {
    let over = (await c.query<{ n: number }>('SELECT count(*) AS n FROM webhook_deliveries')).rows[0]!.n - opts.maxOutbox;
    if (over <= 0) return;
    over -= (
      await c.query(
        "DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries WHERE status != 'pending' ORDER BY seq LIMIT $1)",
        [over],
      )
    ).rowCount ?? 0;
    if (over <= 0) return;
    // Only waiting rows are left: the oldest are given up (kept as failed, pruned next time).
    await c.query(
      `UPDATE webhook_deliveries SET status = 'failed', last_error = 'given up: outbox full', next_at = NULL
       WHERE seq IN (SELECT seq FROM webhook_deliveries WHERE status = 'pending' ORDER BY seq LIMIT $1)`,
      [over],
    );
  }

  const getHook = async (q: pg.Pool | pg.PoolClient, id: number, lock = '') => {
    const r = (await q.query<PgHookRow>(`SELECT * FROM webhooks WHERE id = $1 ${lock}`, [id])).rows[0];
    return r ? toHook(r) : null;
  };

  return {
    async create(input, by, at) {
      const r = await pool.query<PgHookRow>(
        `INSERT INTO webhooks (name, url, format, types, lines, enabled, created_at, created_by, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) RETURNING *`,
        [...hookParams(input), at, by],
      );
      return toHook(r.rows[0]!);
    },
    async update(id, patch, at) {
      return withTransaction(pool, async (c) => {
        const row = await getHook(c, id, 'FOR UPDATE');
        if (!row) return null;
        const merged = { ...row, ...patch };
        const r = await c.query<PgHookRow>(
          'UPDATE webhooks SET name = $1, url = $2, format = $3, types = $4, lines = $5, enabled = $6, updated_at = $7 WHERE id = $8 RETURNING *',
          [...hookParams(merged), at, id],
        );
        return toHook(r.rows[0]!);
      });
    },
    async remove(id) {
      return withTransaction(pool, async (c) => {
        await c.query('DELETE FROM webhook_deliveries WHERE webhook_id = $1', [id]);
        return ((await c.query('DELETE FROM webhooks WHERE id = $1', [id])).rowCount ?? 0) > 0;
      });
    },
    get: (id) => getHook(pool, id),
    async list() {
      return (await pool.query<PgHookRow>('SELECT * FROM webhooks ORDER BY id')).rows.map(toHook);
    },
    async pendingCounts() {
      const r = await pool.query<{ webhook_id: number; n: number }>(
        "SELECT webhook_id, count(*) AS n FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id",
      );
      return new Map(r.rows.map((x) => [x.webhook_id, x.n]));
    },
    async enqueue(rows: readonly NewDelivery[], at, cursor) {
      if (rows.length === 0 && cursor === undefined) return 0;
      return withTransaction(pool, async (c) => {
        let added = 0;
        for (const d of rows) {
          const r = await c.query(
            `INSERT INTO webhook_deliveries (id, webhook_id, alert_id, event, body, status, created_at, next_at)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6) ON CONFLICT DO NOTHING`,
            [d.id, d.webhookId, d.alertId, d.event, d.body, at],
          );
          added += r.rowCount ?? 0;
        }
        if (added > 0) await bound(c);
        if (cursor !== undefined) {
          await c.query('INSERT INTO webhook_cursor (id, seq) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET seq = greatest(webhook_cursor.seq, EXCLUDED.seq)', [cursor]);
        }
        return added;
      });
    },
    async changeCursor() {
      return (await pool.query<{ seq: number }>('SELECT seq FROM webhook_cursor WHERE id = 1')).rows[0]?.seq ?? 0;
    },
    async recordAttempted(d, at, outcome) {
      return withTransaction(pool, async (c) => {
        await c.query(
          `INSERT INTO webhook_deliveries (id, webhook_id, alert_id, event, body, status, attempts, created_at, delivered_at, last_status, last_error)
           VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $10)`,
          [d.id, d.webhookId, d.alertId, d.event, d.body, outcome.ok ? 'delivered' : 'failed', at, outcome.ok ? at : null, outcome.status, outcome.error],
        );
        await bound(c);
        return deliveryRecordOf((await c.query<DeliveryRow>('SELECT * FROM webhook_deliveries WHERE id = $1', [d.id])).rows[0]!);
      });
    },
    async heads() {
      return (await pool.query<DeliveryRow>(`${HEADS} ORDER BY d.seq`)).rows.map(deliveryRecordOf);
    },
    async claimDue(at, leaseMs): Promise<ClaimedDelivery[]> {
      // A head another instance holds locked is skipped; one it claimed and committed meanwhile is
      // re-checked against the WHERE (now leased: not due) before this statement may lock it.
      const r = await pool.query<DeliveryRow>(
        `WITH due AS (${HEADS} AND d.status = 'pending' AND coalesce(d.next_at, 0) <= $1 FOR UPDATE OF d SKIP LOCKED)
         UPDATE webhook_deliveries x SET next_at = $2, claim_token = $3 FROM due WHERE x.seq = due.seq RETURNING x.*`,
        [at, at + leaseMs, randomUUID()],
      );
      return r.rows.sort((a, b) => a.seq - b.seq).map(claimedDeliveryOf);
    },
    async release(id, claim, at) {
      const r = await pool.query("UPDATE webhook_deliveries SET next_at = $1, claim_token = NULL WHERE id = $2 AND status = 'pending' AND claim_token = $3", [at, id, claim]);
      return (r.rowCount ?? 0) > 0;
    },
    async markDelivered(id, claim, at, status) {
      const r = await pool.query(
        `UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, delivered_at = $2, last_status = $3, last_error = NULL, next_at = NULL,
           claim_token = NULL WHERE id = $1 AND status = 'pending' AND claim_token = $4`,
        [id, at, status, claim],
      );
      return (r.rowCount ?? 0) > 0;
    },
    async markFailed(id, claim, _at, outcome, nextAt) {
      const r = await pool.query(
        `UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $2, last_error = $3, next_at = $4, claim_token = NULL,
           status = CASE WHEN $5 THEN 'failed' ELSE status END WHERE id = $1 AND status = 'pending' AND claim_token = $6`,
        [id, outcome.status, outcome.error.slice(0, 300), nextAt, nextAt === null, claim],
      );
      return (r.rowCount ?? 0) > 0;
    },
    async deliveries(webhookId, limit) {
      const r = await pool.query<DeliveryRow>('SELECT * FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY seq DESC LIMIT $2', [webhookId, limit]);
      return r.rows.map(deliveryRecordOf);
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
