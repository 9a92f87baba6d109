/**
 * The edge's golden-set self-test (issue 17) on a real agent, a real broker and real packages: a
 * model trained on real MTD images passes its golden set right after activation; the same
 * package with perturbed weights (golden set intact) fails with per-image outcomes and raises
 * `golden-set-failed`, which the good version clears; a node-cron schedule from the layered
 * config runs it (a bad expression keeps the previous one), and close stops the cron task.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { getTasks } from 'node-cron';
import { request } from 'undici';
import type { DesiredMessage, EventMessage } from '../../protocol/messages.js';
import type { GoldenImageOutcome, GoldenSetReport } from '../../protocol/monitoring.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { dataSkip } from '../helpers/service-skip.js';
import { startArtifactServer, type ArtifactServer } from './artifact-server.js';
import { startFakeFleet, type FakeFleet, type Received } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger } from './fixtures.js';
import { useGoldenPackages } from './golden-packages.js';
import { artifactFor } from './model-packages.js';

const skip = dataSkip('magnetic-tile');
const packages = useGoldenPackages();
const EDGE = 'edge-test';
type DesiredBody = Omit<DesiredMessage, 'v' | 'id' | 'ts' | 'edgeId'>;
type GoldenEvent = GoldenSetReport & { outcomes: GoldenImageOutcome[] };

interface Rig {
  fleet: FakeFleet;
  server: ArtifactServer;
  agent: EdgeAgent;
  httpUrl: string;
  desired(body: DesiredBody): Promise<void>;
  mark(): number;
  /** The next golden-set event (from index `since`) matching `match`. */
  golden(since: number, match: (e: GoldenEvent) => boolean): Promise<GoldenEvent>;
  /** The next golden-set-failed alert (raised, or cleared) from index `since`. */
  alarm(since: number, cleared: boolean): Promise<Received<'events'>>;
}

async function rig(t: TestContext): Promise<Rig> {
  const p = await packages();
  const dir = await tempDir(t);
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  const server = await startArtifactServer();
  t.after(async () => {
    await fleet.close();
    await broker.close();
    await server.close();
  });
  const config = edgeConfig(dir, p.localDir, {
    fleet: { mqttUrl: broker.url, publicKey: p.keys.publicKeyPem, artifactOrigins: [server.url] },
    model: { dir: p.localDir, retryBaseMs: 5, retryMaxMs: 40 },
  });
  const agent = createEdgeAgent(config, { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 300 });
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  await fleet.next('state', (m) => m.msg.online);
  const events = (since: number, match: (m: Received<'events'>) => boolean) => fleet.next('events', match, { since, timeoutMs: 30_000 });
  return {
    fleet,
    server,
    agent,
    httpUrl,
    desired: (body) => fleet.client.publishAsync(edgeTopic(EDGE, 'desired'), encodeMessage(envelope('desired', EDGE, body)), { qos: 1, retain: true }).then(() => undefined),
    mark: () => fleet.messages.length,
    golden: async (since, match) => (await events(since, (m) => m.msg.kind === 'golden-set' && match(m.msg.data as GoldenEvent))).msg.data as GoldenEvent,
    alarm: (since, cleared) => events(since, (m) => m.msg.kind === 'alert' && m.msg.data?.alarm === 'golden-set-failed' && (m.msg.data.cleared === true) === cleared),
  };
}

test('a trained package passes its golden set after activation; perturbed weights fail it and raise golden-set-failed; the good version clears it', { skip, timeout: 60_000 }, async (t) => {
  const p = await packages();
  const r = await rig(t);
  // The agent's own model (the demo package) has no golden set: "none", not a failure.
  const local = await r.golden(0, (e) => e.model === 'osprey-demo-anomaly@1.0.1');
  assert.equal(local.passed, null);
  assert.equal(local.trigger, 'activation');
  assert.match(local.reason ?? '', /no golden set/);
  assert.deepEqual(r.agent.health().alarms, []);

  const good = artifactFor(r.server, p.good, p.keys.privateKeyPem);
  const perturbed = artifactFor(r.server, p.perturbed, p.keys.privateKeyPem);
  let since = r.mark();
  await r.desired({ active: good, config: {}, configVersion: 1 });
  const passed = await r.golden(since, (e) => e.model === p.good.id);
  t.diagnostic(`good: ${passed.images} images in ${passed.durationMs} ms, accuracy ${passed.accuracy} (expected ${passed.expectedAccuracy})`);
  assert.equal(passed.passed, true, passed.reason);
  assert.equal(passed.role, 'active');
  assert.equal(passed.sha256, p.good.sha256);
  assert.ok(passed.images >= 16, `${passed.images} golden images`);
  assert.equal(passed.mismatches, 0);
  assert.equal(passed.accuracy, passed.expectedAccuracy);
  assert.equal(passed.outcomes.length, passed.images);
  assert.ok(passed.outcomes.every((o) => o.match && o.got !== null && Math.abs(o.got.score - o.expected.score) <= 1e-3));
  assert.ok(passed.outcomes.some((o) => o.truth === 'defect'), 'the golden set holds defects too');
  // The reported state carries the active model's last report.
  const state = await r.fleet.next('state', (m) => m.msg.goldenSet?.model === p.good.id, { since });
  assert.equal(state.msg.goldenSet?.passed, true);

  since = r.mark();
  await r.desired({ active: perturbed, config: {}, configVersion: 2 });
  const failed = await r.golden(since, (e) => e.model === p.perturbed.id);
  t.diagnostic(`perturbed: ${failed.mismatches} of ${failed.images} off (${failed.reason})`);
  assert.equal(failed.passed, false);
  assert.ok(failed.mismatches > 0);
  assert.equal(failed.outcomes.length, failed.images);
  const off = failed.outcomes.filter((o) => !o.match);
  assert.equal(off.length, failed.mismatches);
  assert.ok(off.every((o) => o.got !== null && Math.abs(o.got.score - o.expected.score) > 1e-3), 'mismatches are score (or verdict) changes');
  assert.match(failed.reason ?? '', /images off their expected answer/);
  const raised = await r.alarm(since, false);
  assert.equal(raised.msg.level, 'error');
  assert.equal(raised.msg.data?.model, p.perturbed.id);
  assert.ok(r.agent.health().alarms?.includes('golden-set-failed'));
  const tel = await r.fleet.next('telemetry', (m) => m.msg.alarms?.includes('golden-set-failed') === true, { since });
  assert.ok(tel);

  // On demand, from the loopback HTTP API: the same verdict.
  const res = await request(`${r.httpUrl}/golden-set/run?role=active`, { method: 'POST' });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { reports: GoldenSetReport[] };
  assert.deepEqual(body.reports.map((x) => [x.model, x.trigger, x.passed]), [[p.perturbed.id, 'demand', false]]);

  since = r.mark();
  await r.desired({ active: good, config: {}, configVersion: 3 });
  assert.equal((await r.golden(since, (e) => e.model === p.good.id)).passed, true);
  await r.alarm(since, true);
  assert.deepEqual(r.agent.health().alarms, []);
});

test('goldenSet.schedule drives node-cron: every second runs it, a bad expression keeps the previous one, close stops the task', { skip, timeout: 60_000 }, async (t) => {
  const p = await packages();
  const r = await rig(t);
  const good = artifactFor(r.server, p.good, p.keys.privateKeyPem);
  let since = r.mark();
  await r.desired({ active: good, config: { goldenSet: { schedule: '* * * * * *', runOnActivation: false } }, configVersion: 1 });
  const scheduled = await r.golden(since, (e) => e.trigger === 'schedule' && e.model === p.good.id);
  assert.equal(scheduled.passed, true);
  // runOnActivation false: the activation itself ran nothing for the new model.
  const runs = r.fleet.messages
    .slice(since)
    .flatMap((m) => (m.kind === 'events' && (m.msg as EventMessage).kind === 'golden-set' ? [(m.msg as EventMessage).data as GoldenEvent] : []))
    .filter((e) => e.model === p.good.id);
  assert.ok(runs.length > 0 && runs.every((e) => e.trigger === 'schedule'), JSON.stringify(runs.map((e) => e.trigger)));
  assert.equal([...getTasks().values()].filter((task) => task.name === 'golden-set').length, 1);

  // A bad expression (the fleet refuses it; an edge given one anyway) keeps the every-second schedule.
  await r.desired({ active: good, config: { goldenSet: { schedule: '61 * * * *' } }, configVersion: 2 });
  await r.fleet.next('events', (m) => m.msg.kind === 'config-applied' && m.msg.data?.configVersion === 2, { since });
  since = r.mark();
  assert.equal((await r.golden(since, (e) => e.trigger === 'schedule')).passed, true);

  await r.agent.close();
  assert.equal([...getTasks().values()].filter((task) => task.name === 'golden-set').length, 0, 'the cron task is destroyed on close');
});

test('a shadow candidate is tested when it loads; its failure raises the alarm, which clears when the candidate is dropped', { skip, timeout: 60_000 }, async (t) => {
  const p = await packages();
  const r = await rig(t);
  const good = artifactFor(r.server, p.good, p.keys.privateKeyPem);
  const perturbed = artifactFor(r.server, p.perturbed, p.keys.privateKeyPem);
  let since = r.mark();
  await r.desired({ active: good, shadow: perturbed, config: {}, configVersion: 1 });
  const shadow = await r.golden(since, (e) => e.model === p.perturbed.id);
  assert.deepEqual([shadow.role, shadow.passed], ['shadow', false]);
  assert.equal((await r.alarm(since, false)).msg.data?.role, 'shadow');
  // The active model's report is the state's; the shadow's is not.
  assert.equal((await r.golden(since, (e) => e.model === p.good.id)).passed, true);
  const state = await r.fleet.next('state', (m) => m.msg.goldenSet?.model === p.good.id, { since });
  assert.equal(state.msg.goldenSet?.role, 'active');

  since = r.mark();
  await r.desired({ active: good, shadow: null, config: {}, configVersion: 2 });
  await r.alarm(since, true);
  assert.deepEqual(r.agent.health().alarms, []);
  assert.ok(!r.fleet.messages.slice(since).some((m) => m.kind === 'events' && (m.msg as EventMessage).kind === 'golden-set'), 'cleared without another run');
});
