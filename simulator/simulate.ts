/**
 * A simulated fleet: N real edge agents spread over a few processes (sim-worker.ts), talking to a
 * fleet manager over MQTT and HTTP like any edge — the user's own fleet manager (load testing),
 * or one started here on embedded defaults. Used by `osprey simulate`, the rollout benchmark and
 * the tests.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { destination, pino, type Level, type Logger } from 'pino';
import { request } from 'undici';
import { createFleetManager, type FleetManager } from '../fleet-manager/fleet-manager.js';
import { openSqliteIdentityStore } from '../fleet-manager/identity-store.js';
import { ensureDemoModel } from '../models/demo-model.js';
import { OspreyError, oneLine } from '../protocol/errors.js';
import type { SimEdgeSpec, SimEdgesStats } from './sim-edges.js';
import type { SimWorkerSpec } from './sim-worker.js';
import type { TrustedKeyEntry } from '../models/trusted-keys.js';

export interface SimulateOptions {
  edges: number;
  /** Processes the edges are spread over (default: one per core, at most one per edge). */
  processes?: number;
  /** Lines the edges are spread over, in contiguous blocks (default: one per 50 edges). */
  lines?: number;
  /** Edge ids are `<edgePrefix>-001`…, lines `<linePrefix>-1`… (defaults `sim`, `sim-line`). */
  edgePrefix?: string;
  linePrefix?: string;
  /** The fleet manager to load; absent: one is started in this process on free ports. */
  fleet?: { httpUrl: string; mqttUrl: string };
  /** Publisher keys the embedded fleet accepts uploads signed by (registry.publisherKeys) and the edges trust (fleet.trustedKeys). */
  publisherKeys?: TrustedKeyEntry[];
  /**
   * With `fleet`: the edges' credentials, `<dir>/<edge id>.credential` (from `osprey edge enroll`).
   * Without `fleet` every edge is enrolled on the embedded fleet and its credential kept under dataDir.
   */
  credentialDir?: string;
  /** Frames per second per edge (0: none). */
  fps: number;
  /** Edge data (and the embedded fleet's) lives here. */
  dataDir: string;
  /** The edges' local model package (default: the built-in demo model, built under dataDir/models). */
  modelDir?: string;
  threads?: number;
  telemetryIntervalMs?: number;
  images?: boolean;
  /** Result store fsync policy of the simulated edges (default 'normal'; see sim-edges.ts). */
  durability?: 'full' | 'normal';
  /** Log level of the simulated edges (stderr; default warn). */
  logLevel?: Level | 'silent';
  /** Logger of the embedded fleet manager (default: pino at logLevel on stderr). */
  logger?: Logger;
  /** Longest wait for every process to have started its edges (default 10 min). */
  startTimeoutMs?: number;
}

/** Every process's figures summed; histograms merged. */
export interface SimTotals extends Omit<SimEdgesStats, 'latencyMs'> {
  processes: number;
  /** Frame latency: the mean of the processes' medians and the worst process's p99. */
  latencyMs: { count: number; p50: number; p99: number };
  /** RSS per process (bytes). */
  processRss: number[];
}

export interface Simulation {
  readonly fleet: { httpUrl: string; mqttUrl: string; embedded: boolean };
  readonly edges: readonly SimEdgeSpec[];
  /** Asks every process for its figures. */
  stats(): Promise<SimTotals>;
  /** Changes the frame rate of every edge. */
  setFps(fps: number): void;
  /** Stops the frames and waits for every result to be stored and acked; false on timeout. */
  drain(timeoutMs: number): Promise<boolean>;
  /** Closes the edges (and the embedded fleet). Idempotent. */
  close(): Promise<void>;
}

/** Ids and lines of `count` edges in `lines` contiguous blocks. */
export function simEdgeSpecs(count: number, lines: number, edgePrefix = 'sim', linePrefix = 'sim-line'): SimEdgeSpec[] {
  const width = Math.max(3, String(count).length);
  return Array.from({ length: count }, (_, i) => ({
    id: `${edgePrefix}-${String(i + 1).padStart(width, '0')}`,
    line: `${linePrefix}-${Math.floor((i * lines) / count) + 1}`,
  }));
}

interface Worker {
  child: ChildProcess;
  exited: Promise<unknown>;
  next<T>(type: string, timeoutMs: number): Promise<T>;
  /** Sends when the process is still there (next() then reports its exit). */
  send(msg: object): void;
}

function startWorker(spec: SimWorkerSpec, timeoutMs: number): Promise<Worker> {
  const child = fork(fileURLToPath(new URL('./sim-worker.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = once(child, 'exit');
  // A send to a process that has exited emits 'error'; the exit itself is reported by next().
  child.on('error', () => undefined);
  const next = <T>(type: string, ms: number) =>
    new Promise<T>((resolve, reject) => {
      const onMessage = (msg: { type?: string; message?: string }) => {
        if (msg.type === type) done(() => resolve(msg as T));
        else if (msg.type === 'error') done(() => reject(new OspreyError('OSP_ERR_INTERNAL', `simulated edges: ${msg.message ?? 'failed'}`)));
      };
      const onExit = () => done(() => reject(new OspreyError('OSP_ERR_INTERNAL', `a simulator process exited (code ${child.exitCode}) before "${type}"`)));
      const timer = setTimeout(() => done(() => reject(new OspreyError('OSP_ERR_INTERNAL', `a simulator process sent no "${type}" in ${ms} ms`))), ms);
      const done = (settle: () => void) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        settle();
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
    });
  const ready = next('ready', timeoutMs);
  child.send({ type: 'start', spec });
  return ready.then(
    () => ({ child, exited, next, send: (msg: object) => child.connected && child.send(msg) }),
    async (err: unknown) => {
      child.kill('SIGKILL');
      await exited;
      throw err;
    },
  );
}

async function fetchPublicKey(httpUrl: string): Promise<string> {
  try {
    const res = await request(`${httpUrl}/api/fleet/public-key`);
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    return text;
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `cannot read the fleet's public key from ${httpUrl}/api/fleet/public-key: ${oneLine(err)}`, { cause: err });
  }
}

/**
 * Enrolls every simulated edge on the embedded fleet's database, as `osprey edge enroll` would
 * (a one-time token redeemed for the credential), and writes each credential 0600. Returns the folder.
 */
export async function enrollSimEdges(fleetDataDir: string, credentialDir: string, edges: readonly SimEdgeSpec[]): Promise<string> {
  await mkdir(credentialDir, { recursive: true, mode: 0o700 });
  const identity = openSqliteIdentityStore({ file: join(fleetDataDir, 'fleet.db'), logger: pino({ level: 'silent' }) });
  try {
    for (const e of edges) {
      const { token } = await identity.createEnrollmentToken({ edgeId: e.id, line: e.line, ttlMs: 60_000, createdBy: 'osprey simulate' });
      const { credential } = await identity.redeemEnrollmentToken(token, e.id);
      // The name sim-edges.ts simCredentialFile() reads (not imported: it would load the agent here).
      const file = join(credentialDir, `${e.id}.credential`);
      await writeFile(file, `${credential}\n`, { mode: 0o600 });
      await chmod(file, 0o600);
    }
  } finally {
    await identity.close();
  }
  return credentialDir;
}

/** Starts the fleet (if none was given) and every simulated edge; resolves once all run. */
export async function startSimulation(opts: SimulateOptions): Promise<Simulation> {
  const edges = simEdgeSpecs(opts.edges, opts.lines ?? Math.max(1, Math.ceil(opts.edges / 50)), opts.edgePrefix, opts.linePrefix);
  const processes = Math.max(1, Math.min(opts.processes ?? os.availableParallelism(), edges.length));
  await mkdir(opts.dataDir, { recursive: true });
  const modelDir = opts.modelDir ?? (await ensureDemoModel(join(opts.dataDir, 'models')));

  let fleetManager: FleetManager | undefined;
  let fleet = opts.fleet;
  if (!fleet) {
    fleetManager = createFleetManager({
      dataDir: join(opts.dataDir, 'fleet'),
      http: { host: '127.0.0.1', port: 0 },
      mqtt: { host: '127.0.0.1', port: 0 },
      logger: opts.logger ?? pino({ level: opts.logLevel ?? 'warn' }, destination(2)),
      ...(opts.publisherKeys ? { registry: { publisherKeys: opts.publisherKeys } } : {}),
    });
    fleet = await fleetManager.start();
  }
  const credentialDir = fleetManager ? await enrollSimEdges(join(opts.dataDir, 'fleet'), join(opts.dataDir, 'credentials'), edges) : opts.credentialDir;
  const workers: Worker[] = [];
  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      await Promise.all(
        workers.map(async (w) => {
          if (w.child.exitCode === null && w.child.signalCode === null) {
            w.send({ type: 'close' });
            const timer = setTimeout(() => w.child.kill('SIGKILL'), 60_000);
            await w.exited;
            clearTimeout(timer);
          }
        }),
      );
      await fleetManager?.close();
    })());

  try {
    const publicKey = await fetchPublicKey(fleet.httpUrl);
    const per = Math.ceil(edges.length / processes);
    const started = await Promise.allSettled(
      Array.from({ length: processes }, (_, p) =>
        startWorker(
          {
            edges: edges.slice(p * per, (p + 1) * per),
            dataDir: join(opts.dataDir, 'edges'),
            modelDir,
            mqttUrl: fleet!.mqttUrl,
            httpUrl: fleet!.httpUrl,
            publicKey,
            ...(opts.publisherKeys ? { trustedKeys: opts.publisherKeys } : {}),
            ...(credentialDir !== undefined ? { credentialDir } : {}),
            fps: opts.fps,
            ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
            ...(opts.telemetryIntervalMs !== undefined ? { telemetryIntervalMs: opts.telemetryIntervalMs } : {}),
            ...(opts.images !== undefined ? { images: opts.images } : {}),
            ...(opts.durability ? { durability: opts.durability } : {}),
            logLevel: opts.logLevel ?? 'warn',
          },
          opts.startTimeoutMs ?? 600_000,
        ),
      ),
    );
    for (const s of started) if (s.status === 'fulfilled') workers.push(s.value);
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) throw failed.reason;
  } catch (err) {
    await close();
    throw err;
  }

  return {
    fleet: { ...fleet, embedded: fleetManager !== undefined },
    edges,
    async stats() {
      const all = await Promise.all(
        workers.map((w) => {
          const p = w.next<{ stats: SimEdgesStats }>('stats', 30_000);
          w.send({ type: 'stats' });
          return p.then((m) => m.stats);
        }),
      );
      return sumStats(all);
    },
    setFps(fps) {
      for (const w of workers) w.send({ type: 'fps', fps });
    },
    async drain(timeoutMs) {
      const all = await Promise.all(
        workers.map((w) => {
          const p = w.next<{ drained: boolean }>('drained', timeoutMs + 30_000);
          w.send({ type: 'drain', timeoutMs });
          return p.then((m) => m.drained);
        }),
      );
      return all.every(Boolean);
    },
    close,
  };
}

function merge(into: Record<string, number>, from: Record<string, number>): void {
  for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
}

/** Sums the figures of several processes. */
export function sumStats(all: SimEdgesStats[]): SimTotals {
  const total: SimTotals = {
    processes: all.length,
    edges: 0,
    started: 0,
    connected: 0,
    frames: 0,
    stored: 0,
    failed: 0,
    failures: {},
    pending: 0,
    acked: 0,
    active: {},
    shadow: {},
    downloading: 0,
    refusing: 0,
    latencyMs: { count: 0, p50: 0, p99: 0 },
    rssBytes: 0,
    cpuUs: 0,
    processRss: [],
  };
  let p50Sum = 0;
  for (const s of all) {
    for (const k of ['edges', 'started', 'connected', 'frames', 'stored', 'failed', 'pending', 'acked', 'downloading', 'refusing', 'rssBytes', 'cpuUs'] as const) {
      total[k] += s[k];
    }
    merge(total.failures, s.failures);
    merge(total.active, s.active);
    merge(total.shadow, s.shadow);
    total.latencyMs.count += s.latencyMs.count;
    p50Sum += s.latencyMs.p50 * s.latencyMs.count;
    total.latencyMs.p99 = Math.max(total.latencyMs.p99, s.latencyMs.p99);
    total.processRss.push(s.rssBytes);
  }
  if (total.latencyMs.count > 0) total.latencyMs.p50 = p50Sum / total.latencyMs.count;
  return total;
}
