/**
 * What the HTTP routes need from the rest of the fleet manager, passed as plugin options so the
 * app can be built around any store (tests use a real SQLite file without MQTT).
 */
import type { FleetStore } from '../store.js';
import type { IngestCounters } from '../ingest.js';

export interface RouteDeps {
  store: FleetStore;
  /** Live MQTT and ingest status for /health; absent when the app runs without MQTT. */
  status?: () => { mqttConnected: boolean; ingest: IngestCounters };
  /** The clock used for default time ranges and uptime (epoch ms). */
  now: () => number;
  /** When the fleet manager started (epoch ms). */
  startedAt: number;
}
