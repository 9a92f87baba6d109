/**
 * The rollout engine against a real fleet manager (SQLite, embedded broker, HTTP) with edges
 * played by mqtt.js clients that apply their desired states: shadow agreement, promotion, gates
 * that fail (defect rate, a refusing edge, a silent edge), pause/resume/abort, rollback of a
 * rollout and of a line, and a restart in the middle of a rollout.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connectSimEdge, type SimEdge } from '../helpers/sim-edge.js';
import { waitFor } from '../helpers/wait-for.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { register, startFleet, type TestFleet } from './control-helpers.js';
import { tempDir } from './helpers.js';

const V1 = { name: 'inspect', version: '1' };
const V2 = 'inspect@2';

async function fleetWithEdges(t: TestContext, edges: [string, string][], opts: Parameters<typeof startFleet>[1] = {}) {
  const f = await startFleet(t, opts);
  const v1 = await register(f.httpUrl, 'inspect', '1', f.admin);
  const v2 = await register(f.httpUrl, 'inspect', '2', f.admin);
  const sims = new Map<string, SimEdge>();
  for (const [id, line] of edges) {
    const e = await connectSimEdge(f.mqttUrl, { id, credential: await f.creds.enrollEdge(id), line, localModel: V1 });
    t.after(() => e.close());
    sims.set(id, e);
    await e.waitDesired(() => true); // the fleet knows it
  }
  return { f, v1, v2, sims };
}

/** `n` results as the edge's active model, `defects` of them defects, optionally with a shadow outcome. */
function records(n: number, model: string, defects: number, shadow?: (i: number) => ResultRecord['shadow']): Omit<ResultRecord, 'seq'>[] {
  return Array.from({ length: n }, (_, i) => ({
    ts: Date.now(),
    camera: 'cam1',
    source: 'simulated' as const,
    model,
    verdict: i < defects ? ('defect' as const) : ('ok' as const),
    label: i < defects ? 'anomaly' : 'good',
    score: i < defects ? 0.9 : 0.1,
    latencyMs: 5,
    ...(shadow && { shadow: shadow(i) }),
  }));
}

async function rolloutWhere(f: TestFleet, id: string, what: string, pred: (r: any) => boolean, timeoutMs = 10_000) {
  return waitFor(async () => {
    const r = (await f.api('GET', `/api/rollouts/${id}`)).body;
    return pred(r) ? r : undefined;
  }, what, timeoutMs);
}

test('rollouts: a shadow stage reports agreement, passes its gates and promotes to live on the line', { timeout: 30_000 }, async (t) => {
  const { f, sims } = await fleetWithEdges(t, [['a1', 'A'], ['a2', 'A'], ['b1', 'B']]);
  const [a1, a2, b1] = ['a1', 'a2', 'b1'].map((id) => sims.get(id)!);
  const created = await f.api('POST', '/api/rollouts', {
    model: 'inspect',
    version: '2',
    target: { lines: ['A'] },
    stages: [
      { name: 'shadow-a1', select: { edges: ['a1'] }, mode: 'shadow', gates: { minFrames: 20, minAgreement: 0.9, maxDefectRateChange: 0.1, maxErrorRate: 0.1 } },
      { name: 'line-A', mode: 'live', soakSeconds: 0 },
    ],
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id as string;
  assert.equal(created.body.status, 'running');
  assert.deepEqual(created.body.stages[0].edges.map((e: { edgeId: string }) => e.edgeId), ['a1']);

  // a1 runs the candidate in shadow beside its active model.
  const d = await a1.waitDesired((x) => x.shadow?.version === '2');
  assert.equal(d.active?.version ?? null, null, 'active stays as it is');
  await waitFor(async () => (await f.api('GET', `/api/rollouts/${id}`)).body.stages[0].edges[0].status === 'reporting', 'a1 reporting');

  // 20 frames: the candidate agrees on 19, and finds the same defect rate (2 each side, swapped on one frame).
  const shadow = (i: number): ResultRecord['shadow'] => {
    const defect = i === 0 || i === 2; // active: 0 and 1 are defects
    return { model: V2, verdict: defect ? 'defect' : 'ok', label: defect ? 'anomaly' : 'good', score: defect ? 0.8 : 0.2, latencyMs: 6 };
  };
  await a1.sendResults(records(10, 'inspect@1', 2, shadow));
  const mid = (await f.api('GET', `/api/rollouts/${id}`)).body;
  assert.equal(mid.stages[0].status, 'running');
  await a1.sendResults(records(10, 'inspect@1', 0, () => ({ model: V2, verdict: 'ok', label: 'good', score: 0.1, latencyMs: 6 })));

  // Gates pass: stage 2 puts both line-A edges live; b1 (line B) is never touched.
  await a1.waitDesired((x) => x.active?.version === '2' && x.shadow === null);
  await a2.waitDesired((x) => x.active?.version === '2');
  const done = await rolloutWhere(f, id, 'completed', (r) => r.status === 'completed');
  const s0 = done.stages[0];
  assert.equal(s0.status, 'passed');
  assert.equal(s0.metrics.frames, 20);
  assert.equal(s0.metrics.agreement, 18 / 20);
  assert.equal(s0.metrics.defectRate, 2 / 20);
  assert.equal(s0.metrics.baselineDefectRate, 2 / 20);
  assert.equal(s0.metrics.defectRateChange, 0);
  assert.deepEqual(s0.gateResults.map((g: { gate: string; status: string }) => [g.gate, g.status]), [
    ['minFrames', 'pass'],
    ['maxErrorRate', 'pass'],
    ['minAgreement', 'pass'],
    ['maxDefectRateChange', 'pass'],
  ]);
  assert.equal(done.stages[1].status, 'passed');
  assert.deepEqual(done.members.map((m: { edgeId: string; previous: string }) => [m.edgeId, m.previous]).sort(), [['a1', 'inspect@1'], ['a2', 'inspect@1']]);
  assert.equal(b1.desired!.active, null);
  assert.equal(b1.desired!.shadow, null);

  const list = await f.api('GET', '/api/rollouts');
  assert.deepEqual(list.body.rollouts.map((r: { id: string; status: string }) => [r.id, r.status]), [[id, 'completed']]);
});

test('rollouts: a live candidate whose defect rate jumps trips its gate and is rolled back', { timeout: 30_000 }, async (t) => {
  const { f, sims } = await fleetWithEdges(t, [['a1', 'A'], ['a2', 'A']]);
  const a1 = sims.get('a1')!;
  // History: 40 frames at 10 % defects under inspect@1.
  await a1.sendResults(records(40, 'inspect@1', 4));
  const created = await f.api('POST', '/api/rollouts', {
    model: 'inspect',
    version: '2',
    target: { edges: ['a1', 'a2'] },
    stages: [
      { name: 'canary', select: { edges: ['a1'] }, mode: 'live', gates: { minFrames: 20, maxDefectRateChange: 0.2 } },
      { name: 'rest', mode: 'live' },
    ],
    onFailure: 'rollback',
  });
  const id = created.body.id as string;
  const d = await a1.waitDesired((x) => x.active?.version === '2');
  assert.equal(d.active!.url, `${f.httpUrl}/api/artifacts/${d.active!.sha256}`);
  await a1.waitActive(V2);
  // Every frame a defect under the candidate.
  await a1.sendResults(records(20, V2, 20));

  // Back to its own model (null: the one in its config), which it kept loaded as previous.
  await a1.waitDesired((x) => x.active === null);
  await a1.waitActive('inspect@1');
  const r = await rolloutWhere(f, id, 'rolled back', (x) => x.status === 'rolled-back');
  assert.equal(r.stages[0].status, 'failed');
  assert.match(r.reason, /stage canary: gate maxDefectRateChange 0\.9 > 0\.2/);
  assert.equal(r.stages[0].metrics.baselineDefectRate, 0.1);
  assert.equal(r.stages[0].metrics.defectRate, 1);
  // a2 was never moved.
  assert.equal(sims.get('a2')!.desired!.active, null);
  assert.deepEqual(Object.keys(r.stages[1].edges), []);
  // A rolled-back rollout cannot be acted on again.
  assert.equal((await f.api('POST', `/api/rollouts/${id}/resume`)).status, 409);
});

test('rollouts: an edge that refuses the candidate fails the stage; manual promotion waits for a person', { timeout: 30_000 }, async (t) => {
  const { f, sims } = await fleetWithEdges(t, [['a1', 'A'], ['b1', 'B']]);
  const [a1, b1] = [sims.get('a1')!, sims.get('b1')!];

  // b1 downloads the candidate and refuses it (a bad signature): the rollout is rolled back at once.
  const r1 = (await f.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { edges: ['b1'] }, stages: [{ mode: 'live', gates: { minFrames: 1000 } }] })).body;
  b1.follow = false;
  await b1.waitDesired((x) => x.active?.version === '2');
  await b1.sendEvent('model-failed', 'inspect@2 refused: not signed by the fleet key', { name: 'inspect', version: '2', code: 'OSP_ERR_MODEL_SIGNATURE', reason: 'not signed by the fleet key' });
  await b1.waitDesired((x) => x.active === null);
  const failed = await rolloutWhere(f, r1.id, 'rolled back', (x) => x.status === 'rolled-back');
  assert.match(failed.reason, /edge b1 refused the candidate: model-failed OSP_ERR_MODEL_SIGNATURE/);
  assert.equal(failed.stages[0].edges[0].status, 'failed');

  // Shadow on a1 with error-rate and p95 gates from telemetry, then a person promotes.
  const r2 = (
    await f.api('POST', '/api/rollouts', {
      model: 'inspect',
      version: '2',
      target: { edges: ['a1'] },
      stages: [
        { name: 'shadow', mode: 'shadow', gates: { minFrames: 5, maxErrorRate: 0.2, maxP95LatencyMs: 50 }, promotion: 'manual' },
        { name: 'live', mode: 'live' },
      ],
    })
  ).body;
  await a1.waitDesired((x) => x.shadow?.version === '2');
  await rolloutWhere(f, r2.id, 'a1 reporting', (x) => x.stages[0].edges[0]?.status === 'reporting');
  await a1.sendResults(records(10, 'inspect@1', 0, (i) => (i === 0 ? { model: V2, error: 'OSP_ERR_INFERENCE' } : { model: V2, verdict: 'ok', label: 'good', score: 0.1, latencyMs: 7 })));
  const waiting = await rolloutWhere(f, r2.id, 'waiting for telemetry', (x) => x.stages[0].reason?.includes('maxP95LatencyMs'));
  assert.equal(waiting.stages[0].metrics.errorRate, 0.1);
  await a1.sendTelemetry({ 'inspect@1': { frames: 10, defects: 0 }, [V2]: { frames: 10, defects: 0, errors: 1, latencyP95Ms: 20 } });
  const awaiting = await rolloutWhere(f, r2.id, 'awaiting promotion', (x) => x.status === 'awaiting-promotion');
  assert.equal(awaiting.stages[0].status, 'awaiting-promotion');
  assert.equal(awaiting.stages[0].metrics.p95LatencyMs, 20);
  assert.equal(awaiting.stages[0].edges[0].desired, V2);
  assert.equal(awaiting.stages[0].edges[0].reported, V2);
  assert.equal(a1.desired!.active, null, 'not live before a person says so');

  const promoted = await f.api('POST', `/api/rollouts/${r2.id}/promote`);
  assert.equal(promoted.status, 200);
  assert.equal(promoted.body.stages[0].status, 'promoted');
  await a1.waitDesired((x) => x.active?.version === '2' && x.shadow === null);
  await rolloutWhere(f, r2.id, 'completed', (x) => x.status === 'completed');
});

test('rollouts: a stage awaiting promotion is still watched for failures', { timeout: 30_000 }, async (t) => {
  const { f, sims } = await fleetWithEdges(t, [['a1', 'A']]);
  const a1 = sims.get('a1')!;
  const r = (
    await f.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { edges: ['a1'] }, stages: [{ mode: 'shadow', promotion: 'manual' }, { mode: 'live' }] })
  ).body;
  await rolloutWhere(f, r.id, 'awaiting promotion', (x) => x.status === 'awaiting-promotion');
  assert.equal(a1.desired!.shadow?.version, '2');
  // The edge drops the shadow on its own (errors on its first frames): the stage fails after all.
  await a1.sendEvent('model-rolled-back', 'shadow inspect@2 dropped', { name: 'inspect', version: '2', code: 'OSP_ERR_MODEL_PROBATION' });
  const failed = await rolloutWhere(f, r.id, 'rolled back', (x) => x.status === 'rolled-back');
  assert.equal(failed.stages[0].status, 'failed');
  assert.match(failed.reason, /OSP_ERR_MODEL_PROBATION/);
  await a1.waitDesired((x) => x.shadow === null);
});

test('rollouts: a silent edge counts against its stage; pause, resume and abort', { timeout: 30_000 }, async (t) => {
  const { f, sims } = await fleetWithEdges(t, [['a1', 'A'], ['a2', 'A']]);
  const a2 = sims.get('a2')!;
  a2.follow = false; // its download never finishes
  // Edges heartbeat with telemetry; a2 is silent all the same: it never reports the candidate.
  const heartbeat = setInterval(() => {
    for (const e of sims.values()) e.sendTelemetry({}).catch(() => undefined); // closed at the end
  }, 200);
  t.after(() => clearInterval(heartbeat));

  const r = (
    await f.api('POST', '/api/rollouts', {
      model: 'inspect',
      version: '2',
      target: { lines: ['A'] },
      stages: [{ name: 'all', mode: 'live', soakSeconds: 600 }],
      onFailure: 'pause',
      silenceTimeoutSeconds: 1,
    })
  ).body;
  // Overlapping targets are refused while this one owns the line.
  const overlap = await f.api('POST', '/api/rollouts', { model: 'inspect', version: '1', target: { edges: ['a1'] }, stages: [{ mode: 'live' }] });
  assert.equal(overlap.status, 409);

  const paused = await rolloutWhere(f, r.id, 'paused', (x) => x.status === 'paused');
  assert.match(paused.reason, /edge a2 silent for more than 1 s/);
  const progress = Object.fromEntries(paused.stages[0].edges.map((e: { edgeId: string; status: string }) => [e.edgeId, e.status]));
  assert.deepEqual(progress, { a1: 'reporting', a2: 'silent' });
  // Paused: the edges keep what they were given.
  assert.equal(sims.get('a1')!.desired!.active?.version, '2');

  assert.equal((await f.api('POST', `/api/rollouts/${r.id}/pause`)).status, 409);
  a2.follow = true;
  a2.applyDesired();
  const resumed = await f.api('POST', `/api/rollouts/${r.id}/resume`);
  assert.equal(resumed.body.status, 'running');
  assert.equal(resumed.body.stages[0].attempt, 2);
  const soaking = await rolloutWhere(
    f,
    r.id,
    'both reporting, soaking',
    (x) => x.stages[0].reason?.startsWith('soaking') && x.stages[0].edges.every((e: { status: string }) => e.status === 'reporting'),
  );
  assert.equal(soaking.stages[0].metrics.reporting, 2);

  const manual = await f.api('POST', `/api/rollouts/${r.id}/pause`);
  assert.equal(manual.body.status, 'paused');
  assert.equal(manual.body.reason, 'paused by a person');
  const aborted = await f.api('POST', `/api/rollouts/${r.id}/abort`);
  assert.equal(aborted.body.status, 'aborted');
  assert.equal(aborted.body.stages[0].status, 'stopped');
  // Aborting leaves live edges where they are; rollback returns them.
  const rolled = await f.api('POST', `/api/rollouts/${r.id}/rollback`);
  assert.equal(rolled.body.status, 'rolled-back');
  for (const id of ['a1', 'a2']) await sims.get(id)!.waitActive('inspect@1');

  assert.equal((await f.api('POST', '/api/rollouts/ro-nothing/promote')).status, 404);
  assert.equal((await f.api('POST', `/api/rollouts/${r.id}/explode`)).status, 400);
});

test('rollouts: bad requests are refused with a reason', async (t) => {
  const f = await startFleet(t);
  await register(f.httpUrl, 'inspect', '2', f.admin);
  const post = (body: unknown) => f.api('POST', '/api/rollouts', body);
  const base = { model: 'inspect', version: '2', target: { all: true }, stages: [{ mode: 'live' }] };
  assert.equal((await post({ ...base, version: '3' })).status, 404);
  const two = await post({ ...base, target: { all: true, lines: ['A'] } });
  assert.equal(two.status, 400);
  assert.match(two.body.message, /exactly one of edges, lines, all/);
  const sel = await post({ ...base, stages: [{ mode: 'live', select: { line: 'A', percent: 10 } }] });
  assert.match(sel.body.message, /stages\/0\/select must have at most one/);
  const agree = await post({ ...base, stages: [{ mode: 'live', gates: { minAgreement: 0.9 } }] });
  assert.match(agree.body.message, /minAgreement needs mode shadow/);
  const schema = await post({ ...base, stages: [{ mode: 'canary' }] });
  assert.equal(schema.status, 400);
  assert.match(schema.body.message, /body\/stages\/0\/mode/);
  assert.equal((await post({ ...base, stages: [] })).status, 400);
  assert.equal((await f.api('POST', '/api/lines/nowhere/rollback')).status, 404);
});

test('rollouts: percent stages take nested shares of the target', { timeout: 30_000 }, async (t) => {
  const ids = Array.from({ length: 10 }, (_, i) => [`p${i}`, 'P'] as [string, string]);
  const { f } = await fleetWithEdges(t, ids);
  const r = (
    await f.api('POST', '/api/rollouts', {
      model: 'inspect',
      version: '2',
      target: { lines: ['P'] },
      stages: [
        { mode: 'live', select: { percent: 20 }, promotion: 'manual' },
        { mode: 'live', select: { percent: 50 }, promotion: 'manual' },
      ],
    })
  ).body;
  const first = (await rolloutWhere(f, r.id, 'stage 1 waits', (x) => x.status === 'awaiting-promotion')).stages[0].edges.map((e: { edgeId: string }) => e.edgeId);
  assert.equal(first.length, 2);
  await f.api('POST', `/api/rollouts/${r.id}/promote`);
  const second = (await rolloutWhere(f, r.id, 'stage 2 waits', (x) => x.status === 'awaiting-promotion' && x.stageIndex === 1)).stages[1].edges.map((e: { edgeId: string }) => e.edgeId);
  assert.equal(second.length, 5);
  for (const id of first) assert.ok(second.includes(id), `${id} of the 20 % is in the 50 %`);
});

test('rollouts: a fleet restart mid-rollout resumes from the stored state', { timeout: 30_000 }, async (t) => {
  const dataDir = await tempDir(t);
  const first = await startFleet(t, { dataDir });
  await register(first.httpUrl, 'inspect', '1', first.admin);
  await register(first.httpUrl, 'inspect', '2', first.admin);
  const a1Credential = await first.creds.enrollEdge('a1');
  let a1 = await connectSimEdge(first.mqttUrl, { id: 'a1', credential: a1Credential, line: 'A', localModel: V1 });
  const r = (
    await first.api('POST', '/api/rollouts', {
      model: 'inspect',
      version: '2',
      target: { edges: ['a1'] },
      stages: [
        { name: 'shadow', mode: 'shadow', gates: { minFrames: 10, minAgreement: 0.5 } },
        { name: 'live', mode: 'live', promotion: 'manual' },
      ],
    })
  ).body;
  await a1.waitDesired((x) => x.shadow?.version === '2');
  await rolloutWhere(first, r.id, 'a1 reporting', (x) => x.stages[0].edges[0]?.status === 'reporting');
  await a1.sendResults(records(6, 'inspect@1', 0, () => ({ model: V2, verdict: 'ok', label: 'good', score: 0.1, latencyMs: 3 })));
  await rolloutWhere(first, r.id, '6 frames counted', (x) => x.stages[0].edges[0]?.frames === 6);
  const lastSeq = a1.lastSeq;
  await a1.close();
  await first.fm.close();

  // A new process on the same data: the rollout, its counters and the edge's desired state come back.
  const second = await startFleet(t, { dataDir });
  a1 = await connectSimEdge(second.mqttUrl, { id: 'a1', credential: a1Credential, line: 'A', localModel: V1, lastSeq });
  t.after(() => a1.close());
  const d = await a1.waitDesired((x) => x.shadow?.version === '2');
  assert.equal(d.shadow!.url.startsWith(second.httpUrl), true, 'artifact URLs follow the new address');
  const resumed = (await second.api('GET', `/api/rollouts/${r.id}`)).body;
  assert.equal(resumed.status, 'running');
  assert.equal(resumed.stages[0].edges[0].frames, 6);
  await a1.sendResults(records(4, 'inspect@1', 0, () => ({ model: V2, verdict: 'ok', label: 'good', score: 0.1, latencyMs: 3 })));
  const waiting = await rolloutWhere(second, r.id, 'live stage waits', (x) => x.status === 'awaiting-promotion');
  assert.equal(waiting.stages[0].metrics.frames, 10);
  assert.equal(waiting.stages[0].status, 'passed');
  await second.api('POST', `/api/rollouts/${r.id}/promote`);
  await a1.waitDesired((x) => x.active?.version === '2');
});

test('rollouts: rolling back a line returns every edge to its previous version', { timeout: 30_000 }, async (t) => {
  const { f, v2, sims } = await fleetWithEdges(t, [['a1', 'A'], ['a2', 'A'], ['b1', 'B']]);
  const v3 = await register(f.httpUrl, 'inspect', '3', f.admin);
  const r = (await f.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { all: true }, stages: [{ mode: 'live' }] })).body;
  for (const e of sims.values()) await e.waitActive(V2);
  await rolloutWhere(f, r.id, 'completed', (x) => x.status === 'completed');
  const r3 = (await f.api('POST', '/api/rollouts', { model: 'inspect', version: '3', target: { lines: ['A'] }, stages: [{ mode: 'live' }] })).body;
  for (const id of ['a1', 'a2']) await sims.get(id)!.waitActive('inspect@3');
  await rolloutWhere(f, r3.id, 'completed', (x) => x.status === 'completed');

  const res = await f.api('POST', '/api/lines/A/rollback');
  assert.equal(res.status, 200);
  assert.deepEqual(res.body, {
    line: 'A',
    edges: [
      { edgeId: 'a1', from: 'inspect@3', to: V2 },
      { edgeId: 'a2', from: 'inspect@3', to: V2 },
    ],
    pausedRollouts: [],
  });
  for (const id of ['a1', 'a2']) {
    const d = await sims.get(id)!.waitDesired((x) => x.active?.sha256 === v2);
    assert.equal(d.active!.version, '2');
    await sims.get(id)!.waitActive(V2);
  }
  assert.equal(sims.get('b1')!.desired!.active!.sha256, v2, 'line B was not on inspect@3 and is left alone');

  // Rolling back again swaps back: "previous" is whatever ran before the last change.
  const again = await f.api('POST', '/api/lines/A/rollback');
  assert.deepEqual(again.body.edges.map((e: { to: string }) => e.to), ['inspect@3', 'inspect@3']);
  await sims.get('a1')!.waitDesired((x) => x.active?.sha256 === v3);
});

test('rollouts: rolling back a line in a rollout takes its edges out and pauses the rollout', { timeout: 30_000 }, async (t) => {
  const { f, sims } = await fleetWithEdges(t, [['a1', 'A'], ['b1', 'B']]);
  const r = (
    await f.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { all: true }, stages: [{ mode: 'live', soakSeconds: 600 }] })
  ).body;
  for (const e of sims.values()) await e.waitActive(V2);
  const res = await f.api('POST', '/api/lines/A/rollback');
  // to null: the model in a1's own config, which it kept loaded.
  assert.deepEqual(res.body, { line: 'A', edges: [{ edgeId: 'a1', from: V2, to: null }], pausedRollouts: [r.id] });
  await sims.get('a1')!.waitActive('inspect@1');
  const paused = (await f.api('GET', `/api/rollouts/${r.id}`)).body;
  assert.equal(paused.status, 'paused');
  assert.equal(paused.reason, 'line A rolled back by hand');
  assert.deepEqual(paused.members.map((m: { edgeId: string; mode: string }) => [m.edgeId, m.mode]).sort(), [['a1', 'removed'], ['b1', 'live']]);
  // Resuming does not take a1 back: people took its line over.
  await f.api('POST', `/api/rollouts/${r.id}/resume`);
  await f.api('POST', `/api/rollouts/${r.id}/promote`);
  await rolloutWhere(f, r.id, 'completed', (x) => x.status === 'completed');
  assert.equal(sims.get('a1')!.desired!.active, null);
  assert.equal(sims.get('b1')!.desired!.active!.version, '2');
});
