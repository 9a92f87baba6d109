/**
 * PostgreSQL storage (`storage.url`, issue 18): one pool for every store, every store's
 * migrations applied once (in the order of STORE_NAMES, under migratePg's advisory lock, so
 * several instances starting together apply them once), and the stores as one bundle. Blob
 * bytes (artifacts, images, backbones) are kept in the database too (blob-store-pg.ts); each
 * instance's files under dataDir are a cache of them (blob-cache.ts, docs/storage.md).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Storage, StorageSettings } from '../storage.js';
import { migratePg, openPgPool, type PgMigration } from './pg-db.js';
import { FLEET_PG_MIGRATIONS, pgFleetStore } from './fleet-store-pg.js';
import { CONTROL_PG_MIGRATIONS, pgControlStore } from './control-store-pg.js';
import { IMAGE_PG_MIGRATIONS, pgImageStore } from './image-store-pg.js';
import { REVIEW_PG_MIGRATIONS, pgReviewStore } from './review-store-pg.js';
import { GOLDEN_SET_PG_MIGRATIONS, pgGoldenSetStore } from './golden-set-store-pg.js';
import { IDENTITY_PG_MIGRATIONS, pgIdentityStore } from './identity-store-pg.js';
import { TRAINING_PG_MIGRATIONS, pgTrainingStore } from './training-store-pg.js';
import { BACKBONE_PG_MIGRATIONS, pgBackboneStore } from './backbone-store-pg.js';
import { ALERT_PG_MIGRATIONS, pgAlertStore } from './alert-store-pg.js';
import { WEBHOOK_PG_MIGRATIONS, pgWebhookStore } from './webhook-store-pg.js';
import { LEADER_PG_MIGRATIONS } from '../leadership.js';
import { BLOB_PG_MIGRATIONS, pgBlobStore } from './blob-store-pg.js';
import { withLocalImages } from '../blob-cache.js';

export interface PgStorageOptions {
  /** `postgres://…`; never logged (it may hold a password). */
  url: string;
  logger: Logger;
  settings: StorageSettings;
  /** Pool connections at most (default 10). */
  maxConnections?: number;
}

/** Every store's schema steps, in the order the factory applies them. */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  ...FLEET_PG_MIGRATIONS,
  ...CONTROL_PG_MIGRATIONS,
  ...IMAGE_PG_MIGRATIONS,
  ...REVIEW_PG_MIGRATIONS,
  ...GOLDEN_SET_PG_MIGRATIONS,
  ...IDENTITY_PG_MIGRATIONS,
  ...TRAINING_PG_MIGRATIONS,
  ...BACKBONE_PG_MIGRATIONS,
  ...ALERT_PG_MIGRATIONS,
  ...WEBHOOK_PG_MIGRATIONS,
  ...LEADER_PG_MIGRATIONS,
  ...BLOB_PG_MIGRATIONS,
];

/** Opens every store on PostgreSQL, migrations applied once. Rejects (pool ended) when the server cannot be reached or migrated. */
export async function openPgStorage(opts: PgStorageOptions): Promise<Storage> {
  const pool = openPgPool(opts.url, { max: opts.maxConnections ?? 10 });
  const log = (component: string) => opts.logger.child({ component });
  try {
    const applied = await migratePg(pool, PG_MIGRATIONS);
    if (applied.length > 0) opts.logger.info({ applied }, 'PostgreSQL schema migrated');
  } catch (err) {
    await pool.end().catch(() => {});
    throw err;
  }
  const s = opts.settings;
  const blobs = pgBlobStore(pool);
  const stores = {
    fleet: pgFleetStore(pool, { logger: log('store') }),
    control: pgControlStore(pool, { logger: log('control-store') }),
    // Readers get images whose files are on this instance, fetched from the database when missing.
    images: withLocalImages(pgImageStore(pool, { dir: join(s.dataDir, 'images'), logger: log('images'), maxBytes: s.imagesMaxBytes, blobs }), blobs),
    reviews: pgReviewStore(pool),
    goldenSets: pgGoldenSetStore(pool),
    identity: pgIdentityStore(pool, { logger: log('identity') }),
    training: pgTrainingStore(pool, { logger: log('training') }),
    backbones: pgBackboneStore(pool),
    alerts: pgAlertStore(pool, { maxAlerts: s.maxAlerts }),
    webhooks: pgWebhookStore(pool, { maxOutbox: s.maxOutbox }),
  };
  let closing: Promise<void> | undefined;
  return {
    ...stores,
    blobs,
    kind: 'postgres',
    close() {
      closing ??= (async () => {
        for (const store of Object.values(stores)) await store.close().catch(() => {});
        await pool.end();
      })();
      return closing;
    },
  };
}
