/**
 * The storage thread's entry: the SQLite storage (sqlite-storage.ts) opened here, its stores
 * answering the main thread's calls (storage-rpc.ts). Every write to fleet.db of the fleet
 * manager happens on this thread, over its one connection.
 */
import { serveRpc } from './storage-rpc.js';
import { openSqliteStorage } from './sqlite-storage.js';
import { STORE_NAMES, type StorageSettings } from './storage.js';
import { unpackResults } from './result-columns.js';
import type { ThreadFleetStore } from './storage-thread.js';

await serveRpc((data, logger) => {
  const storage = openSqliteStorage(data as StorageSettings, logger);
  const objects: Record<string, object> = Object.fromEntries(STORE_NAMES.map((name) => [name, storage[name]]));
  const fleet: ThreadFleetStore = {
    ...storage.fleet,
    ingestColumns: (edgeId, columns, meta, storeId) => storage.fleet.ingestResults(edgeId, unpackResults(columns), meta, storeId),
  };
  objects.fleet = fleet;
  return { objects, close: () => storage.close() };
});
