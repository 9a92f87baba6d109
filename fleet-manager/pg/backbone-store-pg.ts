/**
 * The backbone registry records on PostgreSQL (issue 18), with the same interface as the SQLite
 * store (fleet-manager/backbone-store.ts).
 */
import type pg from 'pg';
import { toBackboneRecord, type BackboneRow, type BackboneStore } from '../backbone-store.js';
import type { PgMigration } from './pg-db.js';

export const BACKBONE_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'backbones-1',
    sql: `
CREATE TABLE backbones (
  name TEXT PRIMARY KEY,
  sha256 TEXT NOT NULL,
  size BIGINT NOT NULL,
  uploaded_by TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE INDEX backbones_sha256 ON backbones (sha256);
`,
  },
];

/** The backbone store on `pool`, whose database BACKBONE_PG_MIGRATIONS has been applied to. */
export function pgBackboneStore(pool: pg.Pool, _opts: Record<string, never> = {}): BackboneStore {
  return {
    async insert(rec) {
      const res = await pool.query(
        'INSERT INTO backbones (name, sha256, size, uploaded_by, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING',
        [rec.name, rec.sha256, rec.size, rec.uploadedBy, rec.createdAt],
      );
      return res.rowCount === 1;
    },
    async get(name) {
      const { rows } = await pool.query<BackboneRow>('SELECT * FROM backbones WHERE name = $1', [name]);
      return rows[0] ? toBackboneRecord(rows[0]) : null;
    },
    async list() {
      const { rows } = await pool.query<BackboneRow>('SELECT * FROM backbones ORDER BY created_at, name COLLATE "C"');
      return rows.map(toBackboneRecord);
    },
    async delete(name) {
      const { rows } = await pool.query<BackboneRow>('DELETE FROM backbones WHERE name = $1 RETURNING *', [name]);
      return rows[0] ? toBackboneRecord(rows[0]) : null;
    },
    async countSha(sha256) {
      const { rows } = await pool.query<{ n: number }>('SELECT count(*) AS n FROM backbones WHERE sha256 = $1', [sha256]);
      return rows[0]!.n;
    },
    async close() {
      // The pool belongs to the storage factory, which ends it once every store is closed.
    },
  };
}
