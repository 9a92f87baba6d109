/**
 * The control-plane store on PostgreSQL (issue 18): model registry, configuration layers,
 * per-edge desired state and pins, and rollouts, with the same interface as the SQLite store
 * (fleet-manager/control-store.ts). It reads only its own tables.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import type { EdgeSettings } from '../../protocol/messages.js';
import { ACTIVE_STATUSES, type RolloutDoc } from '../rollout-spec.js';
import {
  toDesired,
  toPin,
  toPinRow,
  toVersion,
  type ControlStore,
  type DesiredRecord,
  type DesiredRow,
  type EdgePin,
  type PinRow,
  type VersionRow,
} from '../control-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

export const CONTROL_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'control-1',
    sql: `
CREATE TABLE model_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  size BIGINT NOT NULL,
  signature TEXT NOT NULL,
  key_id TEXT NOT NULL DEFAULT 'fleet',
  manifest TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  uploaded_by TEXT,
  trained_by TEXT,
  -- Insertion order among versions registered in the same millisecond (SQLite's rowid).
  seq BIGINT GENERATED ALWAYS AS IDENTITY,
  PRIMARY KEY (name, version)
);
CREATE INDEX model_versions_key ON model_versions (key_id);
CREATE TABLE config_layers (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  settings TEXT NOT NULL,
  version BIGINT NOT NULL,
  updated_at BIGINT NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE TABLE edge_desired (
  edge_id TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  config_json TEXT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE edge_pins (
  edge_id TEXT PRIMARY KEY,
  active_sha256 TEXT,
  previous_sha256 TEXT,
  updated_at BIGINT NOT NULL
);
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  created_by TEXT,
  doc TEXT NOT NULL
);
CREATE INDEX rollouts_status ON rollouts (status);
CREATE INDEX rollouts_created ON rollouts (created_at);
`,
  },
];

export interface PgControlStoreOptions {
  logger: Logger;
}

/** Of records with the same key, the last (what a row-by-row upsert would leave), in order. */
function lastPerKey<T>(items: readonly T[], key: (item: T) => string): T[] {
  return [...new Map(items.map((i) => [key(i), i])).values()];
}

// One statement per batch: unnest turns parallel arrays into rows, so a whole line's desired
// states or pins are one round trip (a statement is atomic on its own).
const UPSERT_DESIRED = `
INSERT INTO edge_desired (edge_id, body, config_json, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
ON CONFLICT (edge_id) DO UPDATE SET body = excluded.body, config_json = excluded.config_json, updated_at = excluded.updated_at`;
const UPSERT_PINS = `
INSERT INTO edge_pins (edge_id, active_sha256, previous_sha256, updated_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])
ON CONFLICT (edge_id) DO UPDATE SET active_sha256 = excluded.active_sha256, previous_sha256 = excluded.previous_sha256, updated_at = excluded.updated_at`;

function pinArgs(pins: readonly EdgePin[]): unknown[] {
  const rows: PinRow[] = lastPerKey(pins, (p) => p.edgeId).map(toPinRow);
  return [rows.map((r) => r.edge_id), rows.map((r) => r.active_sha256), rows.map((r) => r.previous_sha256), rows.map((r) => r.updated_at)];
}

/** The control-plane store on `pool`, whose database CONTROL_PG_MIGRATIONS has been applied to. */
export function pgControlStore(pool: pg.Pool, _opts: PgControlStoreOptions): ControlStore {
  const rows = async <R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<R[]> => (await pool.query<R>(sql, args)).rows;

  return {
    async getVersion(name, version) {
      const [row] = await rows<VersionRow>('SELECT * FROM model_versions WHERE name = $1 AND version = $2', [name, version]);
      return row ? toVersion(row) : null;
    },
    async getVersionBySha(sha256) {
      const [row] = await rows<VersionRow>('SELECT * FROM model_versions WHERE sha256 = $1', [sha256]);
      return row ? toVersion(row) : null;
    },
    async insertVersion(rec) {
      // DO NOTHING on either key: a taken (name, version) or an artifact registered already.
      const res = await pool.query(
        `INSERT INTO model_versions (name, version, sha256, size, signature, key_id, manifest, created_at, uploaded_by, trained_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT DO NOTHING`,
        [rec.name, rec.version, rec.sha256, rec.size, rec.signature, rec.keyId, JSON.stringify(rec.manifest), rec.createdAt, rec.uploadedBy, rec.trainedBy ?? null],
      );
      return res.rowCount === 1;
    },
    async listFleetSignedVersions() {
      return (await rows<VersionRow>("SELECT * FROM model_versions WHERE key_id = 'fleet' ORDER BY created_at, seq")).map(toVersion);
    },
    async setVersionSignature(sha256, signature, keyId) {
      await pool.query('UPDATE model_versions SET signature = $1, key_id = $2 WHERE sha256 = $3', [signature, keyId, sha256]);
    },
    async listModels() {
      // The newest version per model (window counts are taken before DISTINCT ON keeps one row).
      const r = await rows<{ name: string; versions: number; latest: string; updated: number }>(
        `SELECT DISTINCT ON (name COLLATE "C") name, count(*) OVER (PARTITION BY name) AS versions, version AS latest, created_at AS updated
         FROM model_versions ORDER BY name COLLATE "C", created_at DESC, seq DESC`,
      );
      return r.map((m) => ({ name: m.name, versions: m.versions, latestVersion: m.latest, updatedAt: m.updated }));
    },
    async listVersions(name) {
      return (await rows<VersionRow>('SELECT * FROM model_versions WHERE name = $1 ORDER BY created_at, seq', [name])).map(toVersion);
    },

    async getConfigLayer(scope, key) {
      const [row] = await rows<{ settings: string; version: number; updated_at: number }>(
        'SELECT settings, version, updated_at FROM config_layers WHERE scope = $1 AND key = $2',
        [scope, key],
      );
      return row ? { settings: JSON.parse(row.settings) as EdgeSettings, version: row.version, updatedAt: row.updated_at } : null;
    },
    async putConfigLayer(scope, key, settings, now) {
      // One statement: two instances putting the same layer each get their own version.
      const [row] = await rows<{ settings: string; version: number; updated_at: number }>(
        `INSERT INTO config_layers (scope, key, settings, version, updated_at) VALUES ($1, $2, $3, 1, $4)
         ON CONFLICT (scope, key) DO UPDATE SET settings = excluded.settings, version = config_layers.version + 1, updated_at = excluded.updated_at
         RETURNING settings, version, updated_at`,
        [scope, key, JSON.stringify(settings), now],
      );
      return { settings: JSON.parse(row!.settings) as EdgeSettings, version: row!.version, updatedAt: row!.updated_at };
    },
    async deleteConfigLayer(scope, key) {
      return ((await pool.query('DELETE FROM config_layers WHERE scope = $1 AND key = $2', [scope, key])).rowCount ?? 0) > 0;
    },

    async getDesired(edgeId) {
      const [row] = await rows<DesiredRow>('SELECT * FROM edge_desired WHERE edge_id = $1', [edgeId]);
      return row ? toDesired(row) : null;
    },
    async putDesired(recs: readonly DesiredRecord[]) {
      if (recs.length === 0) return;
      const last = lastPerKey(recs, (r) => r.edgeId);
      await pool.query(UPSERT_DESIRED, [last.map((r) => r.edgeId), last.map((r) => JSON.stringify(r.body)), last.map((r) => r.configJson), last.map((r) => r.updatedAt)]);
    },
    async listDesired() {
      return (await rows<DesiredRow>('SELECT * FROM edge_desired ORDER BY edge_id COLLATE "C"')).map(toDesired);
    },

    async getPin(edgeId) {
      const [row] = await rows<PinRow>('SELECT * FROM edge_pins WHERE edge_id = $1', [edgeId]);
      return row ? toPin(row) : null;
    },
    async listPins() {
      return (await rows<PinRow>('SELECT * FROM edge_pins ORDER BY edge_id COLLATE "C"')).map(toPin);
    },
    async setPins(pins) {
      if (pins.length > 0) await pool.query(UPSERT_PINS, pinArgs(pins));
    },

    async saveRollout(doc: RolloutDoc, pins: readonly EdgePin[] = []) {
      await withTransaction(pool, async (c) => {
        await c.query(
          `INSERT INTO rollouts (id, status, created_at, created_by, doc) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (id) DO UPDATE SET status = excluded.status, doc = excluded.doc`,
          [doc.id, doc.status, doc.createdAt, doc.createdBy ?? null, JSON.stringify(doc)],
        );
        if (pins.length > 0) await c.query(UPSERT_PINS, pinArgs(pins));
      });
    },
    async getRollout(id) {
      const [row] = await rows<{ doc: string }>('SELECT doc FROM rollouts WHERE id = $1', [id]);
      return row ? (JSON.parse(row.doc) as RolloutDoc) : null;
    },
    async listRollouts(o = {}) {
      const docs = o.active
        ? await rows<{ doc: string }>('SELECT doc FROM rollouts WHERE status = ANY($1::text[]) ORDER BY created_at, id COLLATE "C"', [ACTIVE_STATUSES])
        : await rows<{ doc: string }>('SELECT doc FROM rollouts ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT $1', [o.limit ?? 1000]);
      return docs.map((d) => JSON.parse(d.doc) as RolloutDoc);
    },

    async close() {
      // The pool belongs to the storage factory, which ends it once every store is closed.
    },
  };
}
