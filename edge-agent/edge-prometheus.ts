/**
 * The edge's Prometheus metrics (`GET /metrics` on its HTTP API, and on the optional metrics
 * listener; docs/monitoring.md "Metrics, dashboards and the API document"). One prom-client
 * Registry per agent, never the global one: the simulator and the tests run many agents in one
 * process. Counters and the latency histogram are fed per frame; gauges are read from the agent's
 * health at scrape time, so alarms other parts add to health appear without a change here.
 *
 * Every series carries the labels `edge` and `line` (constant for an agent, so they cost no
 * cardinality; they let one dashboard select lines across edges). Other labels are bounded by the
 * config or the code: camera (config `cameras`), verdict, error code, alarm name, model.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { EDGE_ALARMS } from '../protocol/monitoring.js';
import type { Verdict } from '../protocol/messages.js';
import type { Health } from './http-server.js';

export interface EdgePrometheusOptions {
  edgeId: string;
  line: string;
  /** The agent's health (GET /health): read at each scrape. */
  health(): Health;
}

export interface EdgePrometheus {
  readonly registry: Registry;
  /** One answered frame (stored or not): its camera, verdict and latency (ms, queue wait included). */
  frame(camera: string, verdict: Verdict, latencyMs: number): void;
  /** One input refused before or during inspection, by error code. */
  rejected(code: string): void;
  /** The exposition text and its content type. */
  scrape(): Promise<{ contentType: string; text: string }>;
}

/** Seconds: a light model answers in a few ms, a heavy one or a full queue in hundreds. */
export const INSPECT_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** Creates the agent's registry and its metrics. */
export function createEdgePrometheus(opts: EdgePrometheusOptions): EdgePrometheus {
  const registry = new Registry();
  registry.setDefaultLabels({ edge: opts.edgeId, line: opts.line });
  const registers = [registry];
  const { health } = opts;
  const gauge = (name: string, help: string, read: (h: Health) => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read(health()));
      },
    });

  const frames = new Counter({ name: 'osprey_edge_frames_total', help: 'Frames answered with a verdict, by camera and verdict.', labelNames: ['camera', 'verdict'] as const, registers });
  const frameChildren = new Map<string, { inc(): void }>();
  const rejected = new Counter({ name: 'osprey_edge_inputs_rejected_total', help: 'Inputs refused (bad image, full queue, model error, …) by error code.', labelNames: ['code'] as const, registers });
  const latency = new Histogram({
    name: 'osprey_edge_inspect_duration_seconds',
    help: "Seconds from a frame's arrival to its verdict, queue wait included.",
    buckets: INSPECT_BUCKETS,
    registers,
  });
  gauge('osprey_edge_queue_depth', 'Frames queued or being inspected.', (h) => h.queue.depth);
  gauge('osprey_edge_queue_running', 'Frames being inspected now.', (h) => h.queue.running);
  gauge('osprey_edge_queue_max', 'Frames queued or running before new ones are refused with 503 (config queue.maxDepth).', (h) => h.queue.max);
  gauge('osprey_edge_results_pending', 'Results stored and not yet acked by the fleet: the sync backlog.', (h) => h.pendingResults);
  gauge('osprey_edge_results_last_seq', 'Highest result seq stored.', (h) => h.lastSeq);
  gauge('osprey_edge_results_acked_seq', 'Highest result seq the fleet acked.', (h) => h.ackedSeq);
  gauge('osprey_edge_fleet_connected', '1 while the MQTT link to the fleet is up (0 also when no fleet is configured).', (h) => (h.fleet.connected ? 1 : 0));
  gauge('osprey_edge_images_pending', 'Kept images not yet uploaded to the fleet.', (h) => h.storage?.imagesPending ?? 0);
  gauge('osprey_edge_uptime_seconds', 'Seconds since the agent started.', (h) => h.uptimeS);
  new Gauge({
    name: 'osprey_edge_model_info',
    help: 'Always 1: the active model (name@version) and its name and version.',
    labelNames: ['model', 'name', 'version'] as const,
    registers,
    collect() {
      const model = health().model;
      const at = model.lastIndexOf('@');
      this.reset();
      this.set({ model, name: at > 0 ? model.slice(0, at) : model, version: at > 0 ? model.slice(at + 1) : '' }, 1);
    },
  });
  new Gauge({
    name: 'osprey_edge_alarm_active',
    help: 'Alarms by name: 1 while in force, 0 for the known ones that are not (GET /health alarms).',
    labelNames: ['alarm'] as const,
    registers,
    collect() {
      const raised = new Set(health().alarms ?? []);
      this.reset();
      for (const alarm of EDGE_ALARMS) this.set({ alarm }, 0);
      // Names outside EDGE_ALARMS (a part added later) appear while raised.
      for (const alarm of raised) this.set({ alarm }, 1);
    },
  });

  return {
    registry,
    frame(camera, verdict, latencyMs) {
      // The labelled child is looked up once per camera and verdict, not hashed on every frame.
      const key = `${camera}\u0000${verdict}`;
      let child = frameChildren.get(key);
      if (!child) frameChildren.set(key, (child = frames.labels({ camera, verdict })));
      child.inc();
      latency.observe(latencyMs / 1000);
    },
    rejected: (code) => rejected.inc({ code }),
    async scrape() {
      return { contentType: registry.contentType, text: await registry.metrics() };
    },
  };
}
