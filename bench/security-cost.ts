/**
 * What security costs (issue 14): the ingest backlog and a rollout with its rollbacks, each run
 * three ways on the same machine in the same run — authentication off on plain TCP (the baseline:
 * config `auth.enabled: false`, loopback only), authentication on, and authentication on over TLS
 * (a private CA from ensurePrivateCa; the edges trust its ca.pem) — and reported as ratios to the
 * baseline. Variants are interleaved (A B C A B C …) so drifting load on a shared machine hits all
 * three alike (and the order rotates, so none always goes first); each figure is the median of
 * the repetitions.
 *
 * - Ingest: bench/fleet-ingest.ts's machinery (the fleet child, simulated edges with the real
 *   fleet-link over their own MQTT connections, every result checked stored), a fixed backlog.
 * - Rollout: bench/rollback.ts's machinery (edges with the real fleet-link and model-manager:
 *   desired state, signature check, artifact download with the edge credential, activation):
 *   from `POST /api/rollouts` to every edge reporting the version, and line rollbacks.
 * - Per operation: one MQTT CONNECT to CONNACK of an edge (with its credential, or none), and one
 *   HTTP request on a kept-alive connection (with a bearer API token, or none).
 *
 * Standalone: `node dist/bench/security-cost.js [--quick]`.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connectAsync, type IClientOptions } from 'mqtt';
import { Agent, request } from 'undici';
import { readFile } from 'node:fs/promises';
import { generateKeyPairSync, sign } from 'node:crypto';
import { readFleetCredential } from '../edge-agent/fleet-credential.js';
import { hashPassword } from '../fleet-manager/auth/password.js';
import { hashSecret, mintSecret, mosquittoHash } from '../fleet-manager/auth/secrets.js';
import { apiHeaders, enrollBenchEdges, fleetDispatcher, startBenchFleet, type FleetChildSecurity, type FleetReady } from './fleet-access.js';
import type { FleetChildStats } from './fleet-child.js';
import { health, startSims, usage, type Sims } from './fleet-ingest.js';
import type { BacklogReport } from './edge-sim-worker.js';
import { measureRollback } from './rollback.js';
import { isMain, runStandalone } from './standalone.js';
import { round } from './stats.js';
import type { BenchRun, BenchSection, Figure, Table } from './types.js';

interface Variant extends FleetChildSecurity {
  id: 'base' | 'auth' | 'tls';
  name: string;
}

const VARIANTS: readonly Variant[] = [
  { id: 'base', name: 'authentication off, plain TCP (baseline)', auth: false, tls: false },
  { id: 'auth', name: 'authentication on, plain TCP', auth: true, tls: false },
  { id: 'tls', name: 'authentication on, TLS', auth: true, tls: true },
];

interface Plan {
  repetitions: number;
  ingest: { edges: number; workers: number; perEdge: number; batchSize: number; window: number };
  rollout: { edges: number; rounds: number };
  /** Sequential MQTT connects and HTTP requests per variant and repetition. */
  connects: number;
  requests: number;
}

function plan(quick: boolean): Plan {
  if (quick) {
    return { repetitions: 1, ingest: { edges: 2, workers: 1, perEdge: 200, batchSize: 100, window: 2 }, rollout: { edges: 3, rounds: 2 }, connects: 5, requests: 20 };
  }
  return { repetitions: 6, ingest: { edges: 20, workers: 2, perEdge: 10_000, batchSize: 500, window: 2 }, rollout: { edges: 50, rounds: 5 }, connects: 100, requests: 1000 };
}

/** One repetition of one variant. */
interface Sample {
  ingestRate: number;
  ingestCpuUsPerResult: number;
  /** Each rollout of the set-up (v1 from the edges' local model, then v2), create → all edges on it. */
  rolloutMs: number[];
  /** Median of the line rollbacks. */
  rollbackMs: number;
  connectMs: number;
  requestMs: number;
}

/** The ingest backlog plus the per-operation costs, on one fleet child. */
async function ingestAndOps(p: Plan, v: Variant, workDir: string): Promise<Omit<Sample, 'rolloutMs' | 'rollbackMs'>> {
  const fleetDir = join(workDir, 'fleet');
  const fleet = await startBenchFleet(fleetDir, { auth: v.auth, tls: v.tls });
  const dispatcher = await fleetDispatcher(fleet.ready.access);
  let sims: Sims = [];
  try {
    // Enrolled before the fleet is busy (see startSims).
    const opsLogin = await edgeLogin(fleet.ready, fleetDir, workDir);
    sims = await startSims(fleet, fleetDir, workDir, 'sim', p.ingest.edges, p.ingest.workers, p.ingest);
    const before = await health(fleet.ready.httpUrl, dispatcher);
    const s0 = await fleet.request<FleetChildStats>('stats');
    const t0 = performance.now();
    const reports = await Promise.all(sims.map((w) => w.request<BacklogReport>('backlog', { perEdge: p.ingest.perEdge }, 900_000)));
    const wallMs = performance.now() - t0;
    const s1 = await fleet.request<FleetChildStats>('stats');
    const total = reports.reduce((n, r) => n + r.results, 0);
    const stored = (await health(fleet.ready.httpUrl, dispatcher)).ingest.resultsStored - before.ingest.resultsStored;
    if (stored !== total) throw new Error(`${v.name}: fleet stored ${stored} results, ${total} were sent and acked`);
    await Promise.all(sims.map((w) => w.close(10_000)));
    sims = [];
    const u = usage(s0, s1, wallMs);
    return {
      ingestRate: total / u.wallS,
      ingestCpuUsPerResult: (u.cpuS * 1e6) / total,
      connectMs: await connectCost(fleet.ready.mqttUrl, opsLogin, p.connects),
      requestMs: await requestCost(fleet.ready, p.requests, dispatcher),
    };
  } finally {
    await Promise.all(sims.map((w) => w.close(10_000)));
    await dispatcher?.close();
    await fleet.close();
  }
}

/** One edge's MQTT login as a real edge's: its enrolled credential (authentication on), the fleet's CA (TLS). */
async function edgeLogin(fleet: FleetReady, fleetDir: string, workDir: string): Promise<IClientOptions> {
  const id = 'ops-edge';
  const files = await enrollBenchEdges(fleet.access, fleetDir, join(workDir, 'ops-credentials'), [{ id, line: 'ops' }]);
  return {
    clientId: id,
    reconnectPeriod: 0,
    ...(files ? (await readFleetCredential(files[id]!, undefined)).mqtt(id) : {}),
    ...(fleet.access.caFile ? { ca: await readFile(fleet.access.caFile), rejectUnauthorized: true } : {}),
  };
}

/** Median time of `n` sequential MQTT connects (to CONNACK) of one edge. */
async function connectCost(mqttUrl: string, login: IClientOptions, n: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    const client = await connectAsync(mqttUrl, login);
    samples.push(performance.now() - t0);
    await client.endAsync(true);
  }
  return median(samples);
}

/** Median time of `n` sequential `GET /api/edges` on one kept-alive connection, with the admin's token (or none). */
async function requestCost(fleet: FleetReady, n: number, tlsDispatcher: Agent | undefined): Promise<number> {
  const agent = tlsDispatcher ?? new Agent({ connections: 1 });
  const headers = apiHeaders(fleet.access);
  const samples: number[] = [];
  try {
    for (let i = 0; i < n + 5; i++) {
      const t0 = performance.now();
      const res = await request(`${fleet.httpUrl}/api/edges`, { dispatcher: agent, headers });
      await res.body.text();
      if (res.statusCode !== 200) throw new Error(`GET /api/edges: HTTP ${res.statusCode}`);
      // The first few open the connection (and the TLS session): not a request's cost.
      if (i >= 5) samples.push(performance.now() - t0);
    }
  } finally {
    if (!tlsDispatcher) await agent.close();
  }
  return median(samples);
}

/** The middle value; the mean of the two middle ones for an even count. */
function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length === 0 ? 0 : s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median time (ms) of `n` calls of `fn`. */
async function timeOf(n: number, fn: () => unknown): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    xs.push(performance.now() - t0);
  }
  return median(xs);
}

/** The primitives behind the figures, in this process: where a poor ratio's time would go. */
async function primitives(quick: boolean): Promise<(string | number)[][]> {
  const credential = mintSecret('edgeCredential').token;
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const hello = Buffer.alloc(64, 1);
  return [
    ['sha256 of a credential or API token (every MQTT CONNECT, every bearer request)', round((await timeOf(quick ? 100 : 10_000, () => hashSecret(credential))) * 1000), 'µs'],
    ["RSA-2048 signature (the server's share of each TLS handshake)", round(await timeOf(quick ? 5 : 200, () => sign('sha256', hello, privateKey))), 'ms'],
    ['scrypt N=2^15 (sign-in with a password only)', round(await timeOf(quick ? 1 : 5, () => hashPassword('a benchmark password'))), 'ms'],
    ['PBKDF2 (the Mosquitto password file, written at enrollment only)', round(await timeOf(quick ? 1 : 20, () => mosquittoHash(credential))), 'ms'],
  ];
}

export const run: BenchRun = async ({ quick, log, workDir }) => {
  const p = plan(quick);
  const samples = new Map<Variant['id'], Sample[]>(VARIANTS.map((v) => [v.id, []]));
  for (let rep = 0; rep < p.repetitions; rep++) {
    // A B C, B C A, C A B: whatever else the machine does is spread over all three, and each
    // variant takes each place in the order once every three repetitions.
    for (const v of [...VARIANTS.slice(rep % VARIANTS.length), ...VARIANTS.slice(0, rep % VARIANTS.length)]) {
      const dir = join(workDir, `${v.id}-${rep}`);
      const ops = await ingestAndOps(p, v, join(dir, 'ingest'));
      const rb = await measureRollback({ edges: p.rollout.edges, rounds: p.rollout.rounds, workDir: join(dir, 'rollout'), log: () => undefined, security: { auth: v.auth, tls: v.tls } });
      const s: Sample = { ...ops, rolloutMs: rb.rollouts.map((r) => r.ms), rollbackMs: median(rb.samples.map((x) => x.totalMs)) };
      samples.get(v.id)!.push(s);
      log(
        `security-cost ${rep + 1}/${p.repetitions} [${v.name}]: ingest ${Math.round(s.ingestRate)} results/s (${round(s.ingestCpuUsPerResult)} µs CPU/result), ` +
          `rollouts ${s.rolloutMs.map((m) => Math.round(m)).join(' / ')} ms, rollback ${Math.round(s.rollbackMs)} ms, connect ${round(s.connectMs)} ms, request ${round(s.requestMs)} ms`,
      );
    }
  }

  // Medians over the repetitions (rollouts: over every rollout of every repetition).
  const m = (id: Variant['id']) => {
    const xs = samples.get(id)!;
    return {
      ingestRate: median(xs.map((x) => x.ingestRate)),
      ingestCpu: median(xs.map((x) => x.ingestCpuUsPerResult)),
      rollout: median(xs.flatMap((x) => x.rolloutMs)),
      rollback: median(xs.map((x) => x.rollbackMs)),
      connect: median(xs.map((x) => x.connectMs)),
      request: median(xs.map((x) => x.requestMs)),
    };
  };
  const base = m('base');
  const totalResults = p.ingest.edges * p.ingest.perEdge;
  const metrics: { key: keyof typeof base; name: string; unit: string; digits: (n: number) => number }[] = [
    { key: 'ingestRate', name: `ingest backlog, ${p.ingest.edges} edges × ${p.ingest.perEdge.toLocaleString('en-US')} results`, unit: 'results/s', digits: Math.round },
    { key: 'ingestCpu', name: 'fleet manager CPU per result during the backlog', unit: 'µs', digits: round },
    { key: 'rollout', name: `rollout to ${p.rollout.edges} edges: create → all running it`, unit: 'ms', digits: round },
    { key: 'rollback', name: `line rollback of ${p.rollout.edges} edges`, unit: 'ms', digits: round },
    { key: 'connect', name: 'one edge MQTT connect (CONNECT → CONNACK)', unit: 'ms', digits: round },
    { key: 'request', name: 'one HTTP request (GET /api/edges, kept-alive connection)', unit: 'ms', digits: round },
  ];
  const figures: Figure[] = [];
  for (const v of VARIANTS.slice(1)) {
    const x = m(v.id);
    for (const k of metrics) {
      figures.push({
        name: `${k.name}: ${v.name}`,
        value: k.digits(x[k.key]),
        unit: k.unit,
        baseline: { name: VARIANTS[0]!.name, value: k.digits(base[k.key]) },
        note: `median of ${p.repetitions} repetitions${k.key === 'rollout' ? ' × 2 rollouts' : ''}`,
      });
    }
  }
  const tables: Table[] = [
    { title: 'Where the time goes: the primitives, one call each (median)', columns: ['operation', 'time', 'unit'], rows: await primitives(quick) },
    {
      title: 'Medians per variant (absolute)',
      columns: ['variant', 'ingest results/s', 'fleet CPU µs/result', 'rollout ms', 'rollback ms', 'MQTT connect ms', 'HTTP request ms'],
      rows: VARIANTS.map((v) => {
        const x = m(v.id);
        return [v.name, Math.round(x.ingestRate), round(x.ingestCpu), round(x.rollout), round(x.rollback), round(x.connect), round(x.request)];
      }),
    },
    {
      title: 'Every repetition',
      columns: ['repetition', 'variant', 'ingest results/s', 'fleet CPU µs/result', 'rollouts ms (v1 / v2)', 'rollback ms', 'MQTT connect ms', 'HTTP request ms'],
      rows: Array.from({ length: p.repetitions }, (_, rep) =>
        VARIANTS.map((v) => {
          const s = samples.get(v.id)![rep]!;
          return [rep + 1, v.id, Math.round(s.ingestRate), round(s.ingestCpuUsPerResult), s.rolloutMs.map((x) => round(x)).join(' / '), round(s.rollbackMs), round(s.connectMs), round(s.requestMs)];
        }),
      ).flat(),
    },
  ];
  const section: BenchSection = {
    id: 'security-cost',
    title: 'What security costs',
    summary:
      `The same work run three ways in one run on one machine, interleaved (${p.repetitions} repetitions, A B C then B C A then C A B), medians: ` +
      '(A) authentication off on plain TCP — fleet config `auth.enabled: false`, loopback only, every client anonymous — the baseline; ' +
      '(B) authentication on: edges enrolled (MQTT username + edge credential, the credential as `Authorization: Bearer` on artifact downloads), ' +
      "people's calls with an admin API token, per-identity MQTT topic ACLs; (C) B over TLS: HTTPS and MQTTS with a private CA (ensurePrivateCa), " +
      'every client verifying the fleet against its ca.pem. ' +
      `Ingest: bench/fleet-ingest.ts's simulated edges (real fleet-link, own MQTT connection each) sync a backlog of ${totalResults.toLocaleString('en-US')} results into the fleet child; ` +
      `every result is checked stored. Rollout: bench/rollback.ts's ${p.rollout.edges} edges (real fleet-link and model-manager, one process), two rollouts ` +
      `(create → every edge reporting the version: desired state, signature check, download, activation) and ${p.rollout.rounds} line rollbacks. ` +
      'Per operation: a fresh MQTT connection of one edge to CONNACK, and one request on a kept-alive HTTP connection. Ratios are to A.',
    figures,
    tables,
    notes: [
      'Where the time goes with authentication on: an MQTT CONNECT and an HTTP request with an edge credential or API token cost one SQLite lookup by id and one sha256 of the secret, compared in constant time; ' +
        'scrypt runs only at sign-in (sessions), never per request or per connection; PBKDF2 exists only in the Mosquitto password file (`osprey fleet broker-config`), not on the embedded broker. ' +
        'After CONNECT, each PUBLISH and SUBSCRIBE is checked against the identity held in memory (a topic parse).',
      'With TLS the extra cost is the handshake on each new connection (RSA 2048 server key; see the primitives) and the encryption of every byte; kept-alive connections (the edges\' MQTT links, HTTP keep-alive) pay the handshake once. ' +
        `Here a new MQTTS connection took ${round(m('tls').connect - m('auth').connect)} ms more than a plain one, and a request on a kept-alive HTTPS connection ${round(m('tls').request - m('auth').request)} ms more; ` +
        `a rollout opens one HTTPS connection per edge for its download: at most ${p.rollout.edges} × ${round(m('tls').connect - m('auth').connect)} ms = ` +
        `${round(p.rollout.edges * (m('tls').connect - m('auth').connect))} ms if no handshake overlapped other work, against ${round(m('tls').rollout - m('auth').rollout)} ms ` +
        'more per rollout measured (the handshakes overlap the edges\' signature checks and activations). A line rollback opens no connection (both versions are at the edge).',
    ],
    data: Object.fromEntries(VARIANTS.flatMap((v) => Object.entries(m(v.id)).map(([k, x]) => [`${v.id}.${k}`, x]))),
  };
  return section;
};

if (isMain(import.meta.url)) await runStandalone(run);
