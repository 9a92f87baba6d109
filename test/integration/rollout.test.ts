/**
 * Rollouts end to end with every real part: a fleet manager (registry, rollout engine, embedded
 * broker, SQLite) and three `osprey edge start` processes that download, verify, load and run the
 * candidates on real frames. One story, in order:
 *
 *  1. a shadow stage on one edge reports agreement and promotes to live on its line;
 *  2. an edge that is offline while a rollout reaches it converges once it is back;
 *  3. a candidate whose defect rate jumps trips its gate and is rolled back automatically;
 *  4. a package with one flipped byte, and one signed by another key, are refused by the edges;
 *  5. a fleet restart in the middle of a rollout resumes it;
 *  6. a manual rollback of a line returns every edge to its previous version.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import pino from 'pino';
import { createFleetManager, type FleetManager } from '../../fleet-manager/fleet-manager.js';
import { archiveDirectory, packArchive, unpackArchive } from '../../models/package-archive.js';
import { sha256Hex } from '../../models/package-reader.js';
import { generateSigningKeys, signArtifact } from '../../models/artifact-signature.js';
import { fitBuiltinAnomalyModel } from '../../models/authoring.js';
import { DEMO_MODEL_NAME, DEMO_TRAIN_SEEDS, ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { decodeMessage } from '../../protocol/validator.js';
import type { StateMessage } from '../../protocol/messages.js';
import { startOsprey, type OspreyProcess } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';
import { openTestIdentity } from '../helpers/identity.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { signedArchive, testPublisherKey } from '../helpers/publisher.js';

const NAME = DEMO_MODEL_NAME;
const id = (version: string) => `${NAME}@${version}`;
const DEFECTS = ['scratch', 'spot', 'dent', 'missing'] as const;

interface Edge {
  id: string;
  line: string;
  configFile: string;
  proc: OspreyProcess;
  httpUrl: string;
}

/** Every edge's reported state as it arrives on the broker, awaitable. */
function watchStates(url: string) {
  const client = mqtt.connect(url, { clientId: 'rollout-observer', reconnectPeriod: 200 });
  const states = new Map<string, StateMessage>();
  const waiters: { edgeId: string; match: (s: StateMessage) => boolean; resolve: (s: StateMessage) => void }[] = [];
  client.on('connect', () => void client.subscribeAsync('osprey/v1/edges/+/state', { qos: 1 }));
  client.on('message', (_topic, payload) => {
    const m = decodeMessage('state', payload);
    if (!m.ok) return;
    const s = { ...states.get(m.value.edgeId), ...m.value };
    states.set(s.edgeId, s);
    for (const w of [...waiters]) {
      if (w.edgeId === s.edgeId && w.match(s)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(s);
      }
    }
  });
  return {
    client,
    /** The first state of the edge (the latest, or a future one) that matches. */
    waitState(edgeId: string, match: (s: StateMessage) => boolean, what: string, timeoutMs = 60_000): Promise<StateMessage> {
      const now = states.get(edgeId);
      if (now && match(now)) return Promise.resolve(now);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${edgeId}: ${what} not reported within ${timeoutMs} ms; last ${JSON.stringify(states.get(edgeId))}`)), timeoutMs);
        waiters.push({ edgeId, match, resolve: (s) => (clearTimeout(timer), resolve(s)) });
      });
    },
  };
}

const activeIs = (version: string) => (s: StateMessage) => s.online && s.active?.name === NAME && s.active.version === version;

test('rollouts end to end: shadow, live, offline edge, gate rollback, refused packages, fleet restart, line rollback', { timeout: 240_000 }, async (t: TestContext) => {
  const root = await mkdtemp(join(tmpdir(), 'osprey-rollout-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const log = pino({ level: 'silent' });

  // Model versions: v1 is every edge's local model; v2 and v6 are the same fit under new
  // versions (they agree with v1); v3 is fitted with a tiny threshold, so every frame is a defect.
  const v1Dir = await ensureDemoModel(join(root, 'models'));
  const train = await Promise.all(Array.from({ length: DEMO_TRAIN_SEEDS.count }, (_, i) => generatePartImage({ seed: DEMO_TRAIN_SEEDS.first + i })));
  const v2Dir = join(root, 'models', 'v2');
  await fitBuiltinAnomalyModel(train, v2Dir, { name: NAME, version: '2.0.0' });
  const v3Dir = join(root, 'models', 'v3');
  await fitBuiltinAnomalyModel(train, v3Dir, { name: NAME, version: '3.0.0', margin: 0.01 });
  const v2Files = unpackArchive(await archiveDirectory(v2Dir));
  /** v2's package under another version number. */
  const renamed = (version: string) => {
    const manifest = JSON.parse(v2Files.get('manifest.json')!.toString()) as { version: string };
    return packArchive(new Map([...v2Files, ['manifest.json', Buffer.from(JSON.stringify({ ...manifest, version }))]]));
  };

  const dataDir = join(root, 'fleet');
  const local = { host: '127.0.0.1', port: 0 };
  const registry = { publisherKeys: [testPublisherKey()] };
  let fleet: FleetManager = createFleetManager({ dataDir, http: local, mqtt: local, rollouts: { tickMs: 100 }, registry, logger: log });
  let { httpUrl, mqttUrl } = await fleet.start();
  t.after(() => fleet.close());
  // An admin's API token drives the registry and rollouts; each edge has its own credential.
  const creds = openTestIdentity(t, join(dataDir, 'fleet.db'));
  const auth = await creds.headers('admin');
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${httpUrl}${path}`, body === undefined ? { method, headers: auth } : { method, body: JSON.stringify(body), headers: { ...auth, 'content-type': 'application/json' } });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- checked by the asserts
    return { status: res.status, body: (await res.json()) as any };
  };
  const upload = async (archive: Buffer) => {
    // Signed by the test publisher, as a release manager would (osprey model sign).
    const res = await fetch(`${httpUrl}/api/models/${NAME}/versions`, { method: 'POST', body: signedArchive(archive), headers: { ...auth, 'content-type': 'application/x-tar' } });
    assert.equal(res.status, 201);
    return (await res.json()) as { sha256: string; version: string; size: number };
  };
  const v2 = await upload(await archiveDirectory(v2Dir));
  await upload(await archiveDirectory(v3Dir));
  const v4 = await upload(renamed('4.0.0'));
  const v5 = await upload(renamed('5.0.0'));
  await upload(renamed('6.0.0'));
  const publicKey = await (await fetch(`${httpUrl}/api/fleet/public-key`, { headers: auth })).text();

  const observer = watchStates(mqttUrl);
  t.after(() => observer.client.endAsync(true));

  const edges = new Map<string, Edge>();
  async function startEdge(e: { id: string; line: string; configFile: string }): Promise<Edge> {
    const proc = startOsprey(['edge', 'start', '--config', e.configFile]);
    t.after(() => proc.stop('SIGKILL'));
    const started = await proc.waitForLine((l) => l.msg === 'edge agent started', 60_000);
    const edge = { ...e, proc, httpUrl: String(started.httpUrl) };
    edges.set(e.id, edge);
    return edge;
  }
  await Promise.all(
    [
      { id: 'e1', line: 'line-A' },
      { id: 'e2', line: 'line-A' },
      { id: 'e3', line: 'line-B' },
    ].map(async ({ id: edgeId, line }) => {
      const dir = join(root, edgeId);
      await mkdir(dir, { recursive: true });
      const configFile = join(root, `${edgeId}.json`);
      await writeFile(
        configFile,
        JSON.stringify({
          edgeId,
          line,
          dataDir: dir,
          http: { host: '127.0.0.1', port: 0 },
          fleet: { mqttUrl, httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(creds, edgeId, join(dir, 'fleet.credential')) },
          model: { dir: v1Dir, retryBaseMs: 50, retryMaxMs: 500 },
          sync: { batchSize: 50, intervalMs: 100 },
          telemetry: { intervalMs: 300 },
          images: { maxBytes: 0 },
          logLevel: 'info',
        }),
      );
      await startEdge({ id: edgeId, line, configFile });
      await observer.waitState(edgeId, activeIs('1.0.1'), 'its local model');
    }),
  );

  let seed = 10_000;
  /** Inspects n frames on the edge (every third a defect); returns the model ids that answered. */
  async function frames(edgeId: string, n: number): Promise<string[]> {
    const models: string[] = [];
    for (let i = 0; i < n; i++) {
      const defect = i % 3 === 2 ? DEFECTS[i % 4]! : null;
      const res = await fetch(`${edges.get(edgeId)!.httpUrl}/inspect`, { method: 'POST', body: await generatePartImage({ seed: seed++, defect }), headers: { 'content-type': 'image/jpeg' } });
      assert.equal(res.status, 200);
      models.push(((await res.json()) as { model: string }).model);
    }
    return models;
  }
  /** Polls a rollout (its state lives in the fleet's database) until the predicate holds. */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON view
  const rolloutWhere = (rid: string, what: string, pred: (r: any) => boolean, timeoutMs = 60_000) =>
    waitFor(async () => {
      const r = (await api('GET', `/api/rollouts/${rid}`)).body;
      return pred(r) ? r : undefined;
    }, `rollout ${rid} ${what}`, timeoutMs, 100);

  // History under v1 on line A: the base of the live defect-rate gates.
  await Promise.all([frames('e1', 9), frames('e2', 9)]);

  // 1. Shadow on e1, then live on line A.
  const r1 = await api('POST', '/api/rollouts', {
    model: NAME,
    version: '2.0.0',
    target: { lines: ['line-A'] },
    stages: [
      { name: 'shadow-e1', select: { edges: ['e1'] }, mode: 'shadow', gates: { minFrames: 6, minAgreement: 0.8, maxDefectRateChange: 0.3, maxErrorRate: 0 } },
      { name: 'line-A', mode: 'live' },
    ],
  });
  assert.equal(r1.status, 201, JSON.stringify(r1.body));
  await observer.waitState('e1', (s) => s.shadow?.version === '2.0.0', 'v2 in shadow');
  assert.deepEqual(await frames('e1', 6), Array(6).fill(id('1.0.1')), 'verdicts still come from the active model');
  const done1 = await rolloutWhere(r1.body.id, 'completed', (r) => r.status === 'completed');
  const shadowStage = done1.stages[0];
  assert.ok(shadowStage.metrics.frames >= 6);
  assert.equal(shadowStage.metrics.agreement, 1, 'the same fit agrees on every frame');
  assert.equal(shadowStage.gateResults.find((g: { gate: string }) => g.gate === 'minAgreement').status, 'pass');
  await Promise.all(['e1', 'e2'].map((e) => observer.waitState(e, (s) => activeIs('2.0.0')(s) && !s.shadow, 'v2 live')));

  // 2. e3 is offline when a rollout reaches line B; it converges once back.
  await edges.get('e3')!.proc.stop('SIGTERM');
  await observer.waitState('e3', (s) => !s.online, 'offline');
  const r2 = await api('POST', '/api/rollouts', { model: NAME, version: '2.0.0', target: { lines: ['line-B'] }, stages: [{ mode: 'live' }], silenceTimeoutSeconds: 120 });
  const waiting = await rolloutWhere(r2.body.id, 'waits for e3', (r) => r.stages[0].edges[0]?.desired === id('2.0.0'));
  assert.equal(waiting.stages[0].edges[0].status, 'pending');
  assert.equal(waiting.stages[0].edges[0].reported, id('1.0.1'));
  await startEdge(edges.get('e3')!);
  await observer.waitState('e3', activeIs('2.0.0'), 'v2 after reconnecting');
  await rolloutWhere(r2.body.id, 'completed', (r) => r.status === 'completed');

  // 3. v3 flags every frame: its live defect rate jumps past the gate and the fleet rolls it back.
  const r3 = await api('POST', '/api/rollouts', {
    model: NAME,
    version: '3.0.0',
    target: { edges: ['e1'] },
    stages: [{ name: 'canary', mode: 'live', gates: { minFrames: 6, maxDefectRateChange: 0.3 } }],
    onFailure: 'rollback',
  });
  await observer.waitState('e1', activeIs('3.0.0'), 'v3 live');
  const under3 = await frames('e1', 6);
  assert.ok(under3.every((m) => m === id('3.0.0')));
  const failed3 = await rolloutWhere(r3.body.id, 'rolled back', (r) => r.status === 'rolled-back');
  assert.match(failed3.reason, /stage canary: gate maxDefectRateChange/);
  assert.equal(failed3.stages[0].metrics.defectRate, 1);
  const back = await observer.waitState('e1', activeIs('2.0.0'), 'back on v2');
  assert.equal(back.previous?.version, '3.0.0');
  assert.deepEqual(await frames('e1', 2), [id('2.0.0'), id('2.0.0')]);

  // 4. One flipped byte in v4's stored artifact, and v5 re-signed by a key that is not the fleet's.
  const v4File = join(dataDir, 'artifacts', v4.sha256.slice(0, 2), v4.sha256);
  const bytes = await readFile(v4File);
  bytes[bytes.length >> 1]! ^= 0x01;
  await writeFile(v4File, bytes);
  assert.notEqual(sha256Hex(bytes), v4.sha256);
  const foreign = signArtifact({ name: NAME, version: '5.0.0', sha256: v5.sha256, size: v5.size, pluginSha256: null }, generateSigningKeys().privateKeyPem);
  const db = new Database(join(dataDir, 'fleet.db'));
  db.prepare('UPDATE model_versions SET signature = ? WHERE sha256 = ?').run(foreign, v5.sha256);
  db.close();
  const [r4, r5] = await Promise.all([
    api('POST', '/api/rollouts', { model: NAME, version: '4.0.0', target: { edges: ['e2'] }, stages: [{ mode: 'live' }] }),
    api('POST', '/api/rollouts', { model: NAME, version: '5.0.0', target: { edges: ['e3'] }, stages: [{ mode: 'live' }] }),
  ]);
  const [failed4, failed5] = await Promise.all([
    rolloutWhere(r4.body.id, 'rolled back', (r) => r.status === 'rolled-back'),
    rolloutWhere(r5.body.id, 'rolled back', (r) => r.status === 'rolled-back'),
  ]);
  assert.match(failed4.reason, /edge e2 refused the candidate: model-failed OSP_ERR_ARTIFACT_CHECKSUM/);
  assert.match(failed5.reason, /edge e3 refused the candidate: model-failed OSP_ERR_MODEL_SIGNATURE/);
  // Neither ever ran: both still answer with v2.
  assert.deepEqual([...(await frames('e2', 1)), ...(await frames('e3', 1))], [id('2.0.0'), id('2.0.0')]);

  // 5. A rollout waiting for promotion survives a fleet restart (same ports: edges reconnect).
  const r6 = await api('POST', '/api/rollouts', {
    model: NAME,
    version: '6.0.0',
    target: { lines: ['line-A'] },
    stages: [
      { name: 'e1', select: { edges: ['e1'] }, mode: 'live', promotion: 'manual' },
      { name: 'line-A', mode: 'live' },
    ],
  });
  await observer.waitState('e1', activeIs('6.0.0'), 'v6 live');
  await rolloutWhere(r6.body.id, 'awaits promotion', (r) => r.status === 'awaiting-promotion');
  const ports = { http: Number(new URL(httpUrl).port), mqtt: Number(new URL(mqttUrl).port) };
  await fleet.close();
  fleet = createFleetManager({ dataDir, http: { ...local, port: ports.http }, mqtt: { ...local, port: ports.mqtt }, rollouts: { tickMs: 100 }, registry, logger: log });
  ({ httpUrl, mqttUrl } = await fleet.start());
  const resumed = await rolloutWhere(r6.body.id, 'still awaits promotion', (r) => r.status === 'awaiting-promotion' && r.stages[0].edges[0].status === 'reporting');
  assert.equal(resumed.stages[0].status, 'awaiting-promotion');
  assert.equal((await api('POST', `/api/rollouts/${r6.body.id}/promote`)).status, 200);
  await observer.waitState('e2', activeIs('6.0.0'), 'v6 live after the restart');
  await rolloutWhere(r6.body.id, 'completed', (r) => r.status === 'completed');

  // 6. Line A back to its previous version by hand: a pointer switch on every edge.
  const rb = await api('POST', '/api/lines/line-A/rollback');
  assert.equal(rb.status, 200);
  assert.deepEqual(rb.body.edges, [
    { edgeId: 'e1', from: id('6.0.0'), to: id('2.0.0') },
    { edgeId: 'e2', from: id('6.0.0'), to: id('2.0.0') },
  ]);
  for (const e of ['e1', 'e2']) {
    const s = await observer.waitState(e, activeIs('2.0.0'), 'v2 after the line rollback');
    assert.equal(s.previous?.version, '6.0.0');
    assert.equal(s.active?.sha256, v2.sha256);
  }
  assert.deepEqual(await frames('e2', 1), [id('2.0.0')]);
  assert.equal((await observer.waitState('e3', () => true, 'state')).active?.version, '2.0.0', 'line B untouched');

  for (const e of edges.values()) assert.equal(await e.proc.stop('SIGTERM'), 0);
});
