/**
 * PostgreSQL storage (`storage.url`). A placeholder with the signature the storage factory calls;
 * replaced by the PostgreSQL stores' bundle.
 */
import type { Logger } from 'pino';
import { OspreyError } from '../../protocol/errors.js';
import type { Storage, StorageSettings } from '../storage.js';

export interface PgStorageOptions {
  /** `postgres://…`; never logged (it may hold a password). */
  url: string;
  logger: Logger;
  settings: StorageSettings;
}

/** Opens every store on PostgreSQL, migrations applied once. Not in this build. */
export async function openPgStorage(_opts: PgStorageOptions): Promise<Storage> {
  throw new OspreyError('OSP_ERR_CONFIG', 'storage.url: PostgreSQL storage is not available in this build');
}
