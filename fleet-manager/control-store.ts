/**
 * The fleet's control-plane storage: model registry, configuration layers, per-edge desired
 * state and pins, rollouts. One narrow, asynchronous interface (`ControlStore`) like
 * `FleetStore`, so PostgreSQL can replace SQLite; the SQLite implementation opens its own
 * connection to the fleet database (`fleet.db`, created first by openSqliteStore) and touches
 * only its own tables. The result figures rollout gates need are FleetStore's
 * (`candidateCounters`, `recentDefectRate`).
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { Logger } from 'pino';
import type { Manifest } from '../protocol/manifest.js';
import type { DesiredMessage, EdgeSettings } from '../protocol/messages.js';
import { ACTIVE_STATUSES, type RolloutDoc, type RolloutStatus } from './rollout-spec.js';
import { addMissingColumns } from './store-migrations.js';

/** A registered, immutable model version. */
export interface ModelVersionRecord {
  name: string;
  version: string;
  /** sha256 of the canonical package archive: the artifact's address. */
  sha256: string;
  size: number;
  /** Base64 Ed25519 signature of the artifact statement (models/artifact-signature.ts). */
  signature: string;
  /** The key that made it: a publisher key id, or "fleet" (the fleet's own key). */
  keyId: string;
  manifest: Manifest;
  createdAt: number;
  /** Who registered it (`user:alice`, `cli`); null for versions registered before issue 14. */
  uploadedBy: string | null;
  /** The fleet training job that made it (`training-job:ID`; docs/SECURITY.md "Models are code"); null: uploaded. */
  trainedBy?: string | null;
}

export interface ModelSummary {
  name: string;
  versions: number;
  latestVersion: string;
  updatedAt: number;
}

export type ConfigScope = 'fleet' | 'line' | 'edge';

/** One configuration layer as set by people. */
export interface ConfigLayer {
  settings: EdgeSettings;
  /** Counts the puts of this layer. */
  version: number;
  updatedAt: number;
}

/** A desired message without its envelope. */
export type DesiredBody = Omit<DesiredMessage, 'v' | 'id' | 'ts' | 'edgeId'>;

export interface DesiredRecord {
  edgeId: string;
  body: DesiredBody;
  /** Canonical JSON of body.config, to tell whether the effective config changed. */
  configJson: string;
  updatedAt: number;
}

/** Which registered artifact an edge should run outside rollouts, and the one before it. */
export interface EdgePin {
  edgeId: string;
  /** sha256 of the artifact; null: the edge's locally configured model. */
  active: string | null;
  previous: string | null;
  updatedAt: number;
}

export interface ControlStore {
  getVersion(name: string, version: string): Promise<ModelVersionRecord | null>;
  getVersionBySha(sha256: string): Promise<ModelVersionRecord | null>;
  /** Inserts a new version; false when (name, version) or the sha256 already exists. */
  insertVersion(rec: ModelVersionRecord): Promise<boolean>;
  /** Versions signed by the fleet's own key (key id "fleet"). */
  listFleetSignedVersions(): Promise<ModelVersionRecord[]>;
  /** Replaces a version's signature (the fleet re-signing its own versions in a newer statement format). */
  setVersionSignature(sha256: string, signature: string, keyId: string): Promise<void>;
  listModels(): Promise<ModelSummary[]>;
  /** Versions of one model, oldest first. */
  listVersions(name: string): Promise<ModelVersionRecord[]>;

  getConfigLayer(scope: ConfigScope, key: string): Promise<ConfigLayer | null>;
  /** Replaces a layer and returns it with its new version. */
  putConfigLayer(scope: ConfigScope, key: string, settings: EdgeSettings, now: number): Promise<ConfigLayer>;
  deleteConfigLayer(scope: ConfigScope, key: string): Promise<boolean>;

  getDesired(edgeId: string): Promise<DesiredRecord | null>;
  /** Stores desired states in one transaction (one fsync for a whole line). */
  putDesired(recs: readonly DesiredRecord[]): Promise<void>;
  listDesired(): Promise<DesiredRecord[]>;

  getPin(edgeId: string): Promise<EdgePin | null>;
  listPins(): Promise<EdgePin[]>;
  setPins(pins: readonly EdgePin[]): Promise<void>;

  /** Saves a rollout document and, in the same transaction, the pins it changed. */
  saveRollout(doc: RolloutDoc, pins?: readonly EdgePin[]): Promise<void>;
  getRollout(id: string): Promise<RolloutDoc | null>;
  /** Newest first; `active` limits to rollouts that still own their edges. */
  listRollouts(opts?: { active?: boolean; limit?: number }): Promise<RolloutDoc[]>;

  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS model_versions (
  name TEXT NOT NULL,
  version TEXT NOT NULL,
  sha256 TEXT NOT NULL UNIQUE,
  size INTEGER NOT NULL,
  signature TEXT NOT NULL,
  manifest TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  key_id TEXT NOT NULL DEFAULT 'fleet',
  PRIMARY KEY (name, version)
);
CREATE TABLE IF NOT EXISTS config_layers (
  scope TEXT NOT NULL,
  key TEXT NOT NULL,
  settings TEXT NOT NULL,
  version INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  PRIMARY KEY (scope, key)
);
CREATE TABLE IF NOT EXISTS edge_desired (
  edge_id TEXT PRIMARY KEY,
  body TEXT NOT NULL,
  config_json TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS edge_pins (
  edge_id TEXT PRIMARY KEY,
  active_sha256 TEXT,
  previous_sha256 TEXT,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (
  id TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_status ON rollouts (status);
`;

export interface VersionRow {
  name: string;
  version: string;
  sha256: string;
  size: number;
  signature: string;
  key_id: string;
  manifest: string;
  created_at: number;
  uploaded_by: string | null;
  trained_by: string | null;
}

export interface PinRow {
  edge_id: string;
  active_sha256: string | null;
  previous_sha256: string | null;
  updated_at: number;
}

export interface DesiredRow {
  edge_id: string;
  body: string;
  config_json: string;
  updated_at: number;
}

export interface SqliteControlStoreOptions {
  /** The fleet database file, already created by openSqliteStore. */
  file: string;
  logger: Logger;
}

/** Opens the control-plane tables in the fleet database (WAL and synchronous=FULL, like FleetStore). */
export function openSqliteControlStore(opts: SqliteControlStoreOptions): ControlStore {
  return withNewConnection(opts.file, { fileMustExist: true }, (db) => {
    migrateControlSchema(db);
    return closingConnection(createSqliteControlStore(db, opts), db);
  });
}

/** Creates or upgrades the control tables on an open connection (idempotent). */
export function migrateControlSchema(db: Database.Database): void {
  db.exec(SCHEMA);
  // Who did it (issue 14): files made before have the tables without these columns.
  addMissingColumns(db, 'model_versions', [['uploaded_by', 'TEXT'], ['trained_by', 'TEXT']]);
  addMissingColumns(db, 'rollouts', [['created_by', 'TEXT']]);
  // Issue 14: the signing key's id (versions registered before it were signed by the fleet key).
  if (!(db.prepare('PRAGMA table_info(model_versions)').all() as { name: string }[]).some((c) => c.name === 'key_id')) {
    db.exec("ALTER TABLE model_versions ADD COLUMN key_id TEXT NOT NULL DEFAULT 'fleet'");
  }
}

/** The ControlStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteControlStore(db: Database.Database, opts: SqliteControlStoreOptions): ControlStore {
  const activeList = ACTIVE_STATUSES.map((s) => `'${s}'`).join(', ');

  const st = {
    getVersion: db.prepare<[string, string], VersionRow>('SELECT * FROM model_versions WHERE name = ? AND version = ?'),
    getVersionBySha: db.prepare<[string], VersionRow>('SELECT * FROM model_versions WHERE sha256 = ?'),
    insertVersion: db.prepare(
      `INSERT OR IGNORE INTO model_versions (name, version, sha256, size, signature, key_id, manifest, created_at, uploaded_by, trained_by)
       VALUES (@name, @version, @sha256, @size, @signature, @keyId, @manifest, @createdAt, @uploadedBy, @trainedBy)`,
    ),
    listModels: db.prepare<[], { name: string; versions: number; latest: string; updated: number }>(
      // The newest version per model: SQLite returns the bare column of the row holding max().
      `SELECT name, count(*) AS versions, version AS latest, max(created_at) AS updated
       FROM model_versions GROUP BY name ORDER BY name`,
    ),
    listVersions: db.prepare<[string], VersionRow>('SELECT * FROM model_versions WHERE name = ? ORDER BY created_at, rowid'),
    listFleetSigned: db.prepare<[], VersionRow>("SELECT * FROM model_versions WHERE key_id = 'fleet' ORDER BY created_at, rowid"),
    setSignature: db.prepare<[string, string, string]>('UPDATE model_versions SET signature = ?, key_id = ? WHERE sha256 = ?'),
    getLayer: db.prepare<[string, string], { settings: string; version: number; updated_at: number }>(
      'SELECT settings, version, updated_at FROM config_layers WHERE scope = ? AND key = ?',
    ),
    putLayer: db.prepare<{ scope: string; key: string; settings: string; now: number }>(
      `INSERT INTO config_layers (scope, key, settings, version, updated_at) VALUES (@scope, @key, @settings, 1, @now)
       ON CONFLICT (scope, key) DO UPDATE SET settings = excluded.settings, version = version + 1, updated_at = excluded.updated_at`,
    ),
    deleteLayer: db.prepare<[string, string]>('DELETE FROM config_layers WHERE scope = ? AND key = ?'),
    getDesired: db.prepare<[string], DesiredRow>('SELECT * FROM edge_desired WHERE edge_id = ?'),
    putDesired: db.prepare<DesiredRow>(
      `INSERT INTO edge_desired (edge_id, body, config_json, updated_at) VALUES (@edge_id, @body, @config_json, @updated_at)
       ON CONFLICT (edge_id) DO UPDATE SET body = excluded.body, config_json = excluded.config_json, updated_at = excluded.updated_at`,
    ),
    listDesired: db.prepare<[], DesiredRow>('SELECT * FROM edge_desired ORDER BY edge_id'),
    getPin: db.prepare<[string], PinRow>('SELECT * FROM edge_pins WHERE edge_id = ?'),
    listPins: db.prepare<[], PinRow>('SELECT * FROM edge_pins ORDER BY edge_id'),
    setPin: db.prepare<PinRow>(
      `INSERT INTO edge_pins (edge_id, active_sha256, previous_sha256, updated_at) VALUES (@edge_id, @active_sha256, @previous_sha256, @updated_at)
       ON CONFLICT (edge_id) DO UPDATE SET active_sha256 = excluded.active_sha256, previous_sha256 = excluded.previous_sha256, updated_at = excluded.updated_at`,
    ),
    saveRollout: db.prepare<{ id: string; status: RolloutStatus; created_at: number; created_by: string | null; doc: string }>(
      `INSERT INTO rollouts (id, status, created_at, created_by, doc) VALUES (@id, @status, @created_at, @created_by, @doc)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, doc = excluded.doc`,
    ),
    getRollout: db.prepare<[string], string>('SELECT doc FROM rollouts WHERE id = ?').pluck(),
    listRollouts: db.prepare<[number], string>('SELECT doc FROM rollouts ORDER BY created_at DESC, id DESC LIMIT ?').pluck(),
    listActive: db.prepare<[], string>(`SELECT doc FROM rollouts WHERE status IN (${activeList}) ORDER BY created_at, id`).pluck(),
  };

  const putDesired = db.transaction((recs: readonly DesiredRecord[]) => {
    for (const r of recs) st.putDesired.run({ edge_id: r.edgeId, body: JSON.stringify(r.body), config_json: r.configJson, updated_at: r.updatedAt });
  });
  const setPins = db.transaction((pins: readonly EdgePin[]) => {
    for (const p of pins) st.setPin.run(toPinRow(p));
  });
  const saveRollout = db.transaction((doc: RolloutDoc, pins: readonly EdgePin[]) => {
    st.saveRollout.run({ id: doc.id, status: doc.status, created_at: doc.createdAt, created_by: doc.createdBy ?? null, doc: JSON.stringify(doc) });
    for (const p of pins) st.setPin.run(toPinRow(p));
  });

  let closed = false;
  return {
    async getVersion(name, version) {
      const row = st.getVersion.get(name, version);
      return row ? toVersion(row) : null;
    },
    async getVersionBySha(sha256) {
      const row = st.getVersionBySha.get(sha256);
      return row ? toVersion(row) : null;
    },
    async insertVersion(rec) {
      const changes = st.insertVersion.run({ ...rec, manifest: JSON.stringify(rec.manifest), trainedBy: rec.trainedBy ?? null }).changes;
      return changes === 1;
    },
    async listFleetSignedVersions() {
      return st.listFleetSigned.all().map(toVersion);
    },
    async setVersionSignature(sha256, signature, keyId) {
      st.setSignature.run(signature, keyId, sha256);
    },
    async listModels() {
      return st.listModels.all().map((r) => ({ name: r.name, versions: r.versions, latestVersion: r.latest, updatedAt: r.updated }));
    },
    async listVersions(name) {
      return st.listVersions.all(name).map(toVersion);
    },
    async getConfigLayer(scope, key) {
      const row = st.getLayer.get(scope, key);
      return row ? { settings: JSON.parse(row.settings) as EdgeSettings, version: row.version, updatedAt: row.updated_at } : null;
    },
    async putConfigLayer(scope, key, settings, now) {
      st.putLayer.run({ scope, key, settings: JSON.stringify(settings), now });
      const row = st.getLayer.get(scope, key)!;
      return { settings: JSON.parse(row.settings) as EdgeSettings, version: row.version, updatedAt: row.updated_at };
    },
    async deleteConfigLayer(scope, key) {
      return st.deleteLayer.run(scope, key).changes > 0;
    },
    async getDesired(edgeId) {
      const row = st.getDesired.get(edgeId);
      return row ? toDesired(row) : null;
    },
    async putDesired(recs) {
      putDesired(recs);
    },
    async listDesired() {
      return st.listDesired.all().map(toDesired);
    },
    async getPin(edgeId) {
      const row = st.getPin.get(edgeId);
      return row ? toPin(row) : null;
    },
    async listPins() {
      return st.listPins.all().map(toPin);
    },
    async setPins(pins) {
      setPins(pins);
    },
    async saveRollout(doc, pins = []) {
      saveRollout(doc, pins);
    },
    async getRollout(id) {
      const doc = st.getRollout.get(id);
      return doc ? (JSON.parse(doc) as RolloutDoc) : null;
    },
    async listRollouts(o = {}) {
      const docs = o.active ? st.listActive.all() : st.listRollouts.all(o.limit ?? 1000);
      return docs.map((d) => JSON.parse(d) as RolloutDoc);
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}

/** Row to record mappers, shared by the SQLite and PostgreSQL stores. */
export function toVersion(row: VersionRow): ModelVersionRecord {
  return {
    name: row.name,
    version: row.version,
    sha256: row.sha256,
    size: row.size,
    signature: row.signature,
    keyId: row.key_id,
    manifest: JSON.parse(row.manifest) as Manifest,
    createdAt: row.created_at,
    uploadedBy: row.uploaded_by,
    trainedBy: row.trained_by ?? null,
  };
}

export function toPin(row: PinRow): EdgePin {
  return { edgeId: row.edge_id, active: row.active_sha256, previous: row.previous_sha256, updatedAt: row.updated_at };
}

export function toPinRow(p: EdgePin): PinRow {
  return { edge_id: p.edgeId, active_sha256: p.active, previous_sha256: p.previous, updated_at: p.updatedAt };
}

export function toDesired(row: DesiredRow): DesiredRecord {
  return { edgeId: row.edge_id, body: JSON.parse(row.body) as DesiredBody, configJson: row.config_json, updatedAt: row.updated_at };
}
