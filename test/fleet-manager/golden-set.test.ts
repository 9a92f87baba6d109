/**
 * Golden-set self-tests at the fleet (issue 17), with every part real: a fleet manager, two edge
 * agents on its broker, and the trained package with a golden set and its perturbed copy (its
 * golden set intact) from the registry. The good version passes a rollout whose stages require
 * `goldenSet`; the perturbed one fails the gate (the stage fails and is rolled back), its edges
 * raise `golden-set-failed`, and the fleet keeps each edge's latest report per version with the
 * per-image outcomes behind `GET /api/edges/:id/golden-set`. A bad `goldenSet.schedule` is a 400
 * naming the field.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import type { GoldenImageOutcome, GoldenSetReport } from '../../protocol/monitoring.js';
import { dataSkip } from '../helpers/service-skip.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { signedDirectoryArchive, testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { edgeConfig, tempDir, testLogger } from '../edge-agent/fixtures.js';
import { GOLDEN_MODEL, useGoldenPackages } from '../edge-agent/golden-packages.js';
import { startFleet, uploadTar, type TestFleet } from './control-helpers.js';

const skip = dataSkip('magnetic-tile');
const packages = useGoldenPackages();
type Report = GoldenSetReport & { receivedAt: number; outcomes: GoldenImageOutcome[] };
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON views, checked by the asserts
type Json = any;

async function startEdge(t: TestContext, f: TestFleet, edgeId: string, publicKey: string, localDir: string): Promise<EdgeAgent> {
  const dir = await tempDir(t);
  const config = edgeConfig(dir, localDir, {
    edgeId,
    line: 'line-G',
    fleet: {
      mqttUrl: f.mqttUrl,
      httpUrl: f.httpUrl,
      publicKey,
      trustedKeys: [testPublisherKey()],
      credentialFile: await enrolledCredentialFile(f.creds, edgeId, join(dir, 'fleet.credential')),
    },
    model: { dir: localDir, retryBaseMs: 20, retryMaxMs: 200 },
  });
  const agent = createEdgeAgent(config, { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 300 });
  t.after(() => agent.close());
  await agent.start();
  return agent;
}

test('fleet: goldenSet.schedule is checked by node-cron where the config is accepted', async (t) => {
  const f = await startFleet(t);
  const bad = await f.api('PUT', '/api/config', { goldenSet: { schedule: '61 * * * *' } });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /^body\/goldenSet\/schedule: "61 \* \* \* \*" is not a node-cron expression \(61 is a invalid expression for minute\)$/);
  const words = await f.api('PUT', '/api/lines/L1/config', { goldenSet: { schedule: 'every monday' } });
  assert.equal(words.status, 400);
  assert.match(words.body.message, /body\/goldenSet\/schedule/);
  const timeout = await f.api('PUT', '/api/config', { goldenSet: { timeoutMs: 5 } });
  assert.equal(timeout.status, 400);
  assert.match(timeout.body.message, /body\/goldenSet\/timeoutMs must be >= 1000/);
  const ok = await f.api('PUT', '/api/config', { goldenSet: { schedule: '0 6,14,22 * * *', runOnActivation: true, timeoutMs: 30_000 } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal((await f.api('GET', '/api/config')).body.settings.goldenSet.schedule, '0 6,14,22 * * *');
});

test('fleet: a rollout gated on the golden set passes the trained version and rolls back the perturbed one; reports per edge and version are kept', { skip, timeout: 90_000 }, async (t) => {
  const p = await packages();
  const f = await startFleet(t);
  for (const pkg of [p.good, p.perturbed]) {
    const up = await uploadTar(f.httpUrl, GOLDEN_MODEL, await signedDirectoryArchive(pkg.dir), f.admin);
    assert.equal(up.status, 201, JSON.stringify(up.body));
  }
  const publicKey = (await f.api('GET', '/api/fleet/public-key')).body as string;
  const edges = ['g1', 'g2'];
  const agents = await Promise.all(edges.map((id) => startEdge(t, f, id, publicKey, p.localDir)));
  await waitFor(async () => (await f.api('GET', '/api/edges')).body.edges.filter((e: Json) => e.online).length === 2, 'both edges online');

  const rolloutWhere = (id: string, what: string, pred: (r: Json) => boolean) =>
    waitFor(async () => {
      const r = (await f.api('GET', `/api/rollouts/${id}`)).body;
      return pred(r) ? r : undefined;
    }, `rollout ${id} ${what}`, 60_000, 50);

  // The good version: shadow then live, each stage holding until both edges report a passing golden set.
  const good = await f.api('POST', '/api/rollouts', {
    model: GOLDEN_MODEL,
    version: p.good.version,
    target: { edges },
    stages: [
      { name: 'shadow', mode: 'shadow', gates: { goldenSet: true } },
      { name: 'live', mode: 'live', gates: { goldenSet: true } },
    ],
  });
  assert.equal(good.status, 201, JSON.stringify(good.body));
  const done = await rolloutWhere(good.body.id, 'completed', (r) => r.status === 'completed' || r.status === 'rolled-back');
  assert.equal(done.status, 'completed', done.reason);
  for (const stage of done.stages) {
    const gate = stage.gateResults.find((g: Json) => g.gate === 'goldenSet');
    assert.deepEqual([gate.status, gate.value, gate.limit], ['pass', 1, 1], `${stage.name}: ${JSON.stringify(gate)}`);
  }
  const view = (await f.api('GET', '/api/edges/g1/golden-set')).body as { edgeId: string; reports: Report[] };
  assert.equal(view.edgeId, 'g1');
  const goodReport = view.reports.find((r) => r.model === p.good.id)!;
  assert.equal(goodReport.passed, true);
  assert.equal(goodReport.role, 'active', 'the live stage ran it as the active model');
  assert.equal(goodReport.outcomes.length, goodReport.images);
  assert.ok(goodReport.outcomes.every((o) => o.match));
  assert.ok(view.reports.some((r) => r.model === 'osprey-demo-anomaly@1.0.1' && r.passed === null), 'the local model (no golden set) reported "none"');

  // The perturbed version: the live stage's gate fails on the edges' reports and the rollout rolls back.
  const bad = await f.api('POST', '/api/rollouts', { model: GOLDEN_MODEL, version: p.perturbed.version, target: { edges }, stages: [{ mode: 'live', gates: { goldenSet: true } }] });
  assert.equal(bad.status, 201, JSON.stringify(bad.body));
  const back = await rolloutWhere(bad.body.id, 'rolled back', (r) => r.status !== 'running');
  assert.equal(back.status, 'rolled-back');
  assert.match(back.reason, /gate goldenSet: golden set failed on edge g[12]: \d+ of \d+ images off their expected answer/);
  const gate = back.stages[0].gateResults.find((g: Json) => g.gate === 'goldenSet');
  assert.equal(gate.status, 'fail');
  // The fleet's own alert for it, from this real gate failure; rolled back is final, so acknowledging it resolves it.
  const failedAlert = await waitFor(async () => {
    const list = (await f.api('GET', '/api/alerts?type=rollout-failed')).body.items as Json[];
    return list.find((a) => a.rolloutId === bad.body.id);
  }, 'rollout-failed alert raised');
  assert.deepEqual([failedAlert.state, failedAlert.severity, failedAlert.data.final, failedAlert.data.status], ['open', 'critical', true, 'rolled-back']);
  assert.match(failedAlert.message, /rolled back: stage .*gate goldenSet: golden set failed/);
  const acked = await f.api('POST', `/api/alerts/${failedAlert.id}/ack`);
  assert.equal(acked.status, 200, JSON.stringify(acked.body));
  assert.equal(acked.body.state, 'resolved');
  const rolloutAlerts = (await f.api('GET', '/api/alerts?type=rollout-failed')).body.items as Json[];
  assert.deepEqual(rolloutAlerts.map((a) => a.rolloutId), [bad.body.id], 'the completed rollout raised none');

  // The first failing edge decides; the other may not have finished before the rollback took the
  // version away (its result is then dropped), so only a report it did send is checked.
  const first = /on edge (g[12])/.exec(back.reason)![1]!;
  for (const id of edges) {
    const reports = ((await f.api('GET', `/api/edges/${id}/golden-set`)).body as { reports: Report[] }).reports;
    const failed = reports.find((r) => r.model === p.perturbed.id);
    if (id !== first && !failed) continue;
    assert.ok(failed, `${id} stored a report of ${p.perturbed.id}`);
    assert.equal(failed.passed, false);
    assert.ok(failed.mismatches > 0);
    assert.equal(failed.outcomes.filter((o) => !o.match).length, failed.mismatches);
  }
  // The edges raised the alarm (an alert event the fleet keeps with the edge's events) …
  await waitFor(async () => {
    const events = (await f.api('GET', `/api/edges/${first}/events`)).body.events as Json[];
    return events.some((e) => e.kind === 'alert' && e.data?.alarm === 'golden-set-failed' && !e.data.cleared);
  }, 'golden-set-failed alert stored at the fleet');
  // … and cleared it once the rollback put the good version back and it passed again.
  await waitFor(async () => agents.every((a) => a.health().alarms?.length === 0 && a.models?.state().active.version === p.good.version), 'alarm cleared after the rollback');

  assert.equal((await f.api('GET', '/api/edges/nobody/golden-set')).status, 404);
});
