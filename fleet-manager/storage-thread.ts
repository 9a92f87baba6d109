/**
 * The SQLite storage behind a thread of its own (storage-worker.ts): the main thread holds
 * proxies implementing the store interfaces, each call one message (an ingest batch included).
 * The main thread thus does no SQLite work, and every writer of fleet.db is the one connection
 * of that thread (docs/storage.md).
 */
import type { Logger } from 'pino';
import { startRpcWorker } from './storage-rpc.js';
import { STORE_NAMES, type Storage, type StorageSettings } from './storage.js';

/** Starts the storage thread; rejects with the open error (code kept) when fleet.db cannot be opened. */
export async function startStorageThread(settings: StorageSettings, logger: Logger): Promise<Storage> {
  const rpc = await startRpcWorker({
    url: new URL('./storage-worker.js', import.meta.url),
    data: settings,
    logger: logger.child({ component: 'storage' }),
    what: 'storage thread',
    deadCode: 'OSP_ERR_STORE',
  });
  const proxies = Object.fromEntries(STORE_NAMES.map((name) => [name, withLocalClose(rpc.proxy(name))])) as unknown as Omit<Storage, 'kind' | 'close'>;
  return { ...proxies, kind: 'sqlite', close: () => rpc.close() };
}

/** A store proxy whose own close does nothing: the stores close together, with the thread (Storage.close). */
function withLocalClose<T extends object>(proxy: T): T {
  return new Proxy(proxy, {
    get: (target, prop, receiver) => (prop === 'close' ? async () => undefined : Reflect.get(target, prop, receiver)),
  });
}
