/**
 * Prometheus metrics, proved on real parts: a fleet manager (real HTTP, SQLite, aedes) and an
 * enrolled edge agent running the real built-in ONNX model send real frames; the fleet's and the
 * edge's `/metrics` are scraped over HTTP and read with a Prometheus text-format parser. The
 * counters move by exactly the frames sent, the histogram counts match, alarms show, and the
 * permission (fleet) and token (edge metrics listener) are enforced. Then the Grafana dashboard's
 * PromQL is checked against those scrapes, so it cannot name a metric that does not exist.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { request } from 'undici';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { generatePartImage } from '../../models/fixtures.js';
import { EDGE_ALARMS } from '../../protocol/monitoring.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { scrape, type Scrape } from '../helpers/prometheus.js';
import { waitFor } from '../helpers/wait-for.js';
import { useDemoModel } from '../edge-agent/demo-model.js';
import { edgeConfig, tempDir, testLogger } from '../edge-agent/fixtures.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { dashboardMetricNames } from '../docs/grafana-dashboards.js';

const modelDir = useDemoModel();
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const EDGE = 'press-7';
/** Frames sent: camera and whether the part carries a synthetic scratch. */
const FRAMES = [
  { camera: 'cam1', defect: false },
  { camera: 'cam1', defect: true },
  { camera: 'cam2', defect: false },
  { camera: 'cam1', defect: false },
  { camera: 'cam2', defect: true },
  { camera: 'cam1', defect: false },
  { camera: 'cam2', defect: false },
];

test('fleet and edge /metrics count exactly the frames sent; alarms, permission and token enforced; the dashboards name only real metrics', { timeout: 120_000 }, async (t) => {
  const f = await startFleet(t);
  const dir = await tempDir(t);
  const token = 'metrics-token-0123456789abcdef';
  const tokenFile = join(dir, 'metrics.token');
  await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
  const agent = createEdgeAgent(
    edgeConfig(dir, await modelDir, {
      edgeId: EDGE,
      line: 'line-M',
      fleet: { mqttUrl: f.mqttUrl, httpUrl: f.httpUrl, credentialFile: await enrolledCredentialFile(f.creds, EDGE, join(dir, 'fleet.credential')) },
      metrics: { host: '127.0.0.1', port: 0, tokenFile },
      sync: { batchSize: 3, intervalMs: 50, ackTimeoutMs: 2000 },
      telemetry: { intervalMs: 100 },
    }),
    { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  const { httpUrl, metricsUrl } = await agent.start();
  assert.ok(metricsUrl, 'the metrics listener is up');
  await waitFor(() => agent.health().fleet.connected, 'edge connected to the fleet');

  const viewer = await f.creds.headers('viewer');
  const fleetBefore = await scrape(`${f.httpUrl}/metrics`, viewer);
  const edgeBefore = await scrape(`${httpUrl}/metrics`);
  assert.equal(edgeBefore.value('osprey_edge_frames_total'), 0);
  assert.equal(fleetBefore.value('osprey_fleet_results_ingested_total'), 0);

  // Real frames through POST /inspect; the answers say what the edge decided.
  const answers: { camera: string; verdict: string; latencyMs: number; seq: number }[] = [];
  for (const [i, frame] of FRAMES.entries()) {
    const body = await generatePartImage({ seed: 300 + i, defect: frame.defect ? 'scratch' : null, format: 'jpeg' });
    const res = await request(`${httpUrl}/inspect?camera=${frame.camera}`, { method: 'POST', body, headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.statusCode, 200);
    answers.push((await res.body.json()) as (typeof answers)[number]);
  }
  // One refused input, by its code.
  const bad = await request(`${httpUrl}/inspect`, { method: 'POST', body: Buffer.from('not an image'), headers: { 'content-type': 'image/jpeg' } });
  const badCode = ((await bad.body.json()) as { error: string }).error;
  assert.equal(bad.statusCode, 422);
  const count = (camera: string | null, verdict: string) => answers.filter((a) => (camera === null || a.camera === camera) && a.verdict === verdict).length;
  assert.ok(count(null, 'defect') >= 1 && count(null, 'ok') >= 1, `both verdicts among ${answers.map((a) => a.verdict).join(',')}`);
  await waitFor(() => agent.health().ackedSeq === FRAMES.length, 'every result acked by the fleet');

  // The edge, on its loopback API: exact counts, and the histogram holds every frame's latency.
  const edge = await scrape(`${httpUrl}/metrics`);
  for (const camera of ['cam1', 'cam2']) {
    for (const verdict of ['ok', 'defect']) {
      assert.equal(edge.value('osprey_edge_frames_total', { camera, verdict }), count(camera, verdict), `${camera} ${verdict}`);
    }
  }
  assert.equal(edge.value('osprey_edge_frames_total', { edge: EDGE, line: 'line-M' }), FRAMES.length, 'edge and line on every series');
  const latency = edge.histogram('osprey_edge_inspect_duration_seconds');
  assert.equal(latency.count, FRAMES.length);
  assert.equal(latency.buckets.get(Number.POSITIVE_INFINITY), FRAMES.length);
  const latencySum = answers.reduce((s, a) => s + a.latencyMs / 1000, 0);
  assert.ok(Math.abs(latency.sum - latencySum) < 1e-3 * FRAMES.length, `histogram sum ${latency.sum} s, answers ${latencySum} s`);
  for (const [le, n] of latency.buckets) assert.equal(n, answers.filter((a) => a.latencyMs / 1000 <= le).length, `bucket le=${le}`);
  assert.equal(edge.value('osprey_edge_inputs_rejected_total', { code: badCode }), 1);
  assert.equal(edge.value('osprey_edge_results_last_seq'), FRAMES.length);
  assert.equal(edge.value('osprey_edge_results_acked_seq'), FRAMES.length);
  assert.equal(edge.value('osprey_edge_results_pending'), 0);
  assert.equal(edge.value('osprey_edge_fleet_connected'), 1);
  assert.equal(edge.value('osprey_edge_queue_depth'), 0);
  assert.equal(edge.value('osprey_edge_model_info', { model: agent.health().model }), 1);
  for (const alarm of EDGE_ALARMS) assert.equal(edge.value('osprey_edge_alarm_active', { alarm }), 0, alarm);

  // The fleet: exactly what the edge stored, by verdict; one ingest observation per batch.
  const fleet = await scrape(`${f.httpUrl}/metrics`, viewer);
  for (const verdict of ['ok', 'defect']) assert.equal(fleet.value('osprey_fleet_results_ingested_total', { edge: EDGE, verdict }), count(null, verdict), verdict);
  const batches = fleet.value('osprey_fleet_result_batches_total');
  assert.ok(batches >= Math.ceil(FRAMES.length / 3), `${batches} batches`);
  assert.equal(fleet.histogram('osprey_fleet_ingest_duration_seconds').count, batches);
  assert.ok(fleet.value('osprey_fleet_acks_sent_total') >= 1);
  assert.equal(fleet.value('osprey_fleet_edges', { status: 'online' }), 1);
  assert.equal(fleet.value('osprey_fleet_edge_info', { edge: EDGE, line: 'line-M', model: agent.health().model }), 1);
  assert.equal(fleet.value('osprey_fleet_mqtt_clients_connected'), 2, "the edge and the fleet's own client");
  assert.equal(fleet.value('osprey_fleet_rollouts'), 0);
  assert.equal(fleet.value('osprey_fleet_training_jobs'), 0);
  // HTTP by route pattern: the first scrape is counted by the second, with its status.
  assert.equal(fleet.value('osprey_fleet_http_requests_total', { route: '/metrics', method: 'GET', status: '200' }), 1);
  assert.equal(fleet.histogram('osprey_fleet_http_request_duration_seconds', { route: '/metrics', method: 'GET' }).count, 1);

  // Permission metrics:read: anonymous 401, an edge's credential 403, a viewer's token 200 (above).
  const anonymous = await fetch(`${f.httpUrl}/metrics`);
  await anonymous.arrayBuffer();
  assert.equal(anonymous.status, 401);
  const asEdge = await fetch(`${f.httpUrl}/metrics`, { headers: { authorization: `Bearer ${(await readFile(join(dir, 'fleet.credential'), 'utf8')).trim()}` } });
  await asEdge.arrayBuffer();
  assert.equal(asEdge.status, 403);
  const refusals = await scrape(`${f.httpUrl}/metrics`, viewer);
  assert.equal(refusals.value('osprey_fleet_http_requests_total', { route: '/metrics', status: '401' }), 1);
  assert.equal(refusals.value('osprey_fleet_http_requests_total', { route: '/metrics', status: '403' }), 1);

  // The edge's metrics listener: the token, and nothing but /metrics.
  for (const [headers, status] of [[{}, 401], [{ authorization: 'Bearer wrong-token-0123456789abcd' }, 401]] as const) {
    const res = await fetch(metricsUrl, { headers });
    await res.arrayBuffer();
    assert.equal(res.status, status);
  }
  const other = await fetch(metricsUrl.replace(/\/metrics$/, '/health'), { headers: { authorization: `Bearer ${token}` } });
  await other.arrayBuffer();
  assert.equal(other.status, 404, 'the listener serves /metrics only');
  const listened = await scrape(metricsUrl, { authorization: `Bearer ${token}` });
  assert.equal(listened.value('osprey_edge_frames_total'), FRAMES.length);

  // An edge alarm the fleet hears of (telemetry over MQTT from an enrolled edge) is a fleet gauge.
  const other7 = 'press-8';
  const credential = await f.creds.enrollEdge(other7);
  const client = await mqtt.connectAsync(f.mqttUrl, { clientId: other7, username: other7, password: credential });
  t.after(() => client.endAsync());
  await client.publishAsync(edgeTopic(other7, 'state'), encodeMessage(envelope('state', other7, { online: true, line: 'line-M' })), { qos: 1, retain: true });
  await client.publishAsync(
    edgeTopic(other7, 'telemetry'),
    encodeMessage(envelope('telemetry', other7, {
      intervalMs: 60_000, frames: 0, defects: 0, failed: 0, failures: {}, fps: 0, latencyMs: { count: 0, p50: 0, p95: 0, p99: 0, max: 0 },
      queueDepth: 0, lastSeq: 40, ackedSeq: 28, pendingResults: 12, cpuPercent: 1, rssBytes: 1e8, perModel: {}, alarms: ['disk-low'],
    })),
    { qos: 1 },
  );
  let withAlarm: Scrape | undefined;
  await waitFor(async () => (withAlarm = await scrape(`${f.httpUrl}/metrics`, viewer)).value('osprey_fleet_edge_alarm_active', { edge: other7, alarm: 'disk-low' }) === 1, 'the alarm at the fleet');
  assert.equal(withAlarm!.value('osprey_fleet_edge_backlog_results', { edge: other7, line: 'line-M' }), 12);
  assert.equal(withAlarm!.value('osprey_fleet_edges', { status: 'online' }), 2);

  // Batches of several rows, a resend and an overlapping one: each stored row counted once, by its verdict.
  const row = (seq: number, verdict: 'ok' | 'defect') => ({ seq, ts: Date.now(), camera: 'cam1', source: 'http' as const, model: 'm@1', verdict, label: verdict === 'ok' ? 'good' : 'scratch', score: verdict === 'ok' ? 0.1 : 0.9, latencyMs: 2 });
  const batchesBefore = withAlarm!.value('osprey_fleet_result_batches_total');
  for (const rows of [[row(1, 'ok'), row(2, 'defect'), row(3, 'ok')], [row(1, 'ok'), row(2, 'defect'), row(3, 'ok')], [row(3, 'ok'), row(4, 'defect'), row(5, 'ok')]]) {
    await client.publishAsync(edgeTopic(other7, 'results'), encodeMessage(envelope('results', other7, { fromSeq: rows[0]!.seq, toSeq: rows.at(-1)!.seq, results: rows })), { qos: 1 });
  }
  let batched: Scrape | undefined;
  await waitFor(async () => (batched = await scrape(`${f.httpUrl}/metrics`, viewer)).value('osprey_fleet_result_batches_total') === batchesBefore + 3, 'three batches stored');
  assert.equal(batched!.value('osprey_fleet_results_ingested_total', { edge: other7, verdict: 'ok' }), 3, 'seqs 1, 3, 5');
  assert.equal(batched!.value('osprey_fleet_results_ingested_total', { edge: other7, verdict: 'defect' }), 2, 'seqs 2, 4');
  assert.equal(batched!.histogram('osprey_fleet_ingest_duration_seconds').count, batchesBefore + 3);

  // The dashboards: every metric their PromQL names is in these real scrapes.
  const exposed = new Set([...fleet.families.keys(), ...edge.families.keys()]);
  for (const file of ['deploy/grafana/osprey-fleet.json', 'deploy/grafana/osprey-edge.json']) {
    const names = dashboardMetricNames(JSON.parse(await readFile(join(ROOT, file), 'utf8')));
    assert.ok(names.size >= 5, `${file}: ${names.size} metrics`);
    assert.deepEqual([...names].filter((n) => !exposed.has(n)), [], `${file} names metrics no scrape has`);
  }
});

test('an alarm raised at a standalone edge shows in its /metrics while in force', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  // A result quota of 2 rows and no fleet to ack them: the third frame raises result-quota.
  const agent = createEdgeAgent(edgeConfig(dir, await modelDir, { retention: { maxRows: 2 } }), { logger: testLogger() });
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  const inspect = async (seed: number) => {
    const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: await generatePartImage({ seed, format: 'jpeg' }), headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.statusCode, 200);
    await res.body.arrayBuffer();
  };
  await inspect(1);
  await inspect(2);
  assert.equal((await scrape(`${httpUrl}/metrics`)).value('osprey_edge_alarm_active', { alarm: 'result-quota' }), 0);
  await inspect(3);
  assert.deepEqual(agent.health().alarms, ['result-quota']);
  const m = await scrape(`${httpUrl}/metrics`);
  assert.equal(m.value('osprey_edge_alarm_active', { alarm: 'result-quota' }), 1);
  assert.equal(m.value('osprey_edge_alarm_active'), 1, 'only that one');
  assert.equal(m.value('osprey_edge_frames_total'), 3, 'a frame past the quota still got its verdict');
  assert.equal(m.value('osprey_edge_fleet_connected'), 0);
});
