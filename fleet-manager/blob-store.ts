/**
 * Where blob bytes are kept beside the content-addressed files of dataDir (blob-files.ts): with
 * PostgreSQL storage, in the database (pg/blob-store-pg.ts), so that every fleet instance can
 * serve every blob and each instance's files are only a verified cache of them (blob-cache.ts);
 * with SQLite, nowhere else — the files are the truth and this store does nothing.
 */

/** The folders of dataDir whose blobs the store keeps, each a namespace of its own. */
export type BlobScope = 'artifacts' | 'images' | 'backbones';

export interface BlobStore {
  /** 'files': the local files are all there is (SQLite); 'postgres': the database holds every blob. */
  readonly kind: 'files' | 'postgres';
  /**
   * Stores a complete blob as `sha256` in `scope`: the bytes themselves when the caller holds
   * them, else the file at that path, streamed; checked against `sha256` as they are read.
   * Idempotent: a blob already held is left as it is. Resolves once committed, so the caller may
   * then commit a row that references it.
   */
  put(scope: BlobScope, sha256: string, source: string | Buffer): Promise<void>;
  /** The blob's bytes in order, streamed part by part; null when the store does not hold it. */
  read(scope: BlobScope, sha256: string): Promise<AsyncIterable<Buffer> | null>;
  /** Forgets the blob (nothing when absent); the caller checks first that nothing references it. */
  delete(scope: BlobScope, sha256: string): Promise<void>;
  close(): Promise<void>;
}

/** The SQLite case: blobs are the files of dataDir and nothing else. */
export const FILES_ONLY_BLOBS: BlobStore = {
  kind: 'files',
  async put() {},
  async read() {
    return null;
  },
  async delete() {},
  async close() {},
};
