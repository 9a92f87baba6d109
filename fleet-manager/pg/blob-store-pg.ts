/**
 * Blob bytes in PostgreSQL (issue 18): every artifact, image and backbone file of the fleet
 * instances, so that any instance serves any blob and none is lost with an instance's disk.
 * A blob is cut into parts of PART_BYTES (a large artifact is streamed in and out, never held
 * whole), all written in one transaction with its header row `osprey_blobs` last: a header
 * means every part is there. Content-addressed, so a put of a blob already held changes nothing.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type pg from 'pg';
import type { BlobScope, BlobStore } from '../blob-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

/** Bytes per part (the last part of a blob may be shorter). */
export const PART_BYTES = 1024 * 1024;

export const BLOB_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'blobs-1',
    sql: `
-- One row per complete blob, written in the transaction of its parts, after them.
CREATE TABLE osprey_blobs (
  scope TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  size BIGINT NOT NULL,
  parts INT NOT NULL,
  PRIMARY KEY (scope, sha256)
);
-- The bytes, part 0 first.
CREATE TABLE osprey_blob_parts (
  scope TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  part INT NOT NULL,
  bytes BYTEA NOT NULL,
  PRIMARY KEY (scope, sha256, part)
);
`,
  },
];

/** The blob store on `pool`, whose database BLOB_PG_MIGRATIONS has been applied to. `partBytes` is for tests. */
export function pgBlobStore(pool: pg.Pool, opts: { partBytes?: number } = {}): BlobStore {
  const partBytes = opts.partBytes ?? PART_BYTES;
  const header = async (scope: BlobScope, sha256: string) =>
    (await pool.query<{ size: number; parts: number }>('SELECT size, parts FROM osprey_blobs WHERE scope = $1 AND sha256 = $2', [scope, sha256])).rows[0];

  return {
    kind: 'postgres',
    async put(scope, sha256, source) {
      if (await header(scope, sha256)) return;
      await withTransaction(pool, async (c) => {
        const hash = createHash('sha256');
        let part = 0;
        let size = 0;
        let pending: Buffer[] = [];
        let pendingBytes = 0;
        const insert = (bytes: Buffer) =>
          c.query('INSERT INTO osprey_blob_parts (scope, sha256, part, bytes) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [scope, sha256, part++, bytes]);
        const chunks = typeof source === 'string' ? createReadStream(source, { highWaterMark: partBytes }) : [source];
        for await (const chunk of chunks) {
          const b = chunk as Buffer;
          hash.update(b);
          size += b.length;
          // A read may come short of partBytes: parts are cut at fixed offsets whatever the reads.
          pending.push(b);
          pendingBytes += b.length;
          while (pendingBytes >= partBytes) {
            const all = Buffer.concat(pending);
            await insert(all.subarray(0, partBytes));
            pending = [all.subarray(partBytes)];
            pendingBytes = all.length - partBytes;
          }
        }
        if (pendingBytes > 0 || part === 0) await insert(Buffer.concat(pending));
        const got = hash.digest('hex');
        if (got !== sha256) throw new Error(`${typeof source === 'string' ? `blob file ${source}` : `the ${scope} blob given`} hashes to ${got}, not ${sha256}: not stored`);
        await c.query('INSERT INTO osprey_blobs (scope, sha256, size, parts) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [scope, sha256, size, part]);
      });
    },
    async read(scope, sha256) {
      const h = await header(scope, sha256);
      if (!h) return null;
      return (async function* () {
        for (let part = 0; part < h.parts; part++) {
          const r = await pool.query<{ bytes: Buffer }>('SELECT bytes FROM osprey_blob_parts WHERE scope = $1 AND sha256 = $2 AND part = $3', [scope, sha256, part]);
          if (!r.rows[0]) throw new Error(`${scope} blob ${sha256}: part ${part} of ${h.parts} is missing from the database`);
          yield r.rows[0].bytes;
        }
      })();
    },
    async delete(scope, sha256) {
      await withTransaction(pool, async (c) => {
        await c.query('DELETE FROM osprey_blobs WHERE scope = $1 AND sha256 = $2', [scope, sha256]);
        await c.query('DELETE FROM osprey_blob_parts WHERE scope = $1 AND sha256 = $2', [scope, sha256]);
      });
    },
    // The pool belongs to the storage factory, which ends it.
    async close() {},
  };
}
