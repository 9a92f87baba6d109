/**
 * Images uploaded by edges (issue 5): blobs stored content-addressed by sha256 under
 * `<dataDir>/images/<first two hex>/<sha256>`, and a link table `result_images` from each result
 * key (edge, store, seq) to its blob. The link is independent of the `results` row, so an image
 * may arrive before or after its result. One narrow, asynchronous interface like FleetStore; the
 * SQLite implementation opens its own connection to `fleet.db`.
 *
 * Idempotent: uploading the same bytes for the same result again changes nothing; the same
 * bytes for another result share the blob. A different image for a result that already has one
 * is a conflict (the edge's store went back in time), never a silent replacement.
 *
 * Two kinds per result key: the frame (`image`, table `result_images`) and an anomaly model's
 * heatmap (`heatmap`, table `result_heatmaps`, same columns and rules), sharing the blob
 * directory and the quota. A third kind is the fleet's own: a classifier's occlusion map
 * (`occlusion`, table `result_occlusions`), computed on demand (explainer.ts); being derived,
 * a new computation replaces the previous one instead of conflicting with it.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { Logger } from 'pino';
import { OspreyError } from '../protocol/errors.js';
import { blobPath as blobFile, writeBlob as writeBlobFile } from './blob-files.js';

/** The key of one result. `storeId` '' is the store of edges that send no storeId. */
export interface ResultKey {
  edgeId: string;
  storeId: string;
  seq: number;
}

export interface StoredImage extends ResultKey {
  sha256: string;
  contentType: string;
  bytes: number;
  receivedAt: number;
  /** The blob on disk. */
  file: string;
}

/** What is stored for a result: its frame, its anomaly heatmap (PNG), or the fleet's occlusion map (PNG). */
export type ImageKind = 'image' | 'heatmap' | 'occlusion';
/** The kinds edges upload. */
export const IMAGE_KINDS: readonly ImageKind[] = ['image', 'heatmap'];

export interface PutImageOutcome {
  image: StoredImage;
  /** False when this exact image was already linked to this result (a repeated upload). */
  created: boolean;
}

export interface FleetImageStore {
  /**
   * Stores `bytes` for a result. `sha256` (hex), when given, must match the bytes
   * (OSP_ERR_IMAGE_CHECKSUM otherwise); another image already linked to the result is
   * OSP_ERR_CONFLICT.
   */
  put(key: ResultKey, bytes: Buffer, contentType: string, sha256?: string, kind?: ImageKind): Promise<PutImageOutcome>;
  /** The image (or heatmap) of one result, or null. */
  get(key: ResultKey, kind?: ImageKind): Promise<StoredImage | null>;
  /** Images (or heatmaps) linked to (edge, seq) in any store (more than one only after an edge database was replaced). */
  find(edgeId: string, seq: number, kind?: ImageKind): Promise<StoredImage[]>;
  /** Which of these results have an image (or heatmap), as `edgeId/storeId/seq` strings. */
  has(keys: readonly ResultKey[], kind?: ImageKind): Promise<Set<string>>;
  close(): Promise<void>;
}

/** The string `has` answers with. */
export const resultKeyString = (k: ResultKey) => `${k.edgeId}/${k.storeId}/${k.seq}`;

/** The link table of one kind: result key → blob, all kinds alike. */
const kindTable = (table: string, comment: string) => `
-- ${comment}
CREATE TABLE IF NOT EXISTS ${table} (
  edge_id TEXT NOT NULL,
  store_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  content_type TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  PRIMARY KEY (edge_id, store_id, seq)
) WITHOUT ROWID;
-- (edge, seq) lookups without the store, e.g. for GET /api/results/:edgeId/:seq/image.
CREATE INDEX IF NOT EXISTS ${table}_edge_seq ON ${table} (edge_id, seq);
`;

const SCHEMA =
  kindTable('result_images', 'The frames edges uploaded.') +
  kindTable('result_heatmaps', "Anomaly heatmaps: the same key, a second kind beside the image.") +
  kindTable('result_occlusions', "Classifiers' occlusion maps, computed by the fleet on demand: the same key again.");

/** A link row as the record callers get (the blob's file under `dir`). */
export function storedImageOf(r: ImageRow, dir: string): StoredImage {
  return {
    edgeId: r.edge_id,
    storeId: r.store_id,
    seq: r.seq,
    sha256: r.sha256,
    contentType: r.content_type,
    bytes: r.bytes,
    receivedAt: r.received_at,
    file: blobFile(dir, r.sha256),
  };
}

/** A link row of any image kind, as both stores keep it. */
export interface ImageRow {
  edge_id: string;
  store_id: string;
  seq: number;
  sha256: string;
  content_type: string;
  bytes: number;
  received_at: number;
}

export interface SqliteImageStoreOptions {
  /** The fleet database file (created by openSqliteStore first). */
  file: string;
  /** Where blobs live: `<dir>/<aa>/<sha256>`. */
  dir: string;
  logger: Logger;
  now?: () => number;
  /** Quota in bytes of distinct blobs (images.maxBytes); a new image that would pass it is OSP_ERR_QUOTA (507: the edge keeps it and retries). */
  maxBytes?: number;
}

/** Opens the image store on the fleet database and a blob directory. */
export function openSqliteImageStore(opts: SqliteImageStoreOptions): FleetImageStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateImageSchema(db);
    return closingConnection(createSqliteImageStore(db, opts), db);
  });
}

/** Creates or upgrades the image tables on an open connection (idempotent). */
export function migrateImageSchema(db: Database.Database): void {
  db.exec(SCHEMA);
}

/** The FleetImageStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteImageStore(db: Database.Database, opts: SqliteImageStoreOptions): FleetImageStore {
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  mkdirSync(opts.dir, { recursive: true });

  const used0 = db.prepare<[], { used: number }>(
    `SELECT COALESCE(SUM(bytes), 0) AS used FROM (SELECT sha256, MAX(bytes) AS bytes FROM
       (SELECT sha256, bytes FROM result_images UNION ALL SELECT sha256, bytes FROM result_heatmaps
        UNION ALL SELECT sha256, bytes FROM result_occlusions) GROUP BY sha256)`,
  );
  const statements = (table: string) => ({
    get: db.prepare<[string, string, number], ImageRow>(`SELECT * FROM ${table} WHERE edge_id = ? AND store_id = ? AND seq = ?`),
    find: db.prepare<[string, number], ImageRow>(`SELECT * FROM ${table} WHERE edge_id = ? AND seq = ? ORDER BY received_at`),
    insert: db.prepare<ImageRow>(
      `INSERT OR IGNORE INTO ${table} (edge_id, store_id, seq, sha256, content_type, bytes, received_at)
       VALUES (@edge_id, @store_id, @seq, @sha256, @content_type, @bytes, @received_at)`,
    ),
    replace: db.prepare<ImageRow>(
      `INSERT OR REPLACE INTO ${table} (edge_id, store_id, seq, sha256, content_type, bytes, received_at)
       VALUES (@edge_id, @store_id, @seq, @sha256, @content_type, @bytes, @received_at)`,
    ),
  });
  const byKind = { image: statements('result_images'), heatmap: statements('result_heatmaps'), occlusion: statements('result_occlusions') };
  /** Kinds the fleet derives itself: a new one replaces the old. */
  const derived = (kind: ImageKind) => kind === 'occlusion';

  const blobPath = (sha: string) => blobFile(opts.dir, sha);
  const writeBlob = (sha: string, bytes: Buffer) => writeBlobFile(opts.dir, sha, bytes);
  const toImage = (r: ImageRow): StoredImage => storedImageOf(r, opts.dir);

  let closed = false;
  const maxBytes = opts.maxBytes ?? Infinity;
  // Bytes of distinct blobs; images are never deleted yet, so it only grows from here.
  let used = used0.get()!.used;

  return {
    async put(key, bytes, contentType, claimed, kind = 'image') {
      const st = byKind[kind];
      const sha = createHash('sha256').update(bytes).digest('hex');
      if (claimed !== undefined && claimed.toLowerCase() !== sha) {
        throw new OspreyError('OSP_ERR_IMAGE_CHECKSUM', `image sha256 is ${sha}, the sender named ${claimed}`);
      }
      const before = st.get.get(key.edgeId, key.storeId, key.seq);
      if (before && !(derived(kind) && before.sha256 !== sha)) {
        if (before.sha256 !== sha) {
          throw new OspreyError(
            'OSP_ERR_CONFLICT',
            `result ${key.edgeId}/${key.seq}${key.storeId ? ` (store ${key.storeId})` : ''} already has another ${kind} (${before.sha256})`,
          );
        }
        // Repeated upload; make sure the blob is still there (it is written before the link).
        await writeBlob(sha, bytes);
        return { image: toImage(before), created: false };
      }
      // Only a new blob takes space: the same bytes for another result share it.
      const isNew = !(await stat(blobPath(sha)).catch(() => undefined));
      if (isNew && used + bytes.length > maxBytes) {
        throw new OspreyError('OSP_ERR_QUOTA', `image store full: ${used} bytes used + ${bytes.length} would exceed images.maxBytes (${maxBytes})`);
      }
      // Blob first, link second: a link never points at a missing blob.
      await writeBlob(sha, bytes);
      if (isNew) used += bytes.length;
      const row: ImageRow = {
        edge_id: key.edgeId,
        store_id: key.storeId,
        seq: key.seq,
        sha256: sha,
        content_type: contentType,
        bytes: bytes.length,
        received_at: now(),
      };
      const created = (derived(kind) ? st.replace : st.insert).run(row).changes >= 1;
      const stored = created ? row : st.get.get(key.edgeId, key.storeId, key.seq)!;
      if (stored.sha256 !== sha) throw new OspreyError('OSP_ERR_CONFLICT', `result ${key.edgeId}/${key.seq} already has another ${kind}`);
      log.debug({ edgeId: key.edgeId, storeId: key.storeId, seq: key.seq, kind, sha256: sha, bytes: bytes.length }, 'image stored');
      return { image: toImage(stored), created };
    },
    async get(key, kind = 'image') {
      const r = byKind[kind].get.get(key.edgeId, key.storeId, key.seq);
      return r ? toImage(r) : null;
    },
    async find(edgeId, seq, kind = 'image') {
      return byKind[kind].find.all(edgeId, seq).map(toImage);
    },
    async has(keys, kind = 'image') {
      const found = new Set<string>();
      const st = byKind[kind];
      for (const k of keys) if (st.get.get(k.edgeId, k.storeId, k.seq)) found.add(resultKeyString(k));
      return found;
    },
    async close() {
      if (closed) return;
      closed = true;
    },
  };
}
