/**
 * The fleet's Prometheus metrics (`GET /metrics`, docs/monitoring.md "Metrics, dashboards and the
 * API document"). One prom-client Registry per fleet instance, never the global one: tests run
 * many fleets in one process. Counters and histograms are fed as things happen (ingest, HTTP);
 * gauges are read from the stores at scrape time (collect()), so they cost nothing between scrapes.
 *
 * Labels stay low-cardinality: `edge` appears only where it is bounded by the fleet's size (one
 * series per edge and verdict or alarm), never a result, frame, seq or user; HTTP requests are
 * labelled by route pattern (`/api/edges/:id`), not by URL, and unmatched URLs share one label.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FastifyInstance } from 'fastify';
import type { FleetStore, EdgeRecord } from './store.js';
import type { ControlStore } from './control-store.js';
import type { TrainingStore } from './training-store.js';
import type { IngestObserver } from './ingest.js';
import { ACTIVE_STATUSES } from './rollout-spec.js';
import { TRAINING_STATES } from './training-store.js';

export interface FleetMetricsOptions {
  store: FleetStore;
  /** Rollouts (absent: no rollout gauges). */
  control?: ControlStore;
  /** Training jobs (absent: no training gauge). */
  training?: TrainingStore;
  /** Clients connected to the embedded broker now (absent with an external broker). */
  mqttClients?: () => number;
  /** Whether the fleet's own MQTT client is connected. */
  mqttConnected?: () => boolean;
  /**
   * Open alerts by type (the fleet's alert store, issue 17); absent: no alert gauge. Read at each
   * scrape, so it must be cheap (one grouped count).
   */
  openAlerts?: () => Promise<Record<string, number>>;
  /** Fleet clock (epoch ms) for edge staleness; Date.now by default. */
  now?: () => number;
}

export interface FleetMetrics {
  readonly registry: Registry;
  /** What ingest reports (pass it as ingest's `observer`). */
  readonly ingest: IngestObserver;
  /** Counts every HTTP answer of `app` by route pattern, method and status; call before routes are registered. */
  instrument(app: FastifyInstance): void;
}

/** An edge's health as the console shows it (console/src/health.ts): stale after 3 missed telemetry periods. */
export function edgeStatus(e: Pick<EdgeRecord, 'online' | 'telemetry' | 'telemetryAt' | 'lastSeen'>, now: number): 'online' | 'stale' | 'offline' {
  if (!e.online) return 'offline';
  const since = e.telemetryAt ?? e.lastSeen;
  const period = e.telemetry && e.telemetry.intervalMs > 0 ? e.telemetry.intervalMs : 10_000;
  return now - since > 3 * period ? 'stale' : 'online';
}

/**
 * A read shared by every caller while it is in flight: the gauges of one scrape, collected
 * concurrently, cost one query. The next scrape reads again.
 */
function sharedRead<T>(load: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () =>
    (pending ??= load().finally(() => {
      pending = undefined;
    }));
}

/** Seconds; from a fast in-process call to a slow upload or export. */
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Seconds from a batch's arrival to stored (one SQLite transaction, plus its queue). */
const INGEST_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Creates the fleet's registry and its metrics. */
export function createFleetMetrics(opts: FleetMetricsOptions): FleetMetrics {
  const registry = new Registry();
  const registers = [registry];
  const now = opts.now ?? Date.now;
  const { store, control, training } = opts;

  const results = new Counter({
    name: 'osprey_fleet_results_ingested_total',
    help: 'Result rows stored by ingest (duplicates of stored rows not counted), by edge and verdict.',
    labelNames: ['edge', 'verdict'] as const,
    registers,
  });
  const batches = new Counter({ name: 'osprey_fleet_result_batches_total', help: 'Result batches stored by ingest.', registers });
  const acks = new Counter({ name: 'osprey_fleet_acks_sent_total', help: 'Acks published to edges (each names the highest contiguous seq stored).', registers });
  const dropped = new Counter({ name: 'osprey_fleet_mqtt_messages_dropped_total', help: 'MQTT messages from edges refused by ingest (bad topic, schema or envelope).', registers });
  const ingestSeconds = new Histogram({
    name: 'osprey_fleet_ingest_duration_seconds',
    help: "Seconds from a result batch's arrival to stored, queueing behind the edge's earlier messages included.",
    buckets: INGEST_BUCKETS,
    registers,
  });
  const httpRequests = new Counter({
    name: 'osprey_fleet_http_requests_total',
    help: 'HTTP answers by route pattern, method and status code.',
    labelNames: ['route', 'method', 'status'] as const,
    registers,
  });
  const httpSeconds = new Histogram({
    name: 'osprey_fleet_http_request_duration_seconds',
    help: 'Seconds from request to answer, by route pattern and method.',
    labelNames: ['route', 'method'] as const,
    buckets: HTTP_BUCKETS,
    registers,
  });

  if (opts.mqttClients) {
    const count = opts.mqttClients;
    new Gauge({
      name: 'osprey_fleet_mqtt_clients_connected',
      help: "Clients connected to the embedded MQTT broker (edges and the fleet's own client).",
      registers,
      collect() {
        this.set(count());
      },
    });
  }
  if (opts.mqttConnected) {
    const connected = opts.mqttConnected;
    new Gauge({
      name: 'osprey_fleet_mqtt_connected',
      help: "1 while the fleet's own MQTT client is connected to the broker.",
      registers,
      collect() {
        this.set(connected() ? 1 : 0);
      },
    });
  }

  // One read of the edges per scrape feeds every per-edge gauge: prom-client collects the gauges
  // of a scrape concurrently, and they all await the same read.
  const edgesRead = sharedRead(async () => {
    const t = now();
    return (await store.listEdges()).map((e) => ({ ...e, status: edgeStatus(e, t) }));
  });
  new Gauge({
    name: 'osprey_fleet_edges',
    help: 'Edges by status: online, stale (telemetry 3 periods late) or offline.',
    labelNames: ['status'] as const,
    registers,
    async collect() {
      const edges = await edgesRead();
      for (const s of ['online', 'stale', 'offline'] as const) this.set({ status: s }, edges.filter((e) => e.status === s).length);
    },
  });
  new Gauge({
    name: 'osprey_fleet_edge_info',
    help: 'Always 1: each known edge with its line and active model (join on edge).',
    labelNames: ['edge', 'line', 'model'] as const,
    registers,
    async collect() {
      const edges = await edgesRead();
      this.reset();
      for (const e of edges) {
        const active = e.state?.active;
        this.set({ edge: e.id, line: e.line ?? '', model: active ? `${active.name}@${active.version}` : '' }, 1);
      }
    },
  });
  new Gauge({
    name: 'osprey_fleet_edge_backlog_results',
    help: 'Results stored at the edge and not yet acked, as its last telemetry said.',
    labelNames: ['edge', 'line'] as const,
    registers,
    async collect() {
      const edges = await edgesRead();
      this.reset();
      for (const e of edges) if (e.telemetry) this.set({ edge: e.id, line: e.line ?? '' }, e.telemetry.pendingResults);
    },
  });
  new Gauge({
    name: 'osprey_fleet_edge_alarm_active',
    help: 'Alarms in force at each online or stale edge, as its last telemetry said (1 per alarm).',
    labelNames: ['edge', 'line', 'alarm'] as const,
    registers,
    async collect() {
      const edges = await edgesRead();
      this.reset();
      // An offline edge's last alarms are history, not alarms in force.
      for (const e of edges) if (e.status !== 'offline') for (const alarm of e.telemetry?.alarms ?? []) this.set({ edge: e.id, line: e.line ?? '', alarm }, 1);
    },
  });

  if (control) {
    const rolloutsRead = sharedRead(() => control.listRollouts({ active: true }));
    new Gauge({
      name: 'osprey_fleet_rollouts',
      help: 'Active rollouts (those that own edges) by status: running, awaiting-promotion, paused.',
      labelNames: ['status'] as const,
      registers,
      async collect() {
        const active = await rolloutsRead();
        for (const s of ACTIVE_STATUSES) this.set({ status: s }, active.filter((r) => r.status === s).length);
      },
    });
    new Gauge({
      name: 'osprey_fleet_rollout_stage',
      help: 'The current stage (0-based) of each active rollout.',
      labelNames: ['rollout', 'model', 'version'] as const,
      registers,
      async collect() {
        const active = await rolloutsRead();
        this.reset();
        for (const r of active) this.set({ rollout: r.id, model: r.model, version: r.version }, r.stageIndex);
      },
    });
    const gates = async function* () {
      for (const r of await rolloutsRead()) for (const g of r.stages[r.stageIndex]?.evaluation?.gates ?? []) yield { rollout: r.id, g };
    };
    new Gauge({
      name: 'osprey_fleet_rollout_gate_value',
      help: "The last evaluated value of each gate of an active rollout's current stage (absent until it has one).",
      labelNames: ['rollout', 'gate'] as const,
      registers,
      async collect() {
        this.reset();
        for await (const { rollout, g } of gates()) if (g.value !== null) this.set({ rollout, gate: g.gate }, g.value);
      },
    });
    new Gauge({
      name: 'osprey_fleet_rollout_gate_passing',
      help: "1 when a gate of an active rollout's current stage passes, 0 when it fails or is pending.",
      labelNames: ['rollout', 'gate'] as const,
      registers,
      async collect() {
        this.reset();
        for await (const { rollout, g } of gates()) this.set({ rollout, gate: g.gate }, g.status === 'pass' ? 1 : 0);
      },
    });
  }

  if (training) {
    new Gauge({
      name: 'osprey_fleet_training_jobs',
      help: 'Training jobs by state (queued, running, succeeded, failed, cancelled).',
      labelNames: ['state'] as const,
      registers,
      async collect() {
        const counts = await training.countByState();
        for (const s of TRAINING_STATES) this.set({ state: s }, counts[s] ?? 0);
      },
    });
  }

  if (opts.openAlerts) {
    const openAlerts = opts.openAlerts;
    new Gauge({
      name: 'osprey_fleet_alerts_open',
      help: 'Alerts raised and not resolved, by type.',
      labelNames: ['type'] as const,
      registers,
      async collect() {
        const counts = await openAlerts();
        this.reset();
        for (const [type, n] of Object.entries(counts)) this.set({ type }, n);
      },
    });
  }

  return {
    registry,
    ingest: {
      batchStored(edgeId, inserted, seconds) {
        batches.inc();
        ingestSeconds.observe(seconds);
        for (const [verdict, n] of Object.entries(inserted)) results.inc({ edge: edgeId, verdict }, n);
      },
      ackSent: () => acks.inc(),
      dropped: () => dropped.inc(),
    },
    instrument(app) {
      app.addHook('onResponse', async (req, reply) => {
        // The route's pattern, never the URL: a URL per result would be a series per result.
        const route = req.routeOptions.url ?? 'unmatched';
        httpRequests.inc({ route, method: req.method, status: String(reply.statusCode) });
        httpSeconds.observe({ route, method: req.method }, reply.elapsedTime / 1000);
      });
    },
  };
}
