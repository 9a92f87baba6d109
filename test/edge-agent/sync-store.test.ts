/**
 * Store and forward at the edge (issue 5): batches and state name the result store, acks for
 * another store are ignored, acks without one (older fleets) still count, and the catch-up cap
 * holds the send rate. Real aedes broker, real agent, a fake fleet that acks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { performance } from 'node:perf_hooks';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { openResultStore, type NewResult } from '../../edge-agent/result-store.js';
import { request } from 'undici';
import { generatePartImage } from '../../models/fixtures.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { waitFor } from '../helpers/wait-for.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();
const EDGE = 'edge-test';

const backlogRow = (i: number): NewResult => ({
  ts: Date.now() - 1_000_000 + i,
  camera: 'cam1',
  source: 'folder',
  model: 'demo@1',
  verdict: 'ok',
  label: 'good',
  score: 0.1,
  latencyMs: 5,
});

/** An agent whose results.db already holds `backlog` unsynced results (as after an outage). */
async function agentWithBacklog(t: import('node:test').TestContext, backlog: number, sync: Record<string, number>) {
  const dir = await tempDir(t);
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  const config = edgeConfig(dir, await modelDir, {
    fleet: { mqttUrl: broker.url },
    sync: { intervalMs: 100, ackTimeoutMs: 5000, ...sync },
    telemetry: { intervalMs: 60_000 },
  });
  // Seeded fast (NORMAL); the agent reopens the file with FULL.
  const seed = openResultStore(config.dataDir, { durability: 'normal' });
  for (let i = 1; i <= backlog; i++) seed.append(backlogRow(i));
  const storeId = seed.storeId!;
  seed.close();
  const agent = createEdgeAgent(config, { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 500 });
  t.after(async () => {
    await agent.close();
    await fleet.close();
    await broker.close();
  });
  return { agent, fleet, broker, storeId };
}

test('state and every batch name the store; acks for another store are ignored, acks without one count', async (t) => {
  const { agent, fleet, storeId } = await agentWithBacklog(t, 0, { batchSize: 5 });
  fleet.dropResults = Number.POSITIVE_INFINITY; // this fleet stores nothing: acks come from the test
  const { httpUrl } = await agent.start();
  const state = await fleet.next('state', (m) => m.msg.online);
  assert.equal(state.msg.storeId, storeId);
  assert.equal(agent.health().storeId, storeId);

  const ack = (body: { ackSeq: number; storeId?: string }) =>
    fleet.client.publishAsync(edgeTopic(EDGE, 'ack'), encodeMessage(envelope('ack', EDGE, body)), { qos: 1 });
  for (let i = 0; i < 3; i++) {
    const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: await generatePartImage({ seed: 60 + i, format: 'jpeg' }), headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  }
  // The old store's ack (a wiped database's predecessor) must not move ours.
  await ack({ ackSeq: 3, storeId: 'someOtherStore123' });
  await ack({ ackSeq: 1, storeId });
  await waitFor(() => agent.health().ackedSeq === 1, 'ack for our store');
  await ack({ ackSeq: 2 });
  await waitFor(() => agent.health().ackedSeq === 2, 'ack from a fleet without storeIds');
  assert.equal(agent.health().ackedSeq, 2, 'the foreign ack of 3 was ignored');
  await ack({ ackSeq: 3, storeId });
  await waitFor(() => agent.health().ackedSeq === 3, 'the last ack');
});

test('a backlog is sent in batches of batchSize, each naming the store', async (t) => {
  const backlog = 3000;
  const { agent, fleet, storeId } = await agentWithBacklog(t, backlog, { batchSize: 250, window: 4, maxResultsPerSecond: 4000 });
  const t0 = performance.now();
  await agent.start();
  await waitFor(() => agent.health().ackedSeq === backlog, 'backlog synced', 20_000);
  const seconds = (performance.now() - t0) / 1000;
  // The burst (one second's worth) covers this whole backlog: it goes at once, in batches.
  assert.ok(fleet.batches.every((b) => b.count <= 250));
  assert.ok(fleet.batches.every((b) => b.fromSeq >= 1));
  const batches = fleet.messages.filter((m) => m.kind === 'results');
  assert.ok(batches.every((m) => (m.msg as { storeId?: string }).storeId === storeId), 'every batch names the store');
  assert.equal(fleet.contiguous, backlog);
  t.diagnostic(`3000 results in ${seconds.toFixed(2)} s (cap 4000/s, one second of burst)`);
});

test('the cap paces a backlog larger than its burst', async (t) => {
  const backlog = 3000;
  const { agent } = await agentWithBacklog(t, backlog, { batchSize: 500, window: 2, maxResultsPerSecond: 1000 });
  await agent.start();
  const t0 = performance.now();
  await waitFor(() => agent.health().ackedSeq > 0, 'first ack', 20_000);
  await waitFor(() => agent.health().ackedSeq === backlog, 'backlog synced', 20_000);
  const seconds = (performance.now() - t0) / 1000;
  // 1000 of burst, then 1000/s: the last batch can go no earlier than ~1.5 s after the first.
  assert.ok(seconds >= 1.2, `3000 results at 1000/s took only ${seconds.toFixed(2)} s`);
  t.diagnostic(`3000 results at a cap of 1000/s: ${seconds.toFixed(2)} s`);
});
