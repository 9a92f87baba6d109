/**
 * What the HTTP routes need from the rest of the fleet manager, passed as plugin options so the
 * app can be built around any store (tests use a real SQLite file without MQTT).
 */
import type { FleetStore } from '../store.js';
import type { IngestCounters } from '../ingest.js';
import type { ControlStore } from '../control-store.js';
import type { Registry } from '../registry.js';
import type { DesiredPublisher } from '../desired-state.js';
import type { RolloutEngine } from '../rollout-engine.js';
import type { ConvergenceMonitor } from '../convergence.js';
import type { FleetImageStore } from '../image-store.js';

/** The control plane behind the registry, config and rollout routes. */
export interface ControlDeps {
  store: ControlStore;
  registry: Registry;
  publisher: DesiredPublisher;
  engine: RolloutEngine;
  /** Each edge's convergence on its desired state; absent: `convergence` is null in edge views. */
  convergence?: Pick<ConvergenceMonitor, 'view'>;
  /** Largest accepted package upload in bytes. */
  maxPackageBytes: number;
  /** Bounds of a child process that runs a model (registry.checkTimeoutMs / checkMaxRssBytes); the pack wizard's smoke test. */
  check?: { timeoutMs: number; maxRssBytes: number };
  /** Base URL of artifact downloads, as desired states carry it. */
  baseUrl: () => string;
}

export interface RouteDeps {
  store: FleetStore;
  /** Live MQTT and ingest status for /health; absent when the app runs without MQTT. */
  status?: () => { mqttConnected: boolean; ingest: IngestCounters };
  /** The clock used for default time ranges and uptime (epoch ms). */
  now: () => number;
  /** When the fleet manager started (epoch ms). */
  startedAt: number;
  /** Registry, configuration and rollouts; absent when the app runs without them. */
  control?: ControlDeps;
  /** Result images; absent: result views say hasImage false. */
  images?: FleetImageStore;
}
