/**
 * The fleet's storage in one place: `openStorage` opens the database once, creates or migrates
 * the schema of every store in a fixed order and returns the stores as one bundle with one close.
 * SQLite (the default: dataDir/fleet.db) runs on a storage thread of its own, so every writer of
 * the file is behind one connection and the main thread does no SQLite work (docs/storage.md);
 * PostgreSQL (`storage.url`) is opened by fleet-manager/pg/pg-storage.ts.
 */
import type { Logger } from 'pino';
import type { FleetStore } from './store.js';
import type { ControlStore } from './control-store.js';
import type { FleetImageStore } from './image-store.js';
import type { ReviewStore } from './review-store.js';
import type { GoldenSetStore } from './golden-set-store.js';
import type { IdentityStore } from './identity-store.js';
import type { TrainingStore } from './training-store.js';
import type { BackboneStore } from './backbone-store.js';
import type { AlertStore } from './alert-store.js';
import type { WebhookStore } from './webhook-store.js';
import type { BlobStore } from './blob-store.js';
import { openPgStorage } from './pg/pg-storage.js';
import { openSqliteStorage } from './sqlite-storage.js';
import { startStorageThread } from './storage-thread.js';

/** Every store of the fleet, over one database. */
export interface Storage {
  fleet: FleetStore;
  control: ControlStore;
  images: FleetImageStore;
  reviews: ReviewStore;
  goldenSets: GoldenSetStore;
  identity: IdentityStore;
  training: TrainingStore;
  backbones: BackboneStore;
  alerts: AlertStore;
  webhooks: WebhookStore;
  /** Blob bytes beside dataDir's files: the database's with PostgreSQL, none with SQLite (blob-store.ts). */
  blobs: BlobStore;
  kind: 'sqlite' | 'postgres';
  /** Waits for the calls in flight, closes every store and the database. Idempotent. */
  close(): Promise<void>;
}

/** The store names of a Storage bundle, in the order their schemas are created. */
export const STORE_NAMES = ['fleet', 'control', 'images', 'reviews', 'goldenSets', 'identity', 'training', 'backbones', 'alerts', 'webhooks'] as const;
export type StoreName = (typeof STORE_NAMES)[number];

/** The stores' settings: plain data, so that they can be handed to the storage thread. */
export interface StorageSettings {
  /** Where fleet.db (SQLite) and the image blobs (images/) live. */
  dataDir: string;
  /** Image quota in bytes of distinct blobs (images.maxBytes). */
  imagesMaxBytes: number;
  /** Resolved alerts kept (alerts.maxAlerts). */
  maxAlerts: number;
  /** Webhook deliveries kept (webhooks.maxOutbox). */
  maxOutbox: number;
}

export interface StorageOptions extends StorageSettings {
  /** `postgres://` or `postgresql://`: PostgreSQL; absent: SQLite in dataDir. Never logged (it may hold a password). */
  url?: string;
  /** Each store logs through a child with its `component`. */
  logger: Logger;
  /**
   * SQLite only: run the stores on a storage thread (default true, what the fleet manager uses);
   * false runs them on the caller's thread (unit tests).
   */
  thread?: boolean;
}

/**
 * Opens the fleet's storage (see the file comment). Rejects with the cause when the database
 * cannot be opened or migrated; nothing is left open then.
 */
export async function openStorage(opts: StorageOptions): Promise<Storage> {
  if (opts.url !== undefined) {
    return openPgStorage({ url: opts.url, logger: opts.logger, settings: settingsOf(opts) });
  }
  if (opts.thread === false) return openSqliteStorage(settingsOf(opts), opts.logger);
  return startStorageThread(settingsOf(opts), opts.logger);
}

function settingsOf(o: StorageSettings): StorageSettings {
  return { dataDir: o.dataDir, imagesMaxBytes: o.imagesMaxBytes, maxAlerts: o.maxAlerts, maxOutbox: o.maxOutbox };
}
