/**
 * The SQLite storage on the calling thread: fleet.db opened once (sqlite-db.ts), every store's
 * schema created or migrated in a fixed order, every store built over that one connection. The
 * storage thread (storage-worker.ts) runs this; so do unit tests (`openStorage({ thread: false })`).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { openSqliteDatabase } from './sqlite-db.js';
import { migrateFleetSchema } from './store-db.js';
import { createSqliteFleetStore } from './store.js';
import { createSqliteControlStore, migrateControlSchema } from './control-store.js';
import { createSqliteImageStore, migrateImageSchema } from './image-store.js';
import { createSqliteReviewStore, migrateReviewSchema } from './review-store.js';
import { createSqliteGoldenSetStore, migrateGoldenSetSchema } from './golden-set-store.js';
import { createSqliteIdentityStore, migrateIdentitySchema } from './identity-store.js';
import { createSqliteTrainingStore, migrateTrainingSchema } from './training-store.js';
import { createSqliteBackboneStore, migrateBackboneSchema } from './backbone-store.js';
import { createSqliteAlertStore, migrateAlertSchema } from './alert-store.js';
import { createSqliteWebhookStore, migrateWebhookSchema } from './webhook-store.js';
import { FILES_ONLY_BLOBS } from './blob-store.js';
import { STORE_NAMES, type Storage, type StorageSettings } from './storage.js';

/** The fleet database's file name in dataDir. */
export const FLEET_DB_FILE = 'fleet.db';

/** Opens dataDir/fleet.db once and every store over it (see the file comment). */
export function openSqliteStorage(settings: StorageSettings, logger: Logger): Storage {
  mkdirSync(settings.dataDir, { recursive: true });
  const file = join(settings.dataDir, FLEET_DB_FILE);
  const log = (component: string) => logger.child({ component });
  const db = openSqliteDatabase(file);
  try {
    // One transaction: a second process opening the same file waits, then finds every table made.
    db.transaction(() => {
      // The fleet's tables first: the control store's rollout gates read `results`.
      migrateFleetSchema(db, file, log('store'));
      migrateControlSchema(db);
      migrateImageSchema(db);
      migrateReviewSchema(db);
      migrateGoldenSetSchema(db);
      migrateIdentitySchema(db);
      migrateTrainingSchema(db);
      migrateBackboneSchema(db);
      migrateAlertSchema(db);
      migrateWebhookSchema(db);
    }).immediate();
    const stores = {
      fleet: createSqliteFleetStore(db, log('store')),
      control: createSqliteControlStore(db, { file, logger: log('control-store') }),
      images: createSqliteImageStore(db, { file, dir: join(settings.dataDir, 'images'), logger: log('images'), maxBytes: settings.imagesMaxBytes }),
      reviews: createSqliteReviewStore(db, { file }),
      goldenSets: createSqliteGoldenSetStore(db, { file }),
      identity: createSqliteIdentityStore(db, { file, logger: log('identity') }),
      training: createSqliteTrainingStore(db, { file, logger: log('training') }),
      backbones: createSqliteBackboneStore(db),
      alerts: createSqliteAlertStore(db, { file, maxAlerts: settings.maxAlerts }),
      webhooks: createSqliteWebhookStore(db, { file, maxOutbox: settings.maxOutbox }),
    };
    let closing: Promise<void> | undefined;
    return {
      ...stores,
      blobs: FILES_ONLY_BLOBS,
      kind: 'sqlite',
      close() {
        closing ??= (async () => {
          // The fleet store first: batches handed in are committed and answered before the connection goes.
          for (const name of STORE_NAMES) await stores[name].close();
          db.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}
