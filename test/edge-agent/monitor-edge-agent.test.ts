/**
 * The monitor wired into a real edge agent (issue 17): settings from the fleet's desired config
 * `monitoring`, real MTD frames over POST /inspect, the alarm as an `alert` event and in
 * telemetry (both checked by the protocol's validator on the fake fleet), in GET /health with the
 * `monitor` figures, and POST /monitor/reference starting a new reference (the alarm clears).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import type { DesiredMessage } from '../../protocol/messages.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import type { Health } from '../../edge-agent/http-server.js';
import { mtdGoodFrames, perturb, shuffledOrder } from '../../bench/monitor-frames.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger } from './fixtures.js';
import { fitLineModel } from './monitor-line.js';

const skip = dataSkip('magnetic-tile');

/** POST /inspect (asserting 200) and GET /health of an agent's HTTP API, and frames sent until an alarm. */
function agentHttp(httpUrl: string) {
  const inspect = async (image: Buffer): Promise<void> => {
    const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: image, headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.statusCode, 200);
    await res.body.dump();
  };
  const health = async (): Promise<Health> => (await request(`${httpUrl}/health`)).body.json() as Promise<Health>;
  /** Sends frames one at a time until /health lists `alarm`; how many were sent. */
  const untilAlarm = async (frames: readonly Buffer[], alarm: string): Promise<number> => {
    let sent = 0;
    for (const frame of frames) {
      await inspect(frame);
      sent++;
      if ((await health()).alarms?.includes(alarm)) break;
    }
    return sent;
  };
  return { inspect, health, untilAlarm };
}

const EDGE = 'edge-mon';

test('an edge agent raises image-blur from real frames: alert event, telemetry, /health; POST /monitor/reference clears it', { skip, timeout: 120_000 }, async (t) => {
  const good = await mtdGoodFrames(ospreyDataDir());
  const modelDir = await fitLineModel(t, good);
  const dir = await tempDir(t);
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  t.after(async () => {
    await fleet.close();
    await broker.close();
  });
  const agent = createEdgeAgent(edgeConfig(dir, modelDir, { edgeId: EDGE, fleet: { mqttUrl: broker.url } }), { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 300 });
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  await fleet.next('state', (m) => m.msg.online);

  // Smaller reference and window from the fleet's layered config.
  const monitoring = { referenceFrames: 40, window: 10, scoreReferenceFrames: 40, scoreWindow: 40 };
  const body: Omit<DesiredMessage, 'v' | 'id' | 'ts' | 'edgeId'> = { active: null, config: { monitoring }, configVersion: 1 };
  await fleet.client.publishAsync(edgeTopic(EDGE, 'desired'), encodeMessage(envelope('desired', EDGE, body)), { qos: 1, retain: true });
  await fleet.next('events', (m) => m.msg.kind === 'config-applied');

  const { inspect, health, untilAlarm } = agentHttp(httpUrl);
  const order = shuffledOrder(good.length, 200, 5);
  for (const i of order.slice(0, 60)) await inspect(good[i]!);
  let h = await health();
  assert.equal(h.monitor?.phase, 'watching', JSON.stringify(h.monitor));
  assert.equal(h.monitor?.model, 'mtd-anomaly@1.0.0');
  assert.deepEqual(h.alarms?.filter((a) => a.startsWith('image') || a === 'camera-shift'), []);

  // The lens goes out of focus.
  const since = fleet.messages.length;
  const blurred = await Promise.all(order.slice(60, 90).map((i) => perturb(good[i]!, 'blur')));
  const sent = await untilAlarm(blurred, 'image-blur');
  h = await health();
  assert.ok(h.alarms?.includes('image-blur'), `image-blur in /health after ${sent} blurred frames: ${JSON.stringify(h.alarms)}`);
  assert.ok(sent <= 2 * monitoring.window, `raised within two windows (${sent} frames)`);
  assert.ok(h.monitor?.sharpness !== undefined && h.monitor.sharpnessReference !== undefined && h.monitor.sharpness < h.monitor.sharpnessReference);
  const raised = await fleet.next('events', (m) => m.msg.kind === 'alert' && m.msg.data?.alarm === 'image-blur', { since });
  assert.equal(raised.msg.level, 'warn');
  assert.equal(raised.msg.data?.cleared, undefined);
  assert.equal(typeof raised.msg.data?.value, 'number');
  const telemetry = await fleet.next('telemetry', (m) => m.msg.alarms?.includes('image-blur') === true, { since });
  assert.equal(telemetry.msg.monitor?.phase, 'watching');
  assert.equal(fleet.invalid, 0, 'every message the edge sent passes the protocol schemas');

  // The operator confirms the new look (or has fixed the lens): a new reference, the alarm clears.
  const mark = fleet.messages.length;
  const res = await request(`${httpUrl}/monitor/reference`, { method: 'POST' });
  assert.equal(res.statusCode, 200);
  const figures = (await res.body.json()) as { phase: string; referenceFrames: number };
  assert.equal(figures.phase, 'reference');
  assert.equal(figures.referenceFrames, 0);
  const cleared = await fleet.next('events', (m) => m.msg.kind === 'alert' && m.msg.data?.alarm === 'image-blur' && m.msg.data?.cleared === true, { since: mark });
  assert.equal(cleared.msg.level, 'info');
  h = await health();
  assert.ok(!h.alarms?.includes('image-blur'), JSON.stringify(h.alarms));
  assert.equal(h.monitor?.phase, 'reference');
});

test('an edge without a fleet watches with the monitoring and golden-set settings of its own config file', { skip, timeout: 120_000 }, async (t) => {
  const good = await mtdGoodFrames(ospreyDataDir());
  const modelDir = await fitLineModel(t, good);
  const dir = await tempDir(t);
  const monitoring = { referenceFrames: 40, window: 10, scoreReferenceFrames: 40, scoreWindow: 40 };
  const config = { ...edgeConfig(dir, modelDir, { edgeId: 'edge-alone' }), monitoring, goldenSet: { schedule: '0 6,14,22 * * *', runOnActivation: false } };
  const agent = createEdgeAgent(config, { logger: testLogger() });
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  const { inspect, health, untilAlarm } = agentHttp(httpUrl);
  const order = shuffledOrder(good.length, 200, 7);
  // 40 reference frames (the default is 100): watching after 50.
  for (const i of order.slice(0, 50)) await inspect(good[i]!);
  assert.equal((await health()).monitor?.phase, 'watching', 'the file\'s referenceFrames is in force');
  const blurred = await Promise.all(order.slice(50, 80).map((i) => perturb(good[i]!, 'blur')));
  const sent = await untilAlarm(blurred, 'image-blur');
  assert.ok((await health()).alarms?.includes('image-blur'), `image-blur raised without a fleet (${sent} frames)`);
  assert.ok(sent <= 2 * monitoring.window, `within two of the file's windows (${sent} frames)`);
});
