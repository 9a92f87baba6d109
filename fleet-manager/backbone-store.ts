/**
 * The fleet's backbone registry records (issue 15): which ONNX backbones training jobs may name,
 * by name, with the sha256 of the file kept under `dataDir/backbones` (backbones.ts). One
 * narrow, asynchronous interface; the SQLite implementation opens its own connection to `fleet.db`.
 */
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';

export interface BackboneRecord {
  name: string;
  sha256: string;
  size: number;
  /** Who added it (`user:alice`), or `fleet` for one registered from configuration. */
  uploadedBy: string;
  createdAt: number;
}

export interface BackboneStore {
  /** Inserts a backbone; false when the name is taken. */
  insert(rec: BackboneRecord): Promise<boolean>;
  get(name: string): Promise<BackboneRecord | null>;
  /** Oldest first. */
  list(): Promise<BackboneRecord[]>;
  /** Deletes by name; returns the record deleted, or null. */
  delete(name: string): Promise<BackboneRecord | null>;
  /** How many names point at this file. */
  countSha(sha256: string): Promise<number>;
  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS backbones (
  name TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL,
  size INTEGER NOT NULL,
  uploaded_by TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
`;

export interface BackboneRow {
  name: string;
  sha256: string;
  size: number;
  uploaded_by: string;
  created_at: number;
}

/** Row to record, shared by the SQLite and PostgreSQL stores. */
export const toBackboneRecord = (r: BackboneRow): BackboneRecord => ({ name: r.name, sha256: r.sha256, size: r.size, uploadedBy: r.uploaded_by, createdAt: r.created_at });

/** Opens the backbone records on the fleet database file. */
export function openSqliteBackboneStore(file: string): BackboneStore {
  return withNewConnection(file, {}, (db) => {
    migrateBackboneSchema(db);
    return closingConnection(createSqliteBackboneStore(db), db);
  });
}

/** Creates or upgrades the backbone tables on an open connection (idempotent). */
export function migrateBackboneSchema(db: Database.Database): void {
  db.exec(SCHEMA);
}

/** The BackboneStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteBackboneStore(db: Database.Database): BackboneStore {
  const st = {
    insert: db.prepare<BackboneRow>('INSERT OR IGNORE INTO backbones (name, sha256, size, uploaded_by, created_at) VALUES (@name, @sha256, @size, @uploaded_by, @created_at)'),
    get: db.prepare<[string], BackboneRow>('SELECT * FROM backbones WHERE name = ?'),
    list: db.prepare<[], BackboneRow>('SELECT * FROM backbones ORDER BY created_at, name'),
    delete: db.prepare<[string]>('DELETE FROM backbones WHERE name = ?'),
    countSha: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM backbones WHERE sha256 = ?'),
  };
  let closed = false;
  return {
    async insert(rec) {
      return st.insert.run({ name: rec.name, sha256: rec.sha256, size: rec.size, uploaded_by: rec.uploadedBy, created_at: rec.createdAt }).changes === 1;
    },
    async get(name) {
      const r = st.get.get(name);
      return r ? toBackboneRecord(r) : null;
    },
    async list() {
      return st.list.all().map(toBackboneRecord);
    },
    async delete(name) {
      const r = st.get.get(name);
      if (!r) return null;
      st.delete.run(name);
      return toBackboneRecord(r);
    },
    async countSha(sha256) {
      return st.countSha.get(sha256)!.n;
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}
