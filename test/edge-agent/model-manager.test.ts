/**
 * The edge side of rollouts with real parts: a real aedes broker, a real HTTP artifact server on
 * port 0, real archives of real ONNX packages, signed as the fleet signs them, and a whole edge
 * agent in between.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { request } from 'undici';
import type { DesiredMessage, ResultRecord } from '../../protocol/messages.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { generateSigningKeys } from '../../models/artifact-signature.js';
import { loadModelPackage } from '../../models/runtime.js';
import { generatePartImage } from '../../models/fixtures.js';
import type { ModelRunner } from '../../models/types.js';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { waitFor } from '../helpers/wait-for.js';
import { startArtifactServer, type ArtifactServer } from './artifact-server.js';
import { startFakeFleet, type FakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger, type TestBroker } from './fixtures.js';
import { artifactFor, usePackages, type TestPackage } from './model-packages.js';

const pkgs = usePackages();
const EDGE = 'edge-test';
const LOCAL_ID = 'osprey-demo-anomaly@1.0.1';

/** Frames outside every training range: good parts and a few defects. */
const frames = Promise.all(
  Array.from({ length: 16 }, (_, i) =>
    generatePartImage({ seed: 500 + i, defect: i % 4 === 3 ? 'scratch' : null, format: 'jpeg' }),
  ),
);

type DesiredBody = Omit<DesiredMessage, 'v' | 'id' | 'ts' | 'edgeId'>;

interface Answer {
  status: number;
  body: { seq?: number; verdict?: string; score?: number; model?: string; error?: string };
}

interface Rig {
  broker: TestBroker;
  fleet: FakeFleet;
  server: ArtifactServer;
  agent: EdgeAgent;
  dataDir: string;
  inspect(image: Buffer): Promise<Answer>;
  /** Publishes a retained desired state, as the fleet does. */
  desired(body: DesiredBody): Promise<void>;
  /** Index of the next message the fake fleet will record (for `since`). */
  mark(): number;
}

async function inspectAt(httpUrl: string, image: Buffer): Promise<Answer> {
  const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: image, headers: { 'content-type': 'image/jpeg' } });
  return { status: res.statusCode, body: (await res.body.json()) as Answer['body'] };
}

function publishDesired(fleet: FakeFleet, body: DesiredBody): Promise<void> {
  const msg = envelope('desired', EDGE, body);
  return fleet.client.publishAsync(edgeTopic(EDGE, 'desired'), encodeMessage(msg), { qos: 1, retain: true }).then(() => undefined);
}

function startAgent(t: TestContext, dir: string, mqttUrl: string, publicKey: string, localDir: string, artifactOrigin: string): EdgeAgent {
  const config = edgeConfig(dir, localDir, {
    fleet: { mqttUrl, publicKey, artifactOrigins: [artifactOrigin] },
    model: { dir: localDir, retryBaseMs: 5, retryMaxMs: 40, probationFrames: 10, probationErrors: 3 },
  });
  const agent = createEdgeAgent(config, { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 300 });
  t.after(() => agent.close());
  return agent;
}

async function rig(t: TestContext): Promise<Rig> {
  const p = await pkgs;
  const dir = await tempDir(t);
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  const server = await startArtifactServer();
  t.after(async () => {
    await fleet.close();
    await broker.close();
    await server.close();
  });
  const agent = startAgent(t, dir, broker.url, p.keys.publicKeyPem, p.localDir, server.url);
  const { httpUrl } = await agent.start();
  await fleet.next('state', (m) => m.msg.online);
  return {
    broker,
    fleet,
    server,
    agent,
    dataDir: path.join(dir, 'data'),
    inspect: (image) => inspectAt(httpUrl, image),
    desired: (body) => publishDesired(fleet, body),
    mark: () => fleet.messages.length,
  };
}

/** Reference runners, loaded by the test itself, to check which model produced a score. */
async function reference(t: TestContext, ...packages: TestPackage[]): Promise<Map<string, ModelRunner>> {
  const runners = new Map<string, ModelRunner>();
  for (const pkg of packages) runners.set(pkg.id, await loadModelPackage(pkg.dir));
  t.after(() => Promise.all([...runners.values()].map((r) => r.close())));
  return runners;
}

const ref = (name: string, version: string, sha256?: string) => (sha256 ? { name, version, sha256 } : { name, version });

test('desired → download → verify → activate: results name the new version, switches lose no frame, rollback is a pointer switch', async (t) => {
  const p = await pkgs;
  const r = await rig(t);
  const images = await frames;
  const refs = await reference(t, p.v2, p.v3);
  const a2 = artifactFor(r.server, p.v2, p.keys.privateKeyPem);
  const a3 = artifactFor(r.server, p.v3, p.keys.privateKeyPem);

  let since = r.mark();
  await r.desired({ active: a2, config: {}, configVersion: 1 });
  const state = await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0', { since });
  assert.deepEqual(state.msg.active, ref(p.v2.name, '2.0.0', p.v2.sha256));
  assert.deepEqual(state.msg.previous, ref('osprey-demo-anomaly', '1.0.1'), 'the config model, without sha256');
  assert.equal(state.msg.shadow, null);
  assert.equal(state.msg.configVersion, 1);
  assert.deepEqual(state.msg.errors, []);
  const activated = await r.fleet.next('events', (m) => m.msg.kind === 'model-activated', { since });
  assert.equal(activated.msg.data?.version, '2.0.0');
  assert.ok(existsSync(path.join(r.dataDir, 'models', p.v2.sha256, 'manifest.json')), 'cached by archive sha256');
  const first = await r.inspect(images[0]!);
  assert.equal(first.body.model, p.v2.id);

  // A switch while the line keeps sending (two frames in flight at all times): every frame is
  // answered, each by the version it names, and the seqs have no gap.
  since = r.mark();
  let switched = false;
  const answers: { a: Answer; img: Buffer }[] = [];
  const line = async (lane: number) => {
    for (let i = lane, after = 0; after < 3; i += 2) {
      const img = images[i % images.length]!;
      answers.push({ a: await r.inspect(img), img });
      if (switched) after++;
    }
  };
  const lanes = Promise.all([line(0), line(1)]);
  await r.desired({ active: a3, config: {}, configVersion: 2 });
  const sw = await r.fleet.next('events', (m) => m.msg.kind === 'model-activated' && m.msg.data?.version === '3.0.0', { since });
  switched = true;
  await lanes;
  t.diagnostic(`switch v2 → v3: pointer switch ${String(sw.msg.data?.switchMs)} ms, desired received → active ${String(sw.msg.data?.sinceDesiredMs)} ms (download, verify, extract, load)`);
  const byModel: Record<string, number> = {};
  for (const { a, img } of answers) {
    assert.equal(a.status, 200);
    byModel[a.body.model!] = (byModel[a.body.model!] ?? 0) + 1;
    const expected = await refs.get(a.body.model!)!.inspect(img);
    assert.ok(Math.abs(expected.score - a.body.score!) < 1e-5, `${a.body.model} produced score ${a.body.score}, expected ${expected.score}`);
  }
  t.diagnostic(`frames across the switch: ${JSON.stringify(byModel)}`);
  assert.ok(byModel[p.v2.id]! > 0 && byModel[p.v3.id]! >= 4, 'frames on both sides of the switch');
  const seqs = answers.map(({ a }) => a.body.seq!).sort((x, y) => x - y);
  assert.deepEqual(seqs, seqs.map((_, i) => seqs[0]! + i), 'no frame lost');

  // Rollback: the previous version is still loaded, so it is a pointer switch, no download.
  since = r.mark();
  const t0 = performance.now();
  await r.desired({ active: a2, config: {}, configVersion: 3 });
  const back = await r.fleet.next('events', (m) => m.msg.kind === 'model-activated' && m.msg.data?.rollback === true, { since });
  const endToEnd = performance.now() - t0;
  t.diagnostic(
    `rollback: pointer switch ${String(back.msg.data?.switchMs)} ms; desired received → active ${String(back.msg.data?.sinceDesiredMs)} ms; ` +
      `desired published → model-activated event at the fleet ${endToEnd.toFixed(1)} ms`,
  );
  const rolled = await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0', { since });
  assert.deepEqual(rolled.msg.previous, ref(p.v3.name, '3.0.0', p.v3.sha256));
  assert.equal(r.server.requestsFor(p.v2.sha256).length, 1, 'no second download');
  assert.equal((await r.inspect(images[1]!)).body.model, p.v2.id);
});

test('an interrupted download resumes with Range after backoff, and is verified before activation', async (t) => {
  const p = await pkgs;
  const r = await rig(t);
  const a2 = artifactFor(r.server, p.v2, p.keys.privateKeyPem);
  const half = Math.floor(p.v2.archive.length / 2);
  r.server.failWith(p.v2.sha256, 503, 2);
  r.server.dropAfter(p.v2.sha256, half);
  const since = r.mark();
  await r.desired({ active: a2, config: {}, configVersion: 1 });
  await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0', { since });
  const reqs = r.server.requestsFor(p.v2.sha256);
  t.diagnostic(`requests: ${JSON.stringify(reqs)}`);
  assert.deepEqual(reqs.map((q) => q.status), [503, 503, 200, 206]);
  const resumeAt = Number(/^bytes=(\d+)-$/.exec(reqs[3]!.range ?? '')?.[1]);
  assert.ok(resumeAt > 0 && resumeAt <= half, `resumed at byte ${resumeAt} of ${p.v2.archive.length}`);
  assert.deepEqual(await readdir(path.join(r.dataDir, 'models', 'downloads')), [], 'no partial file left');
});

test('one flipped byte, or a signature by another key, is refused, reported, and not fetched again', async (t) => {
  const p = await pkgs;
  const r = await rig(t);
  const flipped = Buffer.from(p.v2.archive);
  flipped[flipped.length >> 1]! ^= 0x01;
  const bad = artifactFor(r.server, p.v2, p.keys.privateKeyPem, flipped);

  let since = r.mark();
  await r.desired({ active: bad, config: {}, configVersion: 1 });
  const failed = await r.fleet.next('events', (m) => m.msg.kind === 'model-failed', { since });
  assert.equal(failed.msg.data?.code, 'OSP_ERR_ARTIFACT_CHECKSUM');
  assert.equal(failed.msg.data?.sha256, p.v2.sha256);
  const state = await r.fleet.next('state', (m) => (m.msg.errors ?? []).length > 0, { since });
  assert.equal(state.msg.active?.name, 'osprey-demo-anomaly', 'still on the config model');
  assert.match(state.msg.errors![0]!, /line-anomaly@2\.0\.0 [0-9a-f]{64}: OSP_ERR_ARTIFACT_CHECKSUM/);
  // One fresh retry (a resume may splice two files), then refused.
  assert.equal(r.server.requestsFor(p.v2.sha256).length, 2);
  assert.equal(existsSync(path.join(r.dataDir, 'models', p.v2.sha256)), false, 'never extracted');

  // A new config version naming the same artifact does not fetch it again.
  since = r.mark();
  await r.desired({ active: bad, config: { thresholds: { default: 0.9 } }, configVersion: 2 });
  await r.fleet.next('events', (m) => m.msg.kind === 'config-applied', { since });
  await r.agent.models!.idle();
  assert.equal(r.server.requestsFor(p.v2.sha256).length, 2);

  // Signed by another key: refused before a single byte is fetched.
  const other = generateSigningKeys();
  const forged = artifactFor(r.server, p.v3, other.privateKeyPem);
  since = r.mark();
  await r.desired({ active: forged, config: {}, configVersion: 3 });
  const sig = await r.fleet.next('events', (m) => m.msg.kind === 'model-failed', { since });
  assert.equal(sig.msg.data?.code, 'OSP_ERR_MODEL_SIGNATURE');
  assert.equal(r.server.requestsFor(p.v3.sha256).length, 0);
  const after = await r.fleet.next('state', (m) => (m.msg.errors ?? []).some((e) => e.includes('OSP_ERR_MODEL_SIGNATURE')), { since });
  assert.equal(after.msg.errors!.length, 1, 'the checksum refusal is forgotten once the desired state stops naming it');
  assert.equal(after.msg.configVersion, 3);
  assert.equal((await r.inspect((await frames)[0]!)).body.model, LOCAL_ID);
});

test('a package that does not load is never activated; one that fails its first frames is reverted to the previous version', async (t) => {
  const p = await pkgs;
  const r = await rig(t);
  const images = await frames;
  const a2 = artifactFor(r.server, p.v2, p.keys.privateKeyPem);
  const broken = artifactFor(r.server, p.broken, p.keys.privateKeyPem);
  const nan = artifactFor(r.server, p.nan, p.keys.privateKeyPem);

  let since = r.mark();
  await r.desired({ active: broken, config: {}, configVersion: 1 });
  const loadFail = await r.fleet.next('events', (m) => m.msg.kind === 'model-failed', { since });
  assert.equal(loadFail.msg.data?.code, 'OSP_ERR_MODEL_LOAD');
  assert.equal(existsSync(path.join(r.dataDir, 'models', p.broken.sha256)), false, 'a package that failed to load leaves the cache');
  assert.equal((await r.inspect(images[0]!)).body.model, LOCAL_ID);

  since = r.mark();
  await r.desired({ active: a2, config: {}, configVersion: 2 });
  await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0', { since });

  since = r.mark();
  await r.desired({ active: nan, config: {}, configVersion: 3 });
  await r.fleet.next('state', (m) => m.msg.active?.version === '9.0.0-nan', { since });
  const failures: Answer[] = [];
  for (const img of images.slice(0, 3)) failures.push(await r.inspect(img));
  assert.ok(failures.every((f) => f.status === 500 && f.body.error === 'OSP_ERR_INFERENCE'), JSON.stringify(failures.map((f) => f.body)));
  const rolledBack = await r.fleet.next('events', (m) => m.msg.kind === 'model-rolled-back', { since });
  assert.equal(rolledBack.msg.data?.code, 'OSP_ERR_MODEL_PROBATION');
  assert.deepEqual(rolledBack.msg.data?.to, ref(p.v2.name, '2.0.0', p.v2.sha256));
  t.diagnostic(`local revert: pointer switch ${String(rolledBack.msg.data?.switchMs)} ms`);
  const failed = await r.fleet.next('events', (m) => m.msg.kind === 'model-failed' && m.msg.data?.version === '9.0.0-nan', { since });
  assert.equal(failed.msg.data?.code, 'OSP_ERR_MODEL_PROBATION');
  const state = await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0' && (m.msg.errors ?? []).length > 0, { since });
  assert.ok(state.msg.errors!.some((e) => e.includes('9.0.0-nan') && e.includes('OSP_ERR_MODEL_PROBATION')), String(state.msg.errors));
  const next = await r.inspect(images[4]!);
  assert.equal(next.status, 200);
  assert.equal(next.body.model, p.v2.id);

  // The fleet still desires the bad version: it is not tried again.
  await r.agent.models!.idle();
  assert.equal(r.server.requestsFor(p.nan.sha256).length, 1);
  assert.equal(r.agent.health().model, p.v2.id);
});

test('shadow mode: the candidate judges the same frames, verdicts stay the active one, rows and telemetry carry both', async (t) => {
  const p = await pkgs;
  const r = await rig(t);
  const images = await frames;
  const refs = await reference(t, p.v3);
  const a2 = artifactFor(r.server, p.v2, p.keys.privateKeyPem);
  const a3 = artifactFor(r.server, p.v3, p.keys.privateKeyPem);

  let since = r.mark();
  await r.desired({ active: a2, shadow: a3, config: {}, configVersion: 1 });
  const state = await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0' && m.msg.shadow?.version === '3.0.0', { since });
  assert.deepEqual(state.msg.shadow, ref(p.v3.name, '3.0.0', p.v3.sha256));

  const answers: Answer[] = [];
  for (const img of images) answers.push(await r.inspect(img));
  assert.ok(answers.every((a) => a.status === 200 && a.body.model === p.v2.id));
  const lastSeq = answers.at(-1)!.body.seq!;
  await waitFor(() => r.fleet.contiguous >= lastSeq, 'results at the fleet', 10_000);
  const rows = answers.map((a) => r.fleet.results.get(a.body.seq!)!) as ResultRecord[];
  let agreed = 0;
  for (const [i, row] of rows.entries()) {
    assert.equal(row.model, p.v2.id);
    assert.equal(row.shadow?.model, p.v3.id);
    assert.equal(row.shadow?.error, undefined);
    assert.equal(typeof row.shadow?.latencyMs, 'number');
    const expected = await refs.get(p.v3.id)!.inspect(images[i]!);
    assert.ok(Math.abs(expected.score - row.shadow!.score!) < 1e-5, 'the shadow outcome is the candidate on the same frame');
    assert.equal(row.shadow!.verdict, expected.verdict);
    if (row.shadow!.verdict === row.verdict) agreed++;
  }
  t.diagnostic(`shadow agreement ${agreed}/${rows.length}; active defects ${rows.filter((x) => x.verdict === 'defect').length}, candidate defects ${rows.filter((x) => x.shadow!.verdict === 'defect').length}`);
  assert.ok(agreed < rows.length, 'the stricter candidate disagrees on some good parts');

  // Telemetry intervals add up to the same per-model counts, agreement included.
  const totals = () => {
    const sum = { active: 0, shadow: 0, agreed: 0, shadowP95: 0 };
    for (const m of r.fleet.messages) {
      if (m.kind !== 'telemetry') continue;
      const per = (m.msg as { perModel: Record<string, { frames: number; agreed?: number; latencyP95Ms?: number }> }).perModel;
      sum.active += per[p.v2.id]?.frames ?? 0;
      sum.shadow += per[p.v3.id]?.frames ?? 0;
      sum.agreed += per[p.v3.id]?.agreed ?? 0;
      sum.shadowP95 = Math.max(sum.shadowP95, per[p.v3.id]?.latencyP95Ms ?? 0);
    }
    return sum;
  };
  const sums = await waitFor(() => (totals().shadow >= rows.length ? totals() : undefined), 'telemetry with the shadow counts', 10_000);
  assert.equal(sums.active, rows.length);
  assert.equal(sums.agreed, agreed);
  assert.ok(sums.shadowP95 > 0);

  // Promotion: the candidate is already loaded, so going live is a switch without a download.
  since = r.mark();
  await r.desired({ active: a3, shadow: null, config: {}, configVersion: 2 });
  const promoted = await r.fleet.next('state', (m) => m.msg.active?.version === '3.0.0' && m.msg.shadow === null, { since });
  assert.deepEqual(promoted.msg.previous, ref(p.v2.name, '2.0.0', p.v2.sha256));
  assert.equal(r.server.requestsFor(p.v3.sha256).length, 1);
  const live = await r.inspect(images[0]!);
  assert.equal(live.body.model, p.v3.id);
  const row = await waitFor(() => r.fleet.results.get(live.body.seq!), 'the live row at the fleet', 10_000);
  assert.equal(row.shadow, undefined, 'no shadow once the candidate is live');
});

test('config thresholds from desired state apply without a restart and fall back to the config file', async (t) => {
  const r = await rig(t);
  const good = (await frames)[0]!;
  assert.equal((await r.inspect(good)).body.verdict, 'ok');
  let since = r.mark();
  await r.desired({ active: null, config: { thresholds: { default: 0.01 } }, configVersion: 7 });
  const applied = await r.fleet.next('events', (m) => m.msg.kind === 'config-applied', { since });
  assert.equal(applied.msg.data?.configVersion, 7);
  await r.fleet.next('state', (m) => m.msg.configVersion === 7, { since });
  assert.equal((await r.inspect(good)).body.verdict, 'defect');
  since = r.mark();
  await r.desired({ active: null, config: {}, configVersion: 8 });
  await r.fleet.next('events', (m) => m.msg.kind === 'config-applied', { since });
  assert.equal((await r.inspect(good)).body.verdict, 'ok');
});

test('the last desired state is persisted: after a restart with the broker down it is in force at once; the rollout made meanwhile arrives on reconnect', async (t) => {
  const p = await pkgs;
  const r = await rig(t);
  const good = (await frames)[0]!;
  const a2 = artifactFor(r.server, p.v2, p.keys.privateKeyPem);
  const a3 = artifactFor(r.server, p.v3, p.keys.privateKeyPem);
  const since = r.mark();
  await r.desired({ active: a2, config: { thresholds: { default: 0.01 } }, configVersion: 4 });
  await r.fleet.next('state', (m) => m.msg.active?.version === '2.0.0' && m.msg.configVersion === 4, { since });
  await r.agent.close();
  const port = r.broker.port;
  await r.fleet.close();
  await r.broker.close();

  // Restart offline: the broker is gone.
  const dir = path.dirname(r.dataDir);
  const again = startAgent(t, dir, `mqtt://127.0.0.1:${port}`, p.keys.publicKeyPem, p.localDir, r.server.url);
  const { httpUrl } = await again.start();
  assert.equal(again.health().model, p.v2.id, 'the persisted active version, before any frame');
  assert.equal(again.models!.state().configVersion, 4);
  const answer = await inspectAt(httpUrl, good);
  assert.equal(answer.body.model, p.v2.id);
  assert.equal(answer.body.verdict, 'defect', 'the persisted thresholds are in force');
  assert.equal(again.health().fleet.connected, false);
  assert.equal(r.server.requestsFor(p.v2.sha256).length, 1, 'served from the cache');

  // The fleet comes back with a rollout that started while this edge was away.
  const broker = await startBroker(port);
  t.after(() => broker.close());
  const fleet = await startFakeFleet(broker.url);
  t.after(() => fleet.close());
  await publishDesired(fleet, { active: a3, config: {}, configVersion: 5 });
  const state = await fleet.next('state', (m) => m.msg.online && m.msg.active?.version === '3.0.0');
  assert.equal(state.msg.configVersion, 5);
  assert.deepEqual(state.msg.previous, ref(p.v2.name, '2.0.0', p.v2.sha256));
});
