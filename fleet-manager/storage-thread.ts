/**
 * The SQLite storage behind a thread of its own (storage-worker.ts): the main thread holds
 * proxies implementing the store interfaces, each call one message (an ingest batch included).
 * The main thread thus does no SQLite work, and every writer of fleet.db is the one connection
 * of that thread (docs/storage.md).
 */
import type { Logger } from 'pino';
import { startRpcWorker } from './storage-rpc.js';
import { packResults, type ResultColumns } from './result-columns.js';
import type { FleetStore, IngestOutcome, ReportMeta } from './store.js';
import { FILES_ONLY_BLOBS } from './blob-store.js';
import { STORE_NAMES, type Storage, type StorageSettings } from './storage.js';

/** Starts the storage thread; rejects with the open error (code kept) when fleet.db cannot be opened. */
export async function startStorageThread(settings: StorageSettings, logger: Logger): Promise<Storage> {
  const rpc = await startRpcWorker({
    url: new URL('./storage-worker.js', import.meta.url),
    data: settings,
    // The stores' lines keep their own component (store, identity, …); the thread's own say storage.
    logger,
    component: 'storage',
    what: 'storage thread',
    deadCode: 'OSP_ERR_STORE',
  });
  const proxies = Object.fromEntries(STORE_NAMES.map((name) => [name, overlay(rpc.proxy(name), {})])) as unknown as Omit<Storage, 'kind' | 'close' | 'blobs'>;
  // A result batch crosses as columns, one message (result-columns.ts).
  const fleet = rpc.proxy<ThreadFleetStore>('fleet');
  proxies.fleet = overlay(fleet, {
    ingestResults: (edgeId, results, meta, storeId) => fleet.ingestColumns(edgeId, packResults(results), meta, storeId),
  });
  return { ...proxies, blobs: FILES_ONLY_BLOBS, kind: 'sqlite', close: () => rpc.close() };
}

/** What the storage thread serves as `fleet`: the FleetStore, and its ingest taking columns. */
export interface ThreadFleetStore extends FleetStore {
  ingestColumns(edgeId: string, columns: ResultColumns, meta: ReportMeta, storeId?: string): Promise<IngestOutcome>;
}

/**
 * A store proxy with some methods done here; its own close does nothing (the stores close
 * together, with the thread: Storage.close).
 */
function overlay<T extends object>(proxy: T, local: Partial<T>): T {
  const own: Record<string | symbol, unknown> = { ...local, close: async () => undefined };
  return new Proxy(proxy, {
    get: (target, prop, receiver) => (prop in own ? own[prop] : Reflect.get(target, prop, receiver)),
  });
}
