/**
 * Result images on PostgreSQL (issue 18): the same FleetImageStore as image-store.ts. Blobs are
 * content-addressed files under `dir`, and their bytes are kept in the database too (`blobs`,
 * committed before the link, so any instance can fetch them: blob-cache.ts); the links and the
 * byte budget live in PostgreSQL, so several instances share one quota. A new blob is first
 * reserved — its row in `image_blobs` and its bytes added to `image_budget.used` by one
 * conditional UPDATE that refuses to pass `maxBytes` — then written, then linked: a link never
 * points at a missing blob, and two instances storing the same new bytes count them once. A
 * reservation whose write never happened (a crash in between) stays counted, erring on the side
 * of the quota; storing those bytes again writes the blob without counting it twice.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { Logger } from 'pino';
import type pg from 'pg';
import { OspreyError } from '../../protocol/errors.js';
import { writeBlob } from '../blob-files.js';
import { FILES_ONLY_BLOBS, type BlobStore } from '../blob-store.js';
import { resultKeyString, storedImageOf, type FleetImageStore, type ImageKind, type ImageRow, type ResultKey, type StoredImage } from '../image-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

/** The link table of one kind: result key → blob, all kinds alike. */
const kindTable = (table: string) => `
CREATE TABLE ${table} (
  edge_id TEXT NOT NULL,
  store_id TEXT NOT NULL,
  seq BIGINT NOT NULL,
  sha256 TEXT NOT NULL,
  content_type TEXT NOT NULL,
  bytes BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  PRIMARY KEY (edge_id, store_id, seq)
);
CREATE INDEX ${table}_edge_seq ON ${table} (edge_id, seq);
`;

export const IMAGE_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'images-1',
    sql: `${kindTable('result_images')}${kindTable('result_heatmaps')}${kindTable('result_occlusions')}
-- Distinct blobs (counted once however many results share them) and the bytes they take.
CREATE TABLE image_blobs (sha256 TEXT PRIMARY KEY, bytes BIGINT NOT NULL);
CREATE TABLE image_budget (id SMALLINT PRIMARY KEY CHECK (id = 1), used BIGINT NOT NULL);
INSERT INTO image_budget (id, used) VALUES (1, 0);
`,
  },
];

const TABLES: Record<ImageKind, string> = { image: 'result_images', heatmap: 'result_heatmaps', occlusion: 'result_occlusions' };
/** Kinds the fleet derives itself: a new one replaces the old. */
const derived = (kind: ImageKind) => kind === 'occlusion';


export interface PgImageStoreOptions {
  /** Where blobs live: `<dir>/<aa>/<sha256>`. */
  dir: string;
  logger: Logger;
  now?: () => number;
  /** Quota in bytes of distinct blobs (images.maxBytes); a new image that would pass it is OSP_ERR_QUOTA. */
  maxBytes?: number;
  /** Where each blob's bytes are also stored, before its link (the fleet's: the database's). */
  blobs?: BlobStore;
}

/** The image store on a PostgreSQL pool (IMAGE_PG_MIGRATIONS applied by the caller) and a blob directory. */
export function pgImageStore(pool: pg.Pool, opts: PgImageStoreOptions): FleetImageStore {
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const maxBytes = opts.maxBytes ?? Infinity;
  const blobs = opts.blobs ?? FILES_ONLY_BLOBS;
  /** The file here, then the bytes in the blob store: both before any link to them. */
  const store = async (sha: string, bytes: Buffer) => {
    await writeBlob(opts.dir, sha, bytes);
    await blobs.put('images', sha, bytes);
  };
  mkdirSync(opts.dir, { recursive: true });
  const toImage = (r: ImageRow): StoredImage => storedImageOf(r, opts.dir);
  const getRow = async (kind: ImageKind, key: ResultKey) =>
    (await pool.query<ImageRow>(`SELECT * FROM ${TABLES[kind]} WHERE edge_id = $1 AND store_id = $2 AND seq = $3`, [key.edgeId, key.storeId, key.seq])).rows[0];

  /** Counts a blob not seen before against the quota (OSP_ERR_QUOTA past it); a known blob costs nothing. */
  async function reserve(sha: string, bytes: number): Promise<void> {
    await withTransaction(pool, async (c) => {
      const added = await c.query('INSERT INTO image_blobs (sha256, bytes) VALUES ($1, $2) ON CONFLICT DO NOTHING', [sha, bytes]);
      if (added.rowCount === 0) return;
      const limit = Number.isFinite(maxBytes) ? maxBytes : null;
      const ok = await c.query('UPDATE image_budget SET used = used + $1 WHERE id = 1 AND ($2::bigint IS NULL OR used + $1 <= $2)', [bytes, limit]);
      if (ok.rowCount === 1) return;
      const used = (await c.query<{ used: number }>('SELECT used FROM image_budget WHERE id = 1')).rows[0]!.used;
      throw new OspreyError('OSP_ERR_QUOTA', `image store full: ${used} bytes used + ${bytes} would exceed images.maxBytes (${maxBytes})`);
    });
  }

  return {
    async put(key, bytes, contentType, claimed, kind = 'image') {
      const sha = createHash('sha256').update(bytes).digest('hex');
      if (claimed !== undefined && claimed.toLowerCase() !== sha) {
        throw new OspreyError('OSP_ERR_IMAGE_CHECKSUM', `image sha256 is ${sha}, the sender named ${claimed}`);
      }
      const before = await getRow(kind, key);
      if (before && !(derived(kind) && before.sha256 !== sha)) {
        if (before.sha256 !== sha) {
          throw new OspreyError(
            'OSP_ERR_CONFLICT',
            `result ${key.edgeId}/${key.seq}${key.storeId ? ` (store ${key.storeId})` : ''} already has another ${kind} (${before.sha256})`,
          );
        }
        // Repeated upload; make sure the blob is still there (it is written before the link).
        await store(sha, bytes);
        return { image: toImage(before), created: false };
      }
      await reserve(sha, bytes.length);
      // Blob first, link second: a link never points at a missing blob.
      await store(sha, bytes);
      const row: ImageRow = { edge_id: key.edgeId, store_id: key.storeId, seq: key.seq, sha256: sha, content_type: contentType, bytes: bytes.length, received_at: now() };
      const onConflict = derived(kind)
        ? 'DO UPDATE SET sha256 = EXCLUDED.sha256, content_type = EXCLUDED.content_type, bytes = EXCLUDED.bytes, received_at = EXCLUDED.received_at'
        : 'DO NOTHING';
      const inserted = await pool.query(
        `INSERT INTO ${TABLES[kind]} (edge_id, store_id, seq, sha256, content_type, bytes, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (edge_id, store_id, seq) ${onConflict}`,
        [row.edge_id, row.store_id, row.seq, row.sha256, row.content_type, row.bytes, row.received_at],
      );
      const created = (inserted.rowCount ?? 0) >= 1;
      const stored = created ? row : (await getRow(kind, key))!;
      if (stored.sha256 !== sha) throw new OspreyError('OSP_ERR_CONFLICT', `result ${key.edgeId}/${key.seq} already has another ${kind}`);
      log.debug({ edgeId: key.edgeId, storeId: key.storeId, seq: key.seq, kind, sha256: sha, bytes: bytes.length }, 'image stored');
      return { image: toImage(stored), created };
    },
    async get(key, kind = 'image') {
      const r = await getRow(kind, key);
      return r ? toImage(r) : null;
    },
    async find(edgeId, seq, kind = 'image') {
      const r = await pool.query<ImageRow>(`SELECT * FROM ${TABLES[kind]} WHERE edge_id = $1 AND seq = $2 ORDER BY received_at`, [edgeId, seq]);
      return r.rows.map(toImage);
    },
    async has(keys, kind = 'image') {
      if (keys.length === 0) return new Set();
      const r = await pool.query<{ edge_id: string; store_id: string; seq: number }>(
        `SELECT t.edge_id, t.store_id, t.seq FROM ${TABLES[kind]} t
         JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k (edge_id, store_id, seq) USING (edge_id, store_id, seq)`,
        [keys.map((k) => k.edgeId), keys.map((k) => k.storeId), keys.map((k) => k.seq)],
      );
      return new Set(r.rows.map((x) => resultKeyString({ edgeId: x.edge_id, storeId: x.store_id, seq: x.seq })));
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
