/**
 * The rollout streams over real HTTP (the console's rollout screens): `GET /api/rollouts/events`
 * and `GET /api/rollouts/:id/events` send the current list / view at once and again as the engine
 * moves the rollout and its edges report, with each gate's value against its limit; refused
 * without a credential; 404 for an unknown rollout; ended at shutdown.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { register, startFleet } from './control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { openSse } from '../console/sse-reader.js';
import { waitFor } from '../helpers/wait-for.js';

const local = { name: 'inspect', version: '1' };

test('rollout streams: the list and one rollout live, stage by stage and edge by edge, with gate values', { timeout: 60_000 }, async (t) => {
  const fleet = await startFleet(t);
  await register(fleet.httpUrl, 'inspect', '2', fleet.admin);
  const viewer = await fleet.creds.headers('viewer');

  assert.equal((await openSse(`${fleet.httpUrl}/api/rollouts/events`, {})).status, 401);
  assert.equal((await openSse(`${fleet.httpUrl}/api/rollouts/ro-none/events`, viewer)).status, 404);

  const list = await openSse(`${fleet.httpUrl}/api/rollouts/events`, viewer);
  t.after(() => list.close());
  assert.equal(list.status, 200);
  assert.equal(list.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.deepEqual((await list.next((e) => e.event === 'rollouts')).data.rollouts, []);

  const edges = await Promise.all(
    // a2 holds its desired state: the full stage waits on it until it applies it.
    ['a1', 'a2'].map(async (id) => connectSimEdge(fleet.mqttUrl, { id, credential: await fleet.creds.enrollEdge(id), line: 'L1', localModel: local, follow: id === 'a1' })),
  );
  t.after(() => Promise.all(edges.map((e) => e.close())));
  await waitFor(async () => (await fleet.api('GET', '/api/edges')).body.edges.length === 2, 'both edges known');

  const created = await fleet.api('POST', '/api/rollouts', {
    model: 'inspect',
    version: '2',
    target: { lines: ['L1'] },
    stages: [{ name: 'canary', mode: 'live', select: { edges: ['a1'] }, gates: { maxP95LatencyMs: 500 }, promotion: 'manual' }, { name: 'full', mode: 'live' }],
    minSample: 2,
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id as string;

  // The list hears of it without asking.
  const listed = await list.next((e) => e.event === 'rollouts' && e.data.rollouts.some((r: { id: string }) => r.id === id));
  assert.equal(listed.data.rollouts[0].stageCount, 2);

  const one = await openSse(`${fleet.httpUrl}/api/rollouts/${id}/events`, viewer);
  t.after(() => one.close());
  assert.equal(one.status, 200);
  // The canary's latency gate waits for a figure; a1 runs v2 and reports its latency.
  const pending = await one.next((e) => e.data.rollout.stages[0].edges[0]?.reported === 'inspect@2');
  assert.equal(pending.data.rollout.stages[0].edges[0].edgeId, 'a1');
  assert.equal(pending.data.rollout.status, 'running');
  await edges[0]!.waitActive('inspect@2');
  await edges[0]!.sendTelemetry({ 'inspect@2': { frames: 20, defects: 0, latencyP95Ms: 40 } });
  // Then it waits for the manual promotion, the gate's value against its limit.
  const waiting = await one.next((e) => e.data.rollout.status === 'awaiting-promotion');
  assert.deepEqual(
    waiting.data.rollout.stages[0].gateResults.map((g: { gate: string; limit: number; value: number; status: string }) => [g.gate, g.value, g.limit, g.status]),
    [['maxP95LatencyMs', 40, 500, 'pass']],
  );

  // Promoted (by a release manager, over HTTP): the view moves to the full stage, a2 pending,
  // then converged once it applies v2.
  const rm = await fleet.creds.headers('release-manager');
  assert.equal((await fetch(`${fleet.httpUrl}/api/rollouts/${id}/promote`, { method: 'POST', headers: rm })).status, 200);
  const full = await one.next((e) => e.data.rollout.stageIndex === 1 && e.data.rollout.stages[1].edges.some((x: { edgeId: string; status: string }) => x.edgeId === 'a2' && x.status === 'pending'));
  assert.equal(full.data.rollout.stages[0].status, 'promoted');
  await edges[1]!.waitDesired((d) => d.active?.version === '2');
  edges[1]!.applyDesired();
  const done = await one.next((e) => e.data.rollout.status === 'completed');
  assert.deepEqual(
    done.data.rollout.stages[1].edges.map((x: { edgeId: string; reported: string }) => [x.edgeId, x.reported]).sort(),
    [
      ['a1', 'inspect@2'],
      ['a2', 'inspect@2'],
    ],
  );
  await list.next((e) => e.event === 'rollouts' && e.data.rollouts.some((r: { id: string; status: string }) => r.id === id && r.status === 'completed'));

  // An edge going offline changes the view (its online flag) without a rollout save.
  await edges[0]!.close();
  await one.next((e) => e.data.rollout.stages[1].edges.some((x: { edgeId: string; online: boolean }) => x.edgeId === 'a1' && !x.online));

  await fleet.fm.close();
  await Promise.all([one.ended, list.ended]);
});
