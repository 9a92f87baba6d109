/**
 * The fleet simulator: real edge agents in two processes against a real fleet manager — results
 * synced and counted, a rollout of two versions through the registry, a line rollback, nothing
 * lost — and `osprey simulate` on the command line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { archiveDirectory } from '../../models/package-archive.js';
import { startSimulation, simEdgeSpecs } from '../../simulator/simulate.js';
import { SIM_MODEL_NAME, writeSimModelPackage } from '../../simulator/sim-model.js';
import { loadModelPackage } from '../../models/package.js';
import { generatePartImage } from '../../models/synthetic.js';
import { runOsprey } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';
import { signedDirectoryArchive, testPublisherKey } from '../helpers/publisher.js';
import { openTestIdentity } from '../helpers/identity.js';


/** The fleet API as an admin (set once the simulation's fleet exists). */
let admin: Record<string, string> = {};

async function api<T>(method: string, url: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: T }> {
  const res = await fetch(url, {
    method,
    headers: { ...admin, ...(body !== undefined ? { 'content-type': contentType } : {}) },
    ...(body !== undefined ? { body: Buffer.isBuffer(body) ? body : JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as T };
}

test('simEdgeSpecs spreads edges over lines in contiguous blocks', () => {
  const specs = simEdgeSpecs(5, 2, 'p', 'l');
  assert.deepEqual(
    specs.map((s) => `${s.id}:${s.line}`),
    ['p-001:l-1', 'p-002:l-1', 'p-003:l-1', 'p-004:l-2', 'p-005:l-2'],
  );
});

test('the simulated classifier is a real model of the size asked for', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-sim-model-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const manifest = await writeSimModelPackage(dir, { version: '3.0.0', weightBytes: 1 << 20 });
  assert.ok(Math.abs(manifest.model.size! - (1 << 20)) < 64 * 1024, `model file ${manifest.model.size} bytes`);
  const runner = await loadModelPackage(dir, { intraOpThreads: 1 });
  t.after(() => runner.close());
  const out = await runner.inspect(await generatePartImage({ seed: 7, width: 64, height: 64 }));
  assert.ok(['good', 'defect'].includes(out.label), out.label);
  assert.ok(out.score >= 0 && out.score <= 1);
});

test('simulated edges sync, follow a rollout and a line rollback, and lose nothing', { timeout: 180_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-simulate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeSimModelPackage(join(dir, 'v1'), { version: '1.0.0', weightBytes: 16 * 1024 });
  await writeSimModelPackage(join(dir, 'v2'), { version: '2.0.0', weightBytes: 16 * 1024 });
  const sim = await startSimulation({
    edges: 4, lines: 2, processes: 2, fps: 4, dataDir: join(dir, 'sim'), images: false, logLevel: 'silent', telemetryIntervalMs: 1000, publisherKeys: [testPublisherKey()],
  });
  t.after(() => sim.close());
  const { httpUrl } = sim.fleet;
  assert.equal(sim.fleet.embedded, true);
  admin = await openTestIdentity(t, join(dir, 'sim', 'fleet', 'fleet.db')).headers('admin');
  const ids = sim.edges.map((e) => e.id);

  // Every edge connected and syncing results the fleet has stored.
  await waitFor(async () => (await api<{ edges: { edgeId: string; online: boolean }[] }>('GET', `${httpUrl}/api/edges`)).body.edges.filter((e) => e.online).length === 4, 'four edges online');
  const before = await sim.stats();
  assert.equal(before.connected, 4);
  assert.deepEqual(Object.values(before.active), [4]);

  for (const version of ['1.0.0', '2.0.0']) {
    const up = await api<{ version: string }>('POST', `${httpUrl}/api/models/${SIM_MODEL_NAME}/versions`, await signedDirectoryArchive(join(dir, version === '1.0.0' ? 'v1' : 'v2')), 'application/x-tar');
    assert.equal(up.status, 201);
  }
  for (const version of ['1.0.0', '2.0.0']) {
    const r = await api<{ id: string }>('POST', `${httpUrl}/api/rollouts`, { model: SIM_MODEL_NAME, version, target: { all: true }, stages: [{ mode: 'live' }] });
    assert.equal(r.status, 201);
    await waitFor(async () => (await sim.stats()).active[`${SIM_MODEL_NAME}@${version}`] === 4, `all edges on ${version}`, 60_000, 100);
    await waitFor(async () => (await api<{ status: string }>('GET', `${httpUrl}/api/rollouts/${r.body.id}`)).body.status === 'completed', `rollout to ${version} completed`, 60_000, 100);
  }
  // The fleet holds results made by the new version from every edge.
  await waitFor(
    async () => {
      const page = await api<{ items: { edgeId: string }[] }>('GET', `${httpUrl}/api/results?model=${encodeURIComponent(`${SIM_MODEL_NAME}@2.0.0`)}&limit=1000`);
      return new Set(page.body.items.map((r) => r.edgeId)).size === 4;
    },
    'results of 2.0.0 from every edge',
    30_000,
    100,
  );

  // Rolling back line 1 takes its two edges back to 1.0.0; line 2 stays.
  const rb = await api<{ edges: unknown[] }>('POST', `${httpUrl}/api/lines/sim-line-1/rollback`);
  assert.equal(rb.status, 200);
  assert.equal(rb.body.edges.length, 2);
  const after = await waitFor(async () => {
    const s = await sim.stats();
    return s.active[`${SIM_MODEL_NAME}@1.0.0`] === 2 && s.active[`${SIM_MODEL_NAME}@2.0.0`] === 2 ? s : undefined;
  }, 'line 1 rolled back', 30_000, 100);
  assert.equal(after.refusing, 0);

  // Stop the frames: every frame stored, every result acked, and the fleet counted each once.
  assert.equal(await sim.drain(30_000), true);
  const end = await sim.stats();
  assert.equal(end.failed, 0, JSON.stringify(end.failures));
  assert.equal(end.stored, end.frames);
  assert.equal(end.pending, 0);
  assert.ok(end.stored > 0);
  let fleetTotal = 0;
  for (const line of ['sim-line-1', 'sim-line-2']) {
    const stats = await api<{ totals: { total: number } }>('GET', `${httpUrl}/api/lines/${line}/stats?bucket=1h`);
    fleetTotal += stats.body.totals.total;
  }
  assert.equal(fleetTotal, end.stored);
  assert.deepEqual(new Set(ids).size, 4);
});

const osprey = runOsprey;

test('osprey simulate runs edges against its own fleet and prints a JSON summary', { timeout: 120_000 }, async () => {
  const r = await osprey('simulate', '--edges', '3', '--processes', '1', '--fps', '5', '--duration', '2', '--interval', '0.5', '--json');
  assert.equal(r.code, 0, r.stderr);
  const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as { edges: number; frames: number; stored: number; acked: number; pending: number; failed: number; active: Record<string, number> };
  assert.equal(summary.edges, 3);
  assert.ok(summary.frames > 0);
  assert.equal(summary.stored, summary.frames);
  assert.equal(summary.acked, summary.stored);
  assert.equal(summary.pending, 0);
  assert.equal(summary.failed, 0);
  assert.deepEqual(Object.values(summary.active), [3]);
  assert.match(r.stderr, /edges 3\/3 connected/);
});

test('osprey simulate refuses bad usage and an unreachable fleet with one line', async () => {
  // A port that was free a moment ago: nothing answers there.
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  for (const [args, pattern] of [
    [['simulate'], /--edges is required/],
    [['simulate', '--edges', '0'], /--edges must be an integer from 1/],
    [['simulate', '--edges', '2', '--fleet', 'http://127.0.0.1:8080'], /--fleet and --mqtt go together/],
    [['simulate', '--edges', '2', '--fleet', 'ftp://x', '--mqtt', 'mqtt://x'], /--fleet must be a http\/https URL/],
    [['simulate', '--edges', '2', '--fps', 'fast'], /--fps must be a number/],
    [['simulate', '--edges', '2', '--credentials', 'creds'], /--credentials goes with --fleet/],
    [['simulate', '--edges', '2', '--fleet', `http://127.0.0.1:${port}`, '--mqtt', `mqtt://127.0.0.1:${port}`], /cannot read the fleet's public key/],
  ] as const) {
    const r = await osprey(...args);
    assert.notEqual(r.code, 0, args.join(' '));
    const lines = r.stderr.trim().split('\n').filter((l) => !l.startsWith('osprey simulate: starting'));
    assert.equal(lines.length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    assert.match(lines[0]!, pattern);
  }
});
