import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connectAsync } from 'mqtt';
import { request } from 'undici';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { generatePartImage } from '../../models/fixtures.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { waitFor } from '../helpers/wait-for.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet, type FakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger, type TestBroker } from './fixtures.js';

const modelDir = useDemoModel();
const EDGE = 'edge-test';
const CLIENT_ID = EDGE;

interface Rig {
  broker: TestBroker;
  fleet: FakeFleet;
  agent: EdgeAgent;
  httpUrl: string;
  inspect(seed: number): Promise<number>;
}

async function rig(t: TestContext, sync: Record<string, number> = {}, reconnectPeriodMs = 100): Promise<Rig> {
  const dir = await tempDir(t);
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  const agent = createEdgeAgent(
    edgeConfig(dir, await modelDir, {
      fleet: { mqttUrl: broker.url },
      sync: { batchSize: 2, window: 1, intervalMs: 100, ackTimeoutMs: 5000, ...sync },
      telemetry: { intervalMs: 60_000 },
    }),
    { logger: testLogger(), reconnectPeriodMs, finalSyncMs: 1000 },
  );
  const r: Rig = {
    broker,
    fleet,
    agent,
    httpUrl: '',
    async inspect(seed) {
      const img = await generatePartImage({ seed, defect: seed % 3 === 0 ? 'scratch' : null, format: 'jpeg' });
      const res = await request(`${r.httpUrl}/inspect`, { method: 'POST', body: img, headers: { 'content-type': 'image/jpeg' } });
      const body = (await res.body.json()) as { seq: number };
      assert.equal(res.statusCode, 200);
      return body.seq;
    },
  };
  // Torn down agent first (so it can say offline), then the fleet, then the broker.
  t.after(async () => {
    await agent.close();
    await fleet.close();
    await r.broker.close();
  });
  r.httpUrl = (await agent.start()).httpUrl;
  await fleet.next('state', (m) => m.msg.online);
  return r;
}

const acked = (agent: EdgeAgent, seq: number) => waitFor(() => agent.health().ackedSeq >= seq, `ack of seq ${seq}`, 15_000);

test('results reach the fleet in batches, acks are recorded, and the state is retained', async (t) => {
  const { fleet, agent, inspect, broker } = await rig(t);
  const state = await fleet.next('state', (m) => m.msg.online);
  assert.equal(state.msg.edgeId, EDGE);
  assert.equal(state.msg.line, 'line-T');
  assert.deepEqual(state.msg.cameras, ['cam1', 'cam2']);
  assert.equal(state.msg.active?.name, 'osprey-demo-anomaly');
  // The config's own model has no archive sha256 (issue 4: sha256 names fleet artifacts only).
  assert.equal(state.msg.active?.sha256, undefined);
  assert.equal(state.msg.previous, null);
  assert.equal(typeof state.msg.agentVersion, 'string');

  const seqs: number[] = [];
  for (let i = 1; i <= 5; i++) seqs.push(await inspect(i));
  assert.deepEqual(seqs, [1, 2, 3, 4, 5]);
  await acked(agent, 5);
  assert.deepEqual([...fleet.results.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5]);
  assert.ok(fleet.batches.every((b) => b.count <= 2 && b.toSeq - b.fromSeq + 1 === b.count), 'batches of at most batchSize');
  assert.equal(fleet.results.get(3)!.verdict, 'defect');
  assert.equal(agent.health().pendingResults, 0);

  // A late subscriber gets the retained state.
  const late = await startFakeFleet(broker.url);
  t.after(() => late.close());
  const retained = await late.next('state');
  assert.equal(retained.retain, true);
  assert.equal(retained.msg.online, true);
});

test('invalid or foreign messages on the edge topics are dropped and the link carries on', async (t) => {
  const { fleet, agent, inspect } = await rig(t);
  const ackTopic = edgeTopic(EDGE, 'ack');
  await fleet.client.publishAsync(ackTopic, 'not json at all', { qos: 1 });
  await fleet.client.publishAsync(ackTopic, JSON.stringify({ v: 1, ackSeq: 'ten' }), { qos: 1 });
  // A valid ack, but addressed to another edge: must not move ours.
  await fleet.client.publishAsync(ackTopic, encodeMessage(envelope('ack', 'other-edge', { ackSeq: 50 })), { qos: 1 });
  await fleet.client.publishAsync(edgeTopic(EDGE, 'desired'), '{"v":1}', { qos: 1 });
  assert.equal(await inspect(1), 1);
  await acked(agent, 1);
  assert.equal(agent.health().ackedSeq, 1);
  assert.equal(agent.health().status, 'ok');
  assert.equal(agent.health().fleet.messagesDropped, 4);
});

test('a batch that is never acked is sent again after ackTimeoutMs', async (t) => {
  const { fleet, agent, inspect } = await rig(t, { ackTimeoutMs: 300 });
  fleet.dropResults = 1;
  assert.equal(await inspect(1), 1);
  await acked(agent, 1);
  assert.deepEqual(fleet.batches, [{ fromSeq: 1, toSeq: 1, count: 1 }]);
});

test('results made while the broker is down are delivered once it is back', async (t) => {
  // A short ack timeout covers the race where the edge reconnects before the fleet resubscribes.
  const r = await rig(t, { ackTimeoutMs: 1000 });
  const { agent, inspect } = r;
  assert.equal(await inspect(1), 1);
  await acked(agent, 1);

  const port = r.broker.port;
  await r.broker.close();
  await waitFor(() => !agent.health().fleet.connected, 'link down', 10_000);

  // Inspection never waits on the link: the frames are answered and stored.
  for (let i = 2; i <= 6; i++) assert.equal(await inspect(i), i);
  assert.equal(agent.health().pendingResults, 5);

  r.broker = await startBroker(port);
  const resumed = r.fleet.messages.length;
  await r.fleet.next('state', (m) => m.msg.online, { since: resumed });
  await acked(agent, 6);
  assert.deepEqual([...r.fleet.results.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6]);
  assert.equal(agent.health().pendingResults, 0);
});

test('an edge that vanishes is reported offline by its will; one that closes says so itself', async (t) => {
  const r = await rig(t);
  const mark = r.fleet.messages.length;
  assert.ok(r.broker.dropClient(CLIENT_ID));
  const will = await r.fleet.next('state', (m) => !m.msg.online, { since: mark });
  assert.equal(will.msg.line, 'line-T');
  // mqtt.js reconnects; the edge says online again.
  await r.fleet.next('state', (m) => m.msg.online, { since: mark });

  assert.equal(await r.inspect(1), 1);
  const beforeClose = r.fleet.messages.length;
  await r.agent.close();
  await r.agent.close(); // idempotent
  const offline = await r.fleet.next('state', (m) => !m.msg.online, { since: beforeClose });
  assert.equal(offline.msg.lastSeq, 1);
  assert.equal(offline.msg.ackedSeq, 1, 'the final sync delivered the last result');
  await r.fleet.next('events', (m) => m.msg.kind === 'stopping');
  // Retained: whoever looks later sees the edge offline.
  const late = await startFakeFleet(r.broker.url);
  t.after(() => late.close());
  const retained = await late.next('state');
  assert.deepEqual([retained.retain, retained.msg.online], [true, false]);
});

test('a retained ack, or the part of an ack above every seq sent, never marks a result acked; valid acks still work', async (t) => {
  // Window 1, batch 1: with no ack, seq 2 is stored but never sent. A slow reconnect leaves time
  // to leave a retained ack on the topic while the edge is away.
  const { fleet, agent, inspect, broker } = await rig(t, { batchSize: 1, window: 1, ackTimeoutMs: 60_000 }, 1000);
  const ackTopic = edgeTopic(EDGE, 'ack');
  const ack = (ackSeq: number) => encodeMessage(envelope('ack', EDGE, { ackSeq }));
  fleet.dropResults = 1000;
  // Sees what the edge sends, dropped or not.
  const observer = await connectAsync(broker.url, { clientId: 'ack-observer', reconnectPeriod: 0 });
  t.after(() => observer.endAsync(true));
  const sent = new Set<number>();
  observer.on('message', (_topic, payload) => sent.add((JSON.parse(payload.toString()) as { toSeq: number }).toSeq));
  await observer.subscribeAsync(edgeTopic(EDGE, 'results'), { qos: 1 });

  assert.equal(await inspect(1), 1);
  assert.equal(await inspect(2), 2);
  await waitFor(() => sent.has(1), 'seq 1 sent');
  assert.equal(sent.has(2), false);
  // Above everything issued: only seq 1 left the edge, so only seq 1 may count as acked.
  await fleet.client.publishAsync(ackTopic, ack(99), { qos: 1 });
  await waitFor(() => agent.health().fleet.acksRejected === 1, 'the ack above the sent seqs counted', 5000);
  assert.equal(agent.health().ackedSeq, 1);
  await waitFor(() => sent.has(2), 'seq 2 sent once seq 1 was acked');

  // A retained ack, replayed by the broker when the edge subscribes again, is no answer to anything.
  const mark = fleet.messages.length;
  assert.ok(broker.dropClient(CLIENT_ID));
  await fleet.next('state', (m) => !m.msg.online, { since: mark });
  await fleet.client.publishAsync(ackTopic, ack(2), { qos: 1, retain: true });
  await fleet.next('state', (m) => m.msg.online, { since: mark });
  await waitFor(() => agent.health().fleet.acksRejected === 2, 'the retained ack counted', 5000);
  assert.equal(agent.health().ackedSeq, 1);

  // The fleet's own (live) ack for what was sent still works.
  await fleet.client.publishAsync(ackTopic, '', { qos: 1, retain: true });
  await fleet.client.publishAsync(ackTopic, ack(2), { qos: 1 });
  await acked(agent, 2);
  assert.equal(agent.health().fleet.acksRejected, 2);
  assert.equal(agent.health().pendingResults, 0);
});
