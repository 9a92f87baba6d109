/**
 * The result quota at the agent (issue 5): past it the line still gets verdicts (seq 0), the
 * fleet gets an alert event and a telemetry alarm with the counts, and storing resumes once acks
 * make room. Real broker, real model, a fake fleet that can withhold its acks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { generatePartImage } from '../../models/fixtures.js';
import { waitFor } from '../helpers/wait-for.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();

test('a full result store keeps answering, counts what it did not store, alarms, and recovers', async (t) => {
  const dir = await tempDir(t);
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  const agent = createEdgeAgent(
    edgeConfig(dir, await modelDir, {
      fleet: { mqttUrl: broker.url },
      sync: { batchSize: 50, intervalMs: 100, ackTimeoutMs: 300 },
      retention: { maxRows: 5 },
      telemetry: { intervalMs: 100 },
    }),
    { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(async () => {
    await agent.close();
    await fleet.close();
    await broker.close();
  });
  fleet.dropResults = Number.POSITIVE_INFINITY; // the fleet is unreachable for results: nothing is acked
  const { httpUrl } = await agent.start();
  const inspect = async (seed: number, defect = false) => {
    const body = await generatePartImage({ seed, defect: defect ? 'scratch' : null, format: 'jpeg' });
    const res = await request(`${httpUrl}/inspect`, { method: 'POST', body, headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.statusCode, 200, 'the line always gets its verdict');
    return (await res.body.json()) as { seq: number; verdict: string };
  };

  const answers = [];
  for (let i = 0; i < 8; i++) answers.push(await inspect(70 + i, i === 6));
  assert.deepEqual(answers.map((a) => a.seq), [1, 2, 3, 4, 5, 0, 0, 0]);
  assert.equal(answers[6]!.verdict, 'defect', 'a verdict past the quota is still a real verdict');
  const h = agent.health();
  assert.deepEqual(h.alarms, ['result-quota']);
  assert.equal(h.storage?.notStored, 3);
  assert.equal(h.storage?.notStoredDefects, 1);
  assert.equal(h.lastSeq, 5);

  const alert = await fleet.next('events', (m) => m.msg.kind === 'alert' && m.msg.data?.alarm === 'result-quota');
  assert.equal(alert.msg.level, 'error');
  const tele = await fleet.next('telemetry', (m) => (m.msg.alarms ?? []).includes('result-quota') && m.msg.storage?.notStored === 3);
  assert.equal(tele.msg.storage?.notStoredDefects, 1);

  // The link is back: acks arrive, acked rows make room, storing resumes with the next seq.
  fleet.dropResults = 0;
  await waitFor(() => agent.health().ackedSeq === 5, 'backlog acked');
  assert.equal((await inspect(90)).seq, 6, 'seqs stay gap-free');
  assert.deepEqual(agent.health().alarms, []);
  const cleared = await fleet.next('events', (m) => m.msg.kind === 'alert' && m.msg.data?.cleared === true);
  assert.equal(cleared.msg.data?.notStored, 3);
  await waitFor(() => agent.health().ackedSeq === 6, 'the new result acked');
  assert.deepEqual([...fleet.results.keys()].sort((a, b) => a - b), [1, 2, 3, 4, 5, 6], 'what was stored is delivered; nothing else claims a seq');
});
