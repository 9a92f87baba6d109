/**
 * `osprey simulate`: many real edge agents against a fleet manager (yours, or one started here),
 * with a status line every few seconds and a summary at the end.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino, { type Level } from 'pino';
import { OspreyError } from '../protocol/errors.js';
import { startSimulation, type SimTotals } from '../simulator/simulate.js';
import { intOption, parse } from './args.js';
import { onShutdownSignal } from './signals.js';

export const simulateHelp = `Usage: osprey simulate --edges N [options]

Runs N simulated edges: the real edge agent code (SQLite results, onnxruntime, MQTT sync,
desired state, model downloads, activation, rollback) without cameras or HTTP, fed synthetic
part images. They connect to a fleet manager — yours, to load-test it (--fleet and --mqtt), or
one started here on free ports. A status line every few seconds, a summary at the end.

Options:
  --edges N        simulated edges (1 to 10000; required)
  --fleet URL      the fleet manager's HTTP base, e.g. http://fleet:8080 (default: start one here)
  --mqtt URL       its MQTT broker, e.g. mqtt://fleet:1883 (required with --fleet)
  --credentials D  with --fleet: edge X's credential is D/X.credential (osprey edge enroll);
                   a fleet started here enrolls its simulated edges itself
  --lines N        lines the edges are spread over (default: one per 50 edges)
  --fps X          frames per second per edge (default 1; 0: no frames)
  --processes N    processes the edges run in (default: one per core)
  --duration S     stop after S seconds (default: at Ctrl-C)
  --model DIR      the edges' initial model package (default: the built-in demo model)
  --data DIR       edge data directory (default: a temporary one, removed at the end)
  --prefix P       edge ids P-001, P-002, ... and lines P-line-1, ... (default: sim)
  --threads N      onnxruntime threads per model (default 1)
  --durable        fsync every result as real edges do (default off: one disk under
                   hundreds of simulated edges would measure the disk, not the fleet)
  --interval S     seconds between status lines (default 5)
  --json           print the summary as one JSON object on stdout
  --log-level L    log level of the edges' logs on stderr (default warn)
  -h, --help       this text`;

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function numberOption(name: string, value: string | undefined, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new OspreyError('OSP_ERR_USAGE', `--${name} must be a number from ${min} to ${max}, got "${value}"`);
  }
  return n;
}

function urlOption(name: string, value: string, protocols: string[]): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new OspreyError('OSP_ERR_USAGE', `--${name} must be a URL, got "${value}"`);
  }
  if (!protocols.includes(url.protocol)) {
    throw new OspreyError('OSP_ERR_USAGE', `--${name} must be a ${protocols.map((p) => p.slice(0, -1)).join('/')} URL, got "${value}"`);
  }
  return value.replace(/\/+$/, '');
}

const mb = (bytes: number) => `${Math.round(bytes / 1048576)} MB`;
const versions = (h: Record<string, number>) =>
  Object.entries(h)
    .sort((a, b) => b[1] - a[1])
    .map(([id, n]) => `${id} ×${n}`)
    .join(', ') || 'none';

function statusLine(t: SimTotals, elapsedS: number, rate: number, cpuPercent: number): string {
  const fails = Object.entries(t.failures)
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  return [
    `${Math.round(elapsedS)} s`,
    `edges ${t.connected}/${t.edges} connected`,
    `frames ${t.frames} (${rate.toFixed(0)}/s), stored ${t.stored}, acked ${t.acked}, pending ${t.pending}, failed ${t.failed}${fails ? ` (${fails})` : ''}`,
    `latency p50 ${t.latencyMs.p50.toFixed(1)} ms, p99 ${t.latencyMs.p99.toFixed(1)} ms`,
    `active ${versions(t.active)}${Object.keys(t.shadow).length ? `; shadow ${versions(t.shadow)}` : ''}${t.downloading ? `; downloading ${t.downloading}` : ''}${t.refusing ? `; refusing ${t.refusing}` : ''}`,
    `rss ${mb(t.rssBytes)} in ${t.processes} processes, cpu ${cpuPercent.toFixed(0)} %`,
  ].join(' | ');
}

export async function simulateCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    edges: { type: 'string' },
    fleet: { type: 'string' },
    mqtt: { type: 'string' },
    credentials: { type: 'string' },
    lines: { type: 'string' },
    fps: { type: 'string' },
    processes: { type: 'string' },
    duration: { type: 'string' },
    model: { type: 'string' },
    data: { type: 'string' },
    prefix: { type: 'string' },
    threads: { type: 'string' },
    interval: { type: 'string' },
    json: { type: 'boolean' },
    durable: { type: 'boolean' },
    'log-level': { type: 'string' },
  });
  if (values.help) {
    console.log(simulateHelp);
    return 0;
  }
  if (values.edges === undefined) throw new OspreyError('OSP_ERR_USAGE', '--edges is required; try "osprey simulate --help"');
  const edges = intOption('edges', values.edges, 0, 1, 10_000);
  if ((values.fleet === undefined) !== (values.mqtt === undefined)) {
    throw new OspreyError('OSP_ERR_USAGE', '--fleet and --mqtt go together (the HTTP base and the broker of one fleet manager)');
  }
  const fleet =
    values.fleet !== undefined && values.mqtt !== undefined
      ? { httpUrl: urlOption('fleet', values.fleet, ['http:', 'https:']), mqttUrl: urlOption('mqtt', values.mqtt, ['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ws:', 'wss:']) }
      : undefined;
  if (values.credentials !== undefined && !fleet) throw new OspreyError('OSP_ERR_USAGE', '--credentials goes with --fleet (a fleet started here enrolls its edges itself)');
  const lines = intOption('lines', values.lines, Math.max(1, Math.ceil(edges / 50)), 1, edges);
  const fps = numberOption('fps', values.fps, 1, 0, 1000);
  const processes = intOption('processes', values.processes, Math.min(edges, os.availableParallelism()), 1, Math.min(edges, 256));
  const duration = values.duration === undefined ? undefined : numberOption('duration', values.duration, 0, 0.1, 30 * 86_400);
  const threads = intOption('threads', values.threads, 1, 1, 256);
  const intervalS = numberOption('interval', values.interval, 5, 0.2, 3600);
  const prefix = values.prefix ?? 'sim';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$/.test(prefix)) {
    throw new OspreyError('OSP_ERR_USAGE', `--prefix must be letters, digits, "_", "." or "-" (at most 41), got "${prefix}"`);
  }
  const logLevel = (values['log-level'] ?? 'warn') as Level | 'silent';
  if (!(LEVELS as readonly string[]).includes(logLevel)) throw new OspreyError('OSP_ERR_USAGE', `--log-level must be one of ${LEVELS.join(', ')}`);
  const tempData = values.data === undefined;
  const dataDir = tempData ? await mkdtemp(join(os.tmpdir(), 'osprey-simulate-')) : resolve(values.data!);
  // Progress goes to stderr when stdout carries the JSON summary.
  const say = (line: string) => (values.json ? console.error(line) : console.log(line));

  const t0 = performance.now();
  say(`osprey simulate: starting ${edges} edges on ${lines} line(s) in ${processes} process(es)${fleet ? ` against ${fleet.httpUrl}` : ''}`);
  const sim = await startSimulation({
    edges,
    lines,
    processes,
    fps,
    threads,
    dataDir,
    edgePrefix: prefix,
    linePrefix: `${prefix}-line`,
    ...(fleet ? { fleet } : {}),
    ...(values.credentials !== undefined ? { credentialDir: resolve(values.credentials) } : {}),
    ...(values.model ? { modelDir: resolve(values.model) } : {}),
    durability: values.durable ? 'full' : 'normal',
    logLevel,
    logger: pino({ level: logLevel }, pino.destination(2)),
  }).catch(async (err: unknown) => {
    if (tempData) await rm(dataDir, { recursive: true, force: true });
    throw err;
  });
  let last = { at: performance.now(), frames: 0, cpuUs: 0 };
  let latest: SimTotals | undefined;
  try {
    const startedS = (performance.now() - t0) / 1000;
    say(`osprey simulate: ${edges} edges running after ${startedS.toFixed(1)} s; fleet ${sim.fleet.httpUrl}${sim.fleet.embedded ? ' (started here)' : ''}`);
    const report = async () => {
      const t = await sim.stats();
      const now = performance.now();
      const dt = Math.max(1e-3, (now - last.at) / 1000);
      say(`osprey simulate: ${statusLine(t, (now - t0) / 1000, (t.frames - last.frames) / dt, ((t.cpuUs - last.cpuUs) / 1e6 / dt) * 100)}`);
      last = { at: now, frames: t.frames, cpuUs: t.cpuUs };
      latest = t;
    };
    const timer = setInterval(() => void report().catch(() => undefined), intervalS * 1000);
    const stop = await Promise.race([
      onShutdownSignal().then((s) => `${s}`),
      ...(duration !== undefined ? [new Promise<string>((r) => setTimeout(() => r('duration reached'), duration * 1000).unref())] : []),
    ]);
    clearInterval(timer);
    say(`osprey simulate: stopping (${stop}); waiting up to 10 s for the fleet to acknowledge every result`);
    const drained = await sim.drain(10_000).catch(() => false);
    latest = (await sim.stats().catch(() => undefined)) ?? latest;
    if (!drained) say('osprey simulate: not every result was acknowledged in time (see "pending" below)');
  } finally {
    await sim.close();
    if (tempData) await rm(dataDir, { recursive: true, force: true });
  }
  const t = latest;
  if (!t) throw new OspreyError('OSP_ERR_INTERNAL', 'the simulated edges sent no figures');
  const elapsedS = (performance.now() - t0) / 1000;
  const summary = {
    edges: t.edges,
    processes: t.processes,
    fleet: sim.fleet.httpUrl,
    seconds: Math.round(elapsedS * 10) / 10,
    frames: t.frames,
    stored: t.stored,
    acked: t.acked,
    pending: t.pending,
    failed: t.failed,
    failures: t.failures,
    active: t.active,
    shadow: t.shadow,
    rssBytes: t.rssBytes,
    cpuSeconds: Math.round(t.cpuUs / 1e5) / 10,
  };
  if (values.json) console.log(JSON.stringify(summary));
  else {
    console.log(`osprey simulate: ${summary.frames} frames, ${summary.stored} stored, ${summary.acked} acked by the fleet, ${summary.pending} pending, ${summary.failed} failed`);
    console.log(`osprey simulate: active models at the end: ${versions(summary.active)}`);
  }
  return 0;
}
