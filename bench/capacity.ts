/**
 * Capacity: how many edges at 10 frames/s one fleet manager holds on a 2-core machine, and what
 * limits it first — a projection from the fleet-ingest figures of the same run, with its basis.
 *
 * The basis is measured, not modelled: fleet-ingest runs 1000 simulated edges at 10 results/s
 * each (real edge sync code, real broker, SQLite with synchronous=FULL) and records the fleet
 * manager's CPU, ack latency and batch sizes. The projection scales that linearly to a full core,
 * which is conservative: an edge keeps at most two batches in flight, so a busier fleet answers
 * later and receives bigger batches, and a result costs less in a bigger batch (the backlog phase
 * gives the floor, every batch full).
 */
import { round } from './stats.js';
import type { BenchRun, BenchSection, Figure, Table } from './types.js';

const FPS = 10;
/** Share of the core kept free for catch-up after outages, the HTTP API and bursts. */
const HEADROOM = 0.3;

/** Model rollouts at this scale: the bytes every edge downloads go through the fleet's network link. */
function rolloutNote(r: Record<string, number> | undefined): string[] {
  if (!r || !r.edges || !r.packageBytes) return [];
  const gb = (r.edges * r.packageBytes) / 1e9;
  return [
    `Rollouts: every edge downloads the package from the fleet manager, so a plant-wide rollout moves edges × package ` +
      `size through its network link — ${round(gb)} GB for the ${r.edges}-edge, ${round(r.packageBytes / 1048576)} MiB ` +
      `rollout measured here (${round(r.reportingMs / 1000)} s from promotion to all reporting, loopback), at least ` +
      `${round((gb * 8) / 1)} s on a 1 Gbit/s link. For larger plants or models, stage by line (each stage moves only its ` +
      'edges) or serve `/api/artifacts/` through a cache near the lines (the fleet\'s `publicUrl` setting names the base edges download from; artifacts are immutable and sha256-checked, so any HTTP cache is safe).',
  ];
}

/** Runs the projection (see the file comment). */
export const run: BenchRun = async (opts) => {
  const ingest = opts.previous.get('fleet-ingest')?.data;
  const section: BenchSection = {
    id: 'capacity',
    title: 'Capacity: edges per fleet manager at 10 frames/s',
    figures: [],
  };
  if (!ingest || ingest['scale.cpuPercent'] === undefined || ingest.backlogCpuUsPerResult === undefined) {
    section.notes = ['needs the fleet-ingest benchmark in the same run (`npm run bench`, or `--only fleet-ingest,capacity`)'];
    return section;
  }
  const d = (k: string) => ingest[k] ?? 0;
  const edges = d('scale.edges');
  const fps = d('scale.fps') || FPS;
  const coreShare = d('scale.cpuPercent') / 100;
  // Cores per edge at this scale, rescaled to 10 frames/s if the phase ran at another rate.
  const perEdge = (coreShare / edges) * (FPS / fps);
  const full = 1 / perEdge;
  const planned = Math.floor(full * (1 - HEADROOM));
  const ceiling = 1e6 / (FPS * d('backlogCpuUsPerResult'));
  const light = d('live0.edges') > 0 ? d('live0.cpuPercent') / 100 / d('live0.edges') : 0;
  const bytesPerDay = d('bytesPerResult') * FPS * 86_400;
  const memoryMB = (n: number) => d('fleetRssIdleMB') + (n * d('rssPerEdgeKiB')) / 1024;

  const figures: Figure[] = [
    {
      name: `measured: ${edges} edges at ${fps} results/s, fleet manager CPU`,
      value: round(coreShare * 100),
      unit: '% of one core',
      note: `ack p50 ${round(d('scale.ackP50Ms'))} ms, p99 ${round(d('scale.ackP99Ms'))} ms; mean batch ${round(d('scale.meanBatch'))} results`,
    },
    {
      name: 'edges at 10 frames/s that fill one core (linear from the measured point)',
      value: Math.floor(full),
      unit: 'edges',
      note: `${round(perEdge * 1e3)} ms of CPU per edge per second`,
    },
    {
      name: `planning figure (${HEADROOM * 100} % of the core kept for catch-up and the API)`,
      value: planned,
      unit: 'edges',
      note: `about ${Math.round(memoryMB(planned))} MB RSS`,
    },
    {
      name: 'ingest ceiling (every message a full batch of 500)',
      value: Math.floor(ceiling),
      unit: 'edges',
      note: `${round(d('backlogCpuUsPerResult'))} µs CPU per result in the backlog phase`,
    },
    {
      name: 'fleet database growth per edge at 10 frames/s',
      value: round(bytesPerDay / 1e9),
      unit: 'GB/day',
      note: `${round(d('bytesPerResult'))} bytes/result; ${planned} edges: ${round((planned * bytesPerDay) / 1e12)} TB/day`,
    },
  ];
  const basis: Table = {
    title: 'Measured basis (fleet-ingest, this run): fleet manager CPU per edge at 10 results/s',
    columns: ['phase', 'edges', 'fleet CPU (% of one core)', 'ms CPU per edge per s', 'mean batch', 'ack p99 ms'],
    rows: [
      ...(light > 0
        ? [[`live, light load`, d('live0.edges'), round(d('live0.cpuPercent')), round(light * 1e3), round(d('live0.meanBatch')), round(d('live0.ackP99Ms'))]]
        : []),
      [`live, at scale`, edges, round(coreShare * 100), round(perEdge * 1e3), round(d('scale.meanBatch')), round(d('scale.ackP99Ms'))],
      ['backlog (floor: full batches)', d('edges') || '', '', round((FPS * d('backlogCpuUsPerResult')) / 1e3), d('backlogBatch'), ''],
    ],
  };
  section.summary =
    `A projection from one measured point, ${edges} simulated edges at ${fps} results/s against one fleet manager ` +
    '(fleet-ingest), scaled linearly to a full core. The fleet manager is one Node process: its main thread runs the ' +
    'embedded broker, MQTT, JSON and ingest, its storage thread every SQLite write (docs/storage.md). The projection ' +
    'counts the CPU of the whole process against one core, which is conservative: the storage thread runs beside the ' +
    'main one, and the second core is shared with the OS, the network stack and HTTP API users.';
  section.figures = figures;
  section.tables = [basis];
  section.notes = [
    `What limits first: the fleet manager's CPU, most of it the main thread's per-message work. At ${edges} edges the ` +
      `process uses ${Math.round(coreShare * 100)} % of one core; about ${Math.floor(full)} edges at 10 frames/s fill a core, and ${planned} leave ${HEADROOM * 100} % for a plant's catch-up after ` +
      'a network outage (the catch-up section) and for dashboards. Results are cheap in big batches and dear one by one' +
      (light > 0
        ? ` (${round(light * 1e3)} ms of CPU per edge per second at light load, when every result is acked on its own, against ` +
          `${round(perEdge * 1e3)} ms at ${edges} edges)`
        : '') +
      ': the per-message work (eight MQTT packets through the broker, a transaction, an ack) dominates, so a busier fleet ' +
      'degrades into bigger batches and later acks rather than falling over, down to the ingest ceiling of ' +
      `${Math.floor(ceiling)} edges where every message is a full batch.`,
    `Next: disk. Every result is kept: ${round(bytesPerDay / 1e9)} GB/day per edge at 10 frames/s, ` +
      `${round((planned * bytesPerDay) / 1e12)} TB/day for ${planned} edges. A retention policy (or PostgreSQL with ` +
      'partitions) comes before CPU on any plant keeping months of history.',
    `Memory is not the limit: about ${round(d('rssPerEdgeKiB'))} KiB of fleet manager RSS per connected edge.`,
    ...rolloutNote(opts.previous.get('rollout-scale')?.data),
    'Beyond one fleet manager: several instances behind an external broker with MQTT shared subscriptions and a shared ' +
      'PostgreSQL (docs/deploy.md, the PostgreSQL ingest section); SQLite admits one writer process.',
  ];
  section.data = { edgesFullCore: full, planned, ceiling, cpuMsPerEdgeSecond: perEdge * 1e3 };
  return section;
};
