/**
 * Many edge agents in one process: each is the real `createEdgeAgent` (result store in SQLite,
 * pipeline with onnxruntime, fleet link over its own MQTT connection, desired state, artifact
 * downloads, activation, probation and rollback), with no HTTP server; frames are synthetic part
 * images handed to `agent.inspect()` at a steady rate. Nothing of the protocol is re-implemented.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { parseEdgeConfig } from '../edge-agent/config.js';
import { createEdgeAgent, type EdgeAgent } from '../edge-agent/edge-agent.js';
import { createOptimizedModelCache } from '../models/optimized-model.js';
import { generatePartImage, SYNTHETIC_DEFECTS } from '../models/synthetic.js';
import { isOspreyError } from '../protocol/errors.js';
import type { TrustedKeyEntry } from '../models/trusted-keys.js';

export interface SimEdgeSpec {
  id: string;
  line: string;
}

export interface SimEdgesOptions {
  edges: SimEdgeSpec[];
  /** Each edge keeps its results, downloads and state under `dataDir/<edge id>`. */
  dataDir: string;
  /** The edges' local model package (what they run until desired state names another). */
  modelDir: string;
  mqttUrl: string;
  /** Fleet HTTP base (artifact downloads with relative URLs, image uploads). */
  httpUrl?: string;
  /** The fleet's signing key (PEM); without it signed artifacts are refused. */
  publicKey?: string;
  /** Further trusted publisher keys (fleet.trustedKeys). */
  trustedKeys?: TrustedKeyEntry[];
  /** Where edge X's credential is (`<credentialDir>/<X>.credential`, from enrollment); absent: none. */
  credentialDir?: string;
  /** Frames per second per edge; 0: none. */
  fps: number;
  /** onnxruntime intra-op threads per model (default 1: hundreds of sessions share the cores). */
  threads?: number;
  telemetryIntervalMs?: number;
  /** Keep and upload defect images as a real edge does (default true). */
  images?: boolean;
  /**
   * Result store fsync policy (default 'normal'): one disk under hundreds of agents would
   * otherwise measure the disk's fsync rate rather than the fleet. 'full' is what edges ship with.
   */
  durability?: 'full' | 'normal';
  /** Agents started at once (default 8). */
  startConcurrency?: number;
  logger: Logger;
}

/** The credential file of a simulated edge. */
export function simCredentialFile(credentialDir: string, edgeId: string): string {
  return join(credentialDir, `${edgeId}.credential`);
}

export interface SimEdgesStats {
  edges: number;
  started: number;
  connected: number;
  /** Frames handed to the edges, stored results, refused or failed frames. */
  frames: number;
  stored: number;
  failed: number;
  failures: Record<string, number>;
  /** Results stored but not yet acknowledged by the fleet, over all edges. */
  pending: number;
  acked: number;
  /** Edges per active model (`name@version`), and per shadow model. */
  active: Record<string, number>;
  shadow: Record<string, number>;
  /** Edges downloading an artifact now; edges that refused one. */
  downloading: number;
  refusing: number;
  /** Frame latency (submit → stored) over the frames stored since the previous stats() call. */
  latencyMs: { count: number; p50: number; p99: number };
  rssBytes: number;
  cpuUs: number;
}

export interface SimEdges {
  stats(): SimEdgesStats;
  setFps(fps: number): void;
  /**
   * Stops the frames and waits until every frame in flight is stored and every stored result is
   * acknowledged by the fleet; false when `timeoutMs` passed first.
   */
  drain(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

const TICK_MS = 20;

/** Sixteen part images, one in eight defective; 128×128 suits the demo model and the simulated classifier. */
async function framePool(): Promise<Buffer[]> {
  return Promise.all(
    Array.from({ length: 16 }, (_, i) =>
      generatePartImage({ seed: 50_000 + i, defect: i % 8 === 7 ? SYNTHETIC_DEFECTS[(i >> 3) % SYNTHETIC_DEFECTS.length]! : null, width: 128, height: 128 }),
    ),
  );
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const refId = (ref: { name: string; version: string } | null | undefined) => (ref ? `${ref.name}@${ref.version}` : null);

/** Starts the edges (a bounded number at a time) and then the frames; resolves once all run. */
export async function startSimEdges(opts: SimEdgesOptions): Promise<SimEdges> {
  const pool = await framePool();
  const agents: EdgeAgent[] = [];
  const started: EdgeAgent[] = [];
  let frames = 0;
  let stored = 0;
  let failed = 0;
  const failures: Record<string, number> = {};
  let latencies: number[] = [];
  let closing: Promise<void> | undefined;
  // One cache of optimised graphs for all the edges of this process: a real edge optimises each
  // version once on its own PC; here one child process does it for all of them.
  const optimizedModels = createOptimizedModelCache({ dir: join(opts.dataDir, 'onnxruntime'), logger: opts.logger.child({ component: 'models' }) });

  for (const edge of opts.edges) {
    const dir = join(opts.dataDir, edge.id);
    await mkdir(dir, { recursive: true });
    const config = parseEdgeConfig(
      {
        edgeId: edge.id,
        line: edge.line,
        cameras: ['cam1'],
        dataDir: dir,
        fleet: {
          mqttUrl: opts.mqttUrl,
          ...(opts.httpUrl ? { httpUrl: opts.httpUrl } : {}),
          ...(opts.publicKey ? { publicKey: opts.publicKey } : {}),
          ...(opts.trustedKeys ? { trustedKeys: opts.trustedKeys } : {}),
          ...(opts.credentialDir ? { credentialFile: simCredentialFile(opts.credentialDir, edge.id) } : {}),
        },
        model: { dir: opts.modelDir, threads: opts.threads ?? 1 },
        // One frame at a time per edge, as one camera station; a short queue absorbs jitter.
        queue: { concurrency: 1, maxDepth: 16 },
        telemetry: { intervalMs: opts.telemetryIntervalMs ?? 10_000 },
        ...(opts.images === false ? { images: { maxBytes: 0, upload: false } } : {}),
      },
      `simulated ${edge.id}`,
    );
    agents.push(
      createEdgeAgent(config, {
        logger: opts.logger.child({ edgeId: edge.id }),
        listen: false,
        finalSyncMs: 500,
        durability: opts.durability ?? 'normal',
        optimizedModels,
      }),
    );
  }

  // Bounded start: hundreds of agents opening SQLite, loading a model and connecting at once
  // would only queue behind each other, and a broker sees a realistic trickle.
  const queue = [...agents];
  const startOne = async (): Promise<void> => {
    for (let a = queue.shift(); a; a = queue.shift()) {
      if (closing) return;
      await a.start();
      started.push(a);
    }
  };
  try {
    await Promise.all(Array.from({ length: Math.max(1, opts.startConcurrency ?? 8) }, startOne));
  } catch (err) {
    await Promise.all(agents.map((a) => a.close()));
    throw err;
  }

  // One timer for all edges: frames owed since the start are handed out round-robin, so the
  // total rate stays exact whatever the timer's jitter; at most one second of backlog is kept.
  let fps = opts.fps;
  let t0 = performance.now();
  let accounted = 0;
  let next = 0;
  const tick = setInterval(() => {
    if (closing || fps <= 0) return;
    const rate = fps * started.length;
    const owed = Math.floor(((performance.now() - t0) / 1000) * rate) - accounted;
    const due = Math.min(owed, Math.ceil(rate));
    accounted += owed - due;
    for (let i = 0; i < due; i++) {
      const agent = started[next % started.length]!;
      const image = pool[(next * 7 + (next / started.length) | 0) % pool.length]!;
      next++;
      frames++;
      accounted++;
      const at = performance.now();
      agent
        .inspect(image, { camera: 'cam1', source: 'simulated', frame: `${agent.id}-${String(next).padStart(9, '0')}.jpg` })
        .then(() => {
          stored++;
          latencies.push(performance.now() - at);
        })
        .catch((err: unknown) => {
          failed++;
          const code = isOspreyError(err) ? err.code : 'OSP_ERR_INTERNAL';
          failures[code] = (failures[code] ?? 0) + 1;
        });
    }
  }, TICK_MS);

  return {
    stats() {
      const active: Record<string, number> = {};
      const shadow: Record<string, number> = {};
      let connected = 0;
      let pending = 0;
      let acked = 0;
      let downloading = 0;
      let refusing = 0;
      for (const a of started) {
        const h = a.health();
        if (h.fleet.connected) connected++;
        pending += h.pendingResults;
        acked += h.ackedSeq;
        const m = a.models;
        if (!m) continue;
        const state = m.state();
        const act = refId(state.active)!;
        active[act] = (active[act] ?? 0) + 1;
        const sh = refId(state.shadow);
        if (sh) shadow[sh] = (shadow[sh] ?? 0) + 1;
        if (m.status().downloading) downloading++;
        if (state.errors.length > 0) refusing++;
      }
      const sorted = latencies.sort((x, y) => x - y);
      latencies = [];
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      return {
        edges: agents.length,
        started: started.length,
        connected,
        frames,
        stored,
        failed,
        failures: { ...failures },
        pending,
        acked,
        active,
        shadow,
        downloading,
        refusing,
        latencyMs: { count: sorted.length, p50: percentile(sorted, 50), p99: percentile(sorted, 99) },
        rssBytes: mem.rss,
        cpuUs: cpu.user + cpu.system,
      };
    },
    async drain(timeoutMs) {
      fps = 0;
      const end = performance.now() + timeoutMs;
      const settled = () => frames === stored + failed && started.every((a) => a.health().pendingResults === 0);
      while (!settled()) {
        if (closing || performance.now() > end) return false;
        await new Promise((r) => setTimeout(r, 50));
      }
      return true;
    },
    setFps(value) {
      fps = value;
      t0 = performance.now();
      accounted = 0;
    },
    close() {
      closing ??= (async () => {
        clearInterval(tick);
        await Promise.all(agents.map((a) => a.close()));
      })();
      return closing;
    },
  };
}
