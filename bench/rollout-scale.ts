/**
 * Rollout at plant scale (issue 6, benchmark 3): 200 simulated edges — the real edge agent
 * (simulator/: SQLite, onnxruntime, MQTT sync, desired state, downloads, signature and sha256
 * checks, activation) in a few processes, inspecting 1 frame/s each — and a fleet manager in its
 * own process. A 10 MB model package goes out in two stages: one station, then (on promotion)
 * the plant. Figures: from `POST /api/rollouts/:id/promote` to every edge reporting the new
 * version active (retained state on the broker), and to the fleet having counted results of
 * the new version from every edge (the rollout's own per-edge counters, read over HTTP every
 * 100 ms). Then one line of 50 edges is rolled back, several times. Baseline for the rollout:
 * the same artifact fetched over plain HTTP by as many concurrent clients, with nothing else.
 *
 * Standalone: `node dist/bench/rollout-scale.js [--quick]`.
 */
import { mkdir } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Agent, request } from 'undici';
import { BENCH_PUBLISHER_ID, benchPublisher } from './publisher.js';
import { simEdgeSpecs, startSimulation, type Simulation } from '../simulator/simulate.js';
import { apiHeaders, enrollBenchEdges, fleetMqttOptions, startBenchFleet } from './fleet-access.js';
import { SIM_MODEL_NAME, writeSimModelPackage } from '../simulator/sim-model.js';
import type { FleetChildStats } from './fleet-child.js';
import { isMain, runStandalone } from './standalone.js';
import { watchStates, type StateWatch } from './state-watch.js';
import { percentile, round } from './stats.js';
import type { BenchRun, BenchSection } from './types.js';

interface Plan {
  edges: number;
  lines: number;
  processes: number;
  fps: number;
  packageBytes: number;
  rollbacks: number;
}

function plan(quick: boolean): Plan {
  if (quick) return { edges: 8, lines: 2, processes: 2, fps: 1, packageBytes: 256 * 1024, rollbacks: 2 };
  return { edges: 200, lines: 4, processes: 2, fps: 1, packageBytes: 10 * 1024 * 1024, rollbacks: 5 };
}

interface VersionView {
  sha256: string;
  size: number;
}

interface RolloutEdgeView {
  edgeId: string;
  reported: string | null;
  frames: number;
}

interface RolloutViewLite {
  status: string;
  stages: { status: string; edges: RolloutEdgeView[] }[];
}

/** A person's HTTP call with the benchmark admin's token (`auth`: bench/fleet-access.ts apiHeaders). */
async function api<T>(auth: Record<string, string>, method: string, url: string, body?: unknown, contentType = 'application/json'): Promise<T> {
  const res = await request(url, {
    method: method as 'GET',
    headers: { ...auth, ...(body !== undefined ? { 'content-type': contentType } : {}) },
    ...(body !== undefined ? { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.body.text();
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: HTTP ${res.statusCode}: ${text}`);
  return JSON.parse(text) as T;
}

/** Polls the rollout until `pred` holds; resolves with performance.now() at that poll. */
async function pollRollout(auth: Record<string, string>, url: string, pred: (r: RolloutViewLite) => boolean, timeoutMs: number, everyMs = 100): Promise<{ at: number; view: RolloutViewLite }> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const view = await api<RolloutViewLite>(auth, 'GET', url);
    const at = performance.now();
    if (pred(view)) return { at, view };
    if (at > end) throw new Error(`rollout ${url} not there after ${timeoutMs} ms (status ${view.status})`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** The floor under a rollout: `clients` concurrent plain HTTP downloads of the artifact. */
async function bareDownloads(auth: Record<string, string>, httpUrl: string, sha256: string, clients: number): Promise<number> {
  const agent = new Agent({ connections: clients });
  try {
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async () => {
        const res = await request(`${httpUrl}/api/artifacts/${sha256}`, { dispatcher: agent, headers: auth });
        if (res.statusCode !== 200) throw new Error(`artifact download: HTTP ${res.statusCode}`);
        for await (const _chunk of res.body) {
          // bytes discarded: only the transfer is measured
        }
      }),
    );
    return performance.now() - t0;
  } finally {
    await agent.close();
  }
}

export const run: BenchRun = async ({ quick, log, workDir }) => {
  const p = plan(quick);
  const publisher = await benchPublisher(join(workDir, 'publisher'));
  const fleetChild = await startBenchFleet(join(workDir, 'fleet'), { publisherKeyFile: publisher.publicKeyFile });
  const { httpUrl, mqttUrl, access } = fleetChild.ready;
  const auth = apiHeaders(access);
  let sim: Simulation | undefined;
  let watch: StateWatch | undefined;
  try {
    // Two versions of the simulated classifier: a small one everywhere first (so a rollback has
    // a registry version to return to), then the large one through the staged rollout.
    const small = join(workDir, 'pkg-small');
    const large = join(workDir, 'pkg-large');
    await writeSimModelPackage(small, { version: '1.0.0', weightBytes: 64 * 1024 });
    const manifest = await writeSimModelPackage(large, { version: '2.0.0', weightBytes: p.packageBytes });
    const upload = async (dir: string) =>
      api<VersionView>(auth, 'POST', `${httpUrl}/api/models/${SIM_MODEL_NAME}/versions`, await publisher.signedDirectory(dir), 'application/x-tar');
    const v1 = await upload(small);
    const v2 = await upload(large);
    const V1 = `${SIM_MODEL_NAME}@1.0.0`;
    const V2 = `${SIM_MODEL_NAME}@${manifest.version}`;
    log(`registry: ${V1} (${v1.size} bytes), ${V2} (${(v2.size / 1048576).toFixed(1)} MiB)`);

    const bareMs = await bareDownloads(auth, httpUrl, v2.sha256, p.edges);
    log(`bare: ${p.edges} concurrent plain downloads of ${V2} in ${bareMs.toFixed(0)} ms`);

    watch = await watchStates(mqttUrl, await fleetMqttOptions(access, 'rollout-scale-observer'));
    const t0 = performance.now();
    await mkdir(join(workDir, 'sim'), { recursive: true });
    // Every simulated edge enrolled on the fleet as `osprey edge enroll` would (the ids startSimulation gives them).
    const credentialDir = join(workDir, 'credentials');
    await enrollBenchEdges(access, join(workDir, 'fleet'), credentialDir, simEdgeSpecs(p.edges, p.lines));
    sim = await startSimulation({
      credentialDir,
      edges: p.edges,
      lines: p.lines,
      processes: p.processes,
      fps: p.fps,
      dataDir: join(workDir, 'sim'),
      fleet: { httpUrl, mqttUrl },
      publisherKeys: [{ id: BENCH_PUBLISHER_ID, publicKeyFile: publisher.publicKeyFile }],
      telemetryIntervalMs: 5000,
      images: false,
      logLevel: 'error',
    });
    const startS = (performance.now() - t0) / 1000;
    log(`${p.edges} simulated edges running after ${startS.toFixed(1)} s`);
    const edges = sim.edges;

    // Everyone on v1 first, in one live stage.
    const r1 = await api<{ id: string }>(auth, 'POST', `${httpUrl}/api/rollouts`, { model: SIM_MODEL_NAME, version: '1.0.0', target: { all: true }, stages: [{ mode: 'live' }] });
    const tr1 = performance.now();
    await watch.allOn(V1, p.edges, 120_000);
    const smallAllMs = performance.now() - tr1;
    await pollRollout(auth, `${httpUrl}/api/rollouts/${r1.id}`, (r) => r.status === 'completed', 120_000);
    log(`rollout of ${V1} (${v1.size} bytes) to ${p.edges} edges: all running after ${smallAllMs.toFixed(0)} ms`);

    // The large version: one station, then the plant on promotion.
    const r2 = await api<{ id: string }>(auth, 'POST', `${httpUrl}/api/rollouts`, {
      model: SIM_MODEL_NAME,
      version: manifest.version,
      target: { all: true },
      stages: [
        { name: 'one station', select: { edges: [edges[0]!.id] }, mode: 'live', promotion: 'manual' },
        // Manual here too, so the stage stays open (and its per-edge counters keep counting) until measured.
        { name: 'plant', mode: 'live', promotion: 'manual' },
      ],
    });
    const r2Url = `${httpUrl}/api/rollouts/${r2.id}`;
    await pollRollout(auth, r2Url, (r) => r.status === 'awaiting-promotion', 120_000);
    log(`${V2} on one station; promoting to the plant`);
    // The simulator's steady cost (frames, sync, telemetry) before the promotion, so the CPU the
    // rollout itself takes can be told apart from it.
    const steadyA = await sim.stats();
    const tsA = performance.now();
    await new Promise((r) => setTimeout(r, quick ? 1000 : 5000));
    const cpu0 = await fleetChild.request<FleetChildStats>('stats');
    const stats0 = await sim.stats();
    const steadyCpuPerS = (stats0.cpuUs - steadyA.cpuUs) / 1e6 / ((performance.now() - tsA) / 1000);
    const tp = performance.now();
    await api(auth, 'POST', `${r2Url}/promote`);
    const promoteHttpMs = performance.now() - tp;
    // Both observers run at once: the broker's view of states, and the fleet's result counters.
    // Frame latency at the edges while the package moves (each stats() covers the frames since the last).
    let simPeakRss = stats0.rssBytes;
    const latency = { count: 0, p50Sum: 0, p99: 0 };
    let peakTimer: NodeJS.Timeout | undefined;
    const samplePeak = () => {
      peakTimer = setTimeout(() => {
        void sim!.stats().then((s) => {
          simPeakRss = Math.max(simPeakRss, s.rssBytes);
          latency.count += s.latencyMs.count;
          latency.p50Sum += s.latencyMs.p50 * s.latencyMs.count;
          latency.p99 = Math.max(latency.p99, s.latencyMs.p99);
          if (peakTimer) samplePeak();
        }, () => undefined);
      }, 1000);
    };
    samplePeak();
    const [runningAt, reporting] = await Promise.all([
      watch.allOn(V2, p.edges, 300_000),
      pollRollout(auth, r2Url, (r) => r.stages[1]!.edges.length === p.edges && r.stages[1]!.edges.every((e) => e.reported === V2 && e.frames > 0), 300_000),
    ]);
    clearTimeout(peakTimer);
    peakTimer = undefined;
    const cpu1 = await fleetChild.request<FleetChildStats>('stats');
    const runningMs = runningAt - tp;
    const reportingMs = reporting.at - tp;
    const fleetCpuS = (cpu1.cpuUserUs + cpu1.cpuSystemUs - cpu0.cpuUserUs - cpu0.cpuSystemUs) / 1e6;
    log(`promotion → ${p.edges} edges running ${V2}: ${runningMs.toFixed(0)} ms; reporting results with it: ${reportingMs.toFixed(0)} ms`);
    const statsAfter = await sim.stats();
    const windowS = (performance.now() - tp) / 1000;
    const simCpuS = (statsAfter.cpuUs - stats0.cpuUs) / 1e6;
    const activationCpuMs = Math.max(0, ((simCpuS - steadyCpuPerS * windowS) * 1000) / (p.edges - 1));
    await pollRollout(auth, r2Url, (r) => r.status === 'awaiting-promotion', 120_000);
    await api(auth, 'POST', `${r2Url}/promote`);
    await pollRollout(auth, r2Url, (r) => r.status === 'completed', 120_000);

    // Rollback of one line (edges in contiguous blocks: line 1 is the first edges/lines).
    const line = edges[0]!.line;
    const onLine = new Set(edges.filter((e) => e.line === line).map((e) => e.id));
    const lineEdges = onLine.size;
    const rollbacks: { ms: number; to: string }[] = [];
    let current = V2;
    for (let i = 0; i < p.rollbacks; i++) {
      const target = current === V2 ? V1 : V2;
      // Edges off the line already on the target version count towards allOn() too.
      const before = [...watch.active.entries()].filter(([id, m]) => m === target && !onLine.has(id)).length;
      const t = performance.now();
      await api(auth, 'POST', `${httpUrl}/api/lines/${line}/rollback`);
      const at = await watch.allOn(target, before + lineEdges, 60_000);
      rollbacks.push({ ms: at - t, to: target });
      log(`rollback ${i + 1} of ${line} (${lineEdges} edges) to ${target}: ${(at - t).toFixed(0)} ms`);
      current = target;
    }
    await sim.drain(30_000);
    const end = await sim.stats();
    const rb = rollbacks.map((r) => r.ms);
    const mib = v2.size / 1048576;
    const transferred = (p.edges - 1) * v2.size;

    const section: BenchSection = {
      id: 'rollout-scale',
      title: 'Rollout at plant scale',
      summary:
        `${p.edges} simulated edges (\`osprey simulate\`'s code: each one the real edge agent — SQLite results, onnxruntime, ` +
        `MQTT sync, desired state, artifact download with sha256 and signature checks, activation — with no HTTP server) on ` +
        `${p.lines} lines in ${p.processes} processes, each inspecting ${p.fps} frame/s of synthetic part images; the fleet manager in ` +
        `its own process (embedded broker, SQLite). A ${mib.toFixed(1)} MiB package (\`${V2}\`, a real classifier whose weights ` +
        'make up the size) goes out in two stages: one station, then the plant on `POST /api/rollouts/:id/promote`. "Running" is ' +
        'every edge\'s retained state on the broker naming the new version active; "reporting" is the fleet\'s rollout view ' +
        'counting results of the new version from every edge (read every 100 ms). Rollback: one line, ' +
        `\`POST /api/lines/:line/rollback\`, to every edge of it reporting its previous version (both versions loaded at the edge). ` +
        'Baseline: the same artifact downloaded over plain HTTP by as many concurrent clients in one process, with nothing else running.',
      figures: [
        {
          name: `${p.edges} edges, ${mib.toFixed(1)} MiB package: promotion → all running it and reporting`,
          value: round(reportingMs / 1000, 2),
          unit: 's',
          baseline: { name: `${p.edges} plain concurrent downloads of the artifact`, value: round(bareMs / 1000, 2) },
          goal: { value: '<=', target: 30 },
          note: `all running it (state) after ${round(runningMs / 1000, 2)} s; ${(transferred / 1e9).toFixed(2)} GB downloaded`,
        },
        {
          name: `${p.edges} edges: promotion → all running it`,
          value: round(runningMs / 1000, 2),
          unit: 's',
          goal: { value: '<=', target: 30 },
          note: `HTTP answer to the promotion ${round(promoteHttpMs, 1)} ms`,
        },
        {
          name: `rollback of one line (${lineEdges} of the ${p.edges} edges), median`,
          value: round(percentile(rb, 50), 1),
          unit: 'ms',
          goal: { value: '<=', target: 2000 },
          note: `${p.rollbacks} rollbacks, worst ${round(Math.max(...rb), 1)} ms`,
        },
        {
          name: `small package (${Math.round(v1.size / 1024)} KiB) to ${p.edges} edges in one stage: all running it`,
          value: round(smallAllMs / 1000, 2),
          unit: 's',
          note: 'from POST /api/rollouts',
        },
        { name: 'fleet manager CPU from promotion to all reporting', value: round(fleetCpuS, 2), unit: 'CPU s', note: `peak RSS ${Math.round(cpu1.maxRssBytes / 1048576)} MB over the run` },
        {
          name: 'simulated edges: CPU to take the new version, per edge',
          value: round(activationCpuMs, 1),
          unit: 'CPU ms',
          note:
            `download, sha256, signature, unpack, sha256 again at load, onnxruntime session, switch: ${round(simCpuS, 1)} CPU s in the ` +
            `simulator over ${round(windowS, 1)} s, less its steady ${round(steadyCpuPerS * 100)} % of a core for frames and sync`,
        },
        {
          name: 'simulated edges: memory per edge with both versions loaded',
          value: round(statsAfter.rssBytes / p.edges / 1048576, 1),
          unit: 'MB',
          note: `${Math.round(statsAfter.rssBytes / 1048576)} MB in ${p.processes} processes; before the promotion ${round(stats0.rssBytes / p.edges / 1048576, 1)} MB per edge`,
        },
        {
          name: 'simulated edges: frames lost',
          value: end.frames - end.stored,
          unit: 'frames',
          goal: { value: '<=', target: 0 },
          note: `${end.frames} frames over the run, ${end.acked} results acked by the fleet, ${end.pending} pending at the end; failures ${JSON.stringify(end.failures)}`,
        },
      ],
      tables: [
        {
          title: 'Rollbacks',
          columns: ['rollback', 'to', 'all edges of the line reported (ms)'],
          rows: rollbacks.map((r, i) => [i + 1, r.to, round(r.ms, 1)]),
        },
      ],
      notes: [
        `What bounds the rollout figure here is the machine holding the simulation: each edge spends about ${round(activationCpuMs)} ms of CPU ` +
          `taking the new version, so ${p.edges - 1} edges need ${round((activationCpuMs * (p.edges - 1)) / 1000, 1)} CPU s, on the ` +
          `${os.availableParallelism()} cores that also run the simulated inspection (${round(steadyCpuPerS * 100)} % of a core) and the fleet manager ` +
          `(${round(fleetCpuS, 1)} CPU s in the window: serving ${(transferred / 1e9).toFixed(2)} GB, desired states, ingest). ` +
          `Real edges each do their own ${round(activationCpuMs)} ms at the same time; the fleet's part is the transfer ` +
          `(${round(bareMs / 1000, 1)} s for all ${p.edges} downloads here with nothing else running; on a 1 Gbit/s link at least ` +
          `${round((p.edges * v2.size * 8) / 1e9, 1)} s) and one desired-state message per edge, so a plant of real edges is bounded by its network, not by Osprey.`,
        `Start-up: ${p.edges} edges connected and inspecting ${round(startS, 1)} s after the simulator started (8 agents starting at a time per process).`,
        `Frame latency at the simulated edges (submit → stored) while the package went out: p50 ${round(latency.p50Sum / Math.max(1, latency.count), 1)} ms ` +
          `(mean of per-second medians), worst per-second p99 ${round(latency.p99, 1)} ms, over ${latency.count} frames; ` +
          `peak RSS of the simulator processes ${Math.round(simPeakRss / 1048576)} MB.`,
      ],
      data: { edges: p.edges, packageBytes: v2.size, activationCpuMs, steadyCpuPerS, reportingMs, runningMs, bareMs, rollbackMedianMs: percentile(rb, 50), smallAllMs },
    };
    return section;
  } finally {
    await watch?.close();
    await sim?.close();
    await fleetChild.close();
  }
};

if (isMain(import.meta.url)) await runStandalone(run);
