/**
 * Alerts on a real fleet (real HTTP, real SQLite in a temp dir, the embedded broker) with edges
 * played by real MQTT clients: an edge alarm becomes an alert, an operator acknowledges it (and
 * is recorded), its clearing resolves it; telemetry reconciles lost events without letting an
 * older report undo a newer one; the fleet's own offline and backlog alerts follow an injected
 * clock; a viewer cannot acknowledge.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFleet, type TestFleet } from './control-helpers.js';
import { captureLogger, type CapturedLogger } from './helpers.js';
import { connectSimEdge, type SimEdge } from '../helpers/sim-edge.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import type { EventMessage } from '../../protocol/messages.js';
import type { AlertView } from '../../fleet-manager/alert-schemas.js';

async function edgeOn(f: TestFleet, id: string, line: string): Promise<SimEdge> {
  const edge = await connectSimEdge(f.mqttUrl, { id, credential: await f.creds.enrollEdge(id), line, localModel: { name: 'inspect', version: '1' } });
  return edge;
}

async function sendEvent(edge: SimEdge, level: EventMessage['level'], message: string, data: Record<string, unknown>, ts = Date.now()): Promise<void> {
  await edge.client.publishAsync(edgeTopic(edge.id, 'events'), encodeMessage(envelope('events', edge.id, { kind: 'alert', level, message, data }, ts)), { qos: 1 });
}

async function sendTelemetry(edge: SimEdge, alarms: string[] | undefined, pendingResults: number, ts = Date.now()): Promise<void> {
  const msg = envelope('telemetry', edge.id, {
    intervalMs: 1000,
    frames: 0,
    defects: 0,
    failed: 0,
    failures: {},
    fps: 0,
    latencyMs: { count: 0, p50: 0, p95: 0, p99: 0, max: 0 },
    queueDepth: 0,
    lastSeq: pendingResults,
    ackedSeq: 0,
    pendingResults,
    ...(alarms && { alarms }),
    cpuPercent: 1,
    rssBytes: 1,
    perModel: {},
  }, ts);
  await edge.client.publishAsync(edgeTopic(edge.id, 'telemetry'), encodeMessage(msg), { qos: 1 });
}

/** Resolves once the fleet logged this alert change (raised, resolved, acknowledged). */
const logged = (log: CapturedLogger, msg: string, type: string, edgeId?: string) =>
  log.waitFor((l) => l.msg === msg && l.type === type && (edgeId === undefined || l.edgeId === edgeId));

async function alerts(f: TestFleet, query = ''): Promise<{ items: AlertView[]; nextCursor: string | null; counts: { open: number; acknowledged: number } }> {
  const res = await f.api('GET', `/api/alerts${query}`);
  assert.equal(res.status, 200, JSON.stringify(res.body));
  return res.body;
}

test('an edge alarm raises one alert, repeats update it, an operator acknowledges it (recorded), its clearing resolves it; a viewer cannot acknowledge', async (t) => {
  const log = captureLogger('info');
  const f = await startFleet(t, { logger: log.logger });
  const edge = await edgeOn(f, 'press-1', 'L1');
  t.after(() => edge.close());

  await sendEvent(edge, 'warn', 'image blur: sharpness 3 below 10', { alarm: 'image-blur', sharpness: 3 });
  await logged(log, 'alert raised', 'image-blur');
  let page = await alerts(f, '?state=open');
  assert.equal(page.items.length, 1);
  const first = page.items[0]!;
  assert.deepEqual(
    [first.type, first.source, first.severity, first.edgeId, first.line, first.state, first.count, first.data],
    ['image-blur', 'edge', 'warning', 'press-1', 'L1', 'open', 1, { sharpness: 3 }],
  );
  assert.deepEqual(page.counts, { open: 1, acknowledged: 0 });

  // The same alarm again (worse): the one open alert is updated, not duplicated.
  await sendEvent(edge, 'error', 'image blur: sharpness 1 below 10', { alarm: 'image-blur', sharpness: 1 });
  await sendEvent(edge, 'warn', 'camera moved', { alarm: 'camera-shift', shiftPx: 12 });
  await logged(log, 'alert raised', 'camera-shift');
  page = await alerts(f, '?type=image-blur');
  assert.equal(page.items.length, 1);
  assert.deepEqual([page.items[0]!.id, page.items[0]!.count, page.items[0]!.severity, page.items[0]!.data], [first.id, 2, 'critical', { sharpness: 1 }]);

  // A viewer may read but not acknowledge; an operator acknowledges and is recorded.
  const viewer = await f.creds.headers('viewer');
  assert.equal((await fetch(`${f.httpUrl}/api/alerts`, { headers: viewer })).status, 200);
  assert.equal((await fetch(`${f.httpUrl}/api/alerts/${first.id}/ack`, { method: 'POST', headers: viewer })).status, 403);
  const operator = await f.creds.headers('operator');
  const ack = await fetch(`${f.httpUrl}/api/alerts/${first.id}/ack`, { method: 'POST', headers: operator });
  assert.equal(ack.status, 200);
  const acked = (await ack.json()) as AlertView;
  assert.deepEqual([acked.state, acked.acknowledgedBy], ['acknowledged', 'user:test-operator']);
  assert.ok(acked.acknowledgedAt! >= first.raisedAt);
  // Acknowledging again keeps the first acknowledgement.
  const again = (await (await fetch(`${f.httpUrl}/api/alerts/${first.id}/ack`, { method: 'POST', headers: await f.creds.headers('inspector') })).json()) as AlertView;
  assert.deepEqual([again.acknowledgedBy, again.acknowledgedAt], ['user:test-operator', acked.acknowledgedAt]);
  const audit = await f.api('GET', '/api/audit?action=alert.ack');
  assert.ok((audit.body.entries as { actor: string; target: string }[]).some((e) => e.actor === 'user:test-operator' && e.target === `alert:${first.id}`), JSON.stringify(audit.body));
  assert.deepEqual((await alerts(f, '?state=active')).counts, { open: 1, acknowledged: 1 });

  // Cleared at the edge: resolved, the acknowledgement kept.
  await sendEvent(edge, 'info', 'image sharp again', { alarm: 'image-blur', cleared: true, sharpness: 20 });
  await logged(log, 'alert resolved', 'image-blur');
  const resolved = (await f.api('GET', `/api/alerts/${first.id}`)).body as AlertView;
  assert.deepEqual([resolved.state, resolved.acknowledgedBy], ['resolved', 'user:test-operator']);
  assert.ok(resolved.resolvedAt! >= resolved.acknowledgedAt!);
  assert.equal((await fetch(`${f.httpUrl}/api/alerts/${first.id}/ack`, { method: 'POST', headers: operator })).status, 409, 'a resolved alert is not acknowledged');

  // Raised again later: a new alert, the old one stays resolved.
  await sendEvent(edge, 'warn', 'image blur again', { alarm: 'image-blur', sharpness: 4 });
  await log.waitFor((l) => l.msg === 'alert raised' && l.type === 'image-blur' && l.alertId !== first.id);
  const blur = await alerts(f, '?type=image-blur');
  assert.deepEqual(blur.items.map((a) => a.state), ['open', 'resolved']);

  // Filters and paging.
  assert.deepEqual((await alerts(f, '?state=resolved')).items.map((a) => a.id), [first.id]);
  assert.equal((await alerts(f, '?line=L2')).items.length, 0);
  assert.equal((await alerts(f, '?edgeId=press-1')).items.length, 3);
  assert.equal((await alerts(f, `?until=${first.raisedAt}`)).items.length, 0);
  assert.equal((await alerts(f, `?since=${new Date(first.raisedAt).toISOString()}`)).items.length, 3);
  const p1 = await alerts(f, '?limit=2');
  assert.equal(p1.items.length, 2);
  const p2 = await alerts(f, `?limit=2&cursor=${p1.nextCursor}`);
  assert.deepEqual([p2.items.length, p2.nextCursor], [1, null]);
  assert.equal(new Set([...p1.items, ...p2.items].map((a) => a.id)).size, 3);
  const bad = await f.api('GET', '/api/alerts?state=closed');
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /querystring\/state/);
  assert.equal((await f.api('GET', '/api/alerts?since=yesterday')).body.message, 'querystring/since must be an ISO 8601 date or epoch milliseconds');
});

test('telemetry reconciles lost alarm events both ways, and an older report never undoes a newer one', async (t) => {
  const log = captureLogger('info');
  const f = await startFleet(t, { logger: log.logger });
  const edge = await edgeOn(f, 'press-2', 'L2');
  t.after(() => edge.close());
  const t0 = Date.now();

  // The raising event was lost: telemetry lists the alarm.
  await sendTelemetry(edge, ['golden-set-failed'], 0, t0);
  await logged(log, 'alert raised', 'golden-set-failed');
  const fromTelemetry = (await alerts(f, '?type=golden-set-failed')).items[0]!;
  assert.deepEqual([fromTelemetry.state, fromTelemetry.edgeId, fromTelemetry.line], ['open', 'press-2', 'L2']);

  // An event raises score-drift at t0+2000; telemetry taken before it (t0+1000) must not resolve it.
  await sendEvent(edge, 'warn', 'score drift PSI 0.4', { alarm: 'score-drift', psi: 0.4 }, t0 + 2000);
  await logged(log, 'alert raised', 'score-drift');
  await sendTelemetry(edge, ['golden-set-failed'], 0, t0 + 1000);
  // A marker behind it in the edge's ordered stream: once it is raised, the old telemetry was judged.
  await sendEvent(edge, 'warn', 'marker', { alarm: 'disk-low' }, t0 + 3000);
  await logged(log, 'alert raised', 'disk-low');
  assert.equal((await alerts(f, '?type=score-drift')).items[0]!.state, 'open');
  // Telemetry without an alarms list (an agent from before alarms were reported) says nothing about them.
  await sendTelemetry(edge, undefined, 0, t0 + 3500);
  await sendEvent(edge, 'warn', 'marker', { alarm: 'image-quota' }, t0 + 3600);
  await logged(log, 'alert raised', 'image-quota');
  assert.deepEqual((await alerts(f, '?state=active')).items.map((a) => a.type).sort(), ['disk-low', 'golden-set-failed', 'image-quota', 'score-drift']);

  // The clearing events were lost: newer telemetry without the alarms resolves them.
  await sendTelemetry(edge, ['disk-low'], 0, t0 + 4000);
  await logged(log, 'alert resolved', 'score-drift');
  await logged(log, 'alert resolved', 'image-quota');
  await logged(log, 'alert resolved', 'golden-set-failed');
  assert.equal((await alerts(f, '?type=disk-low')).items[0]!.state, 'open');
  // Cleared by an event at t0+6000, then an old telemetry (t0+5000) that still lists it: not raised again.
  await sendEvent(edge, 'info', 'disk has room', { alarm: 'disk-low', cleared: true }, t0 + 6000);
  await logged(log, 'alert resolved', 'disk-low');
  await sendTelemetry(edge, ['disk-low'], 0, t0 + 5000);
  await sendEvent(edge, 'warn', 'marker 2', { alarm: 'image-contrast' }, t0 + 7000);
  await logged(log, 'alert raised', 'image-contrast');
  assert.deepEqual((await alerts(f, '?type=disk-low')).items.map((a) => a.state), ['resolved']);
  // Events that are not alarms (no data.alarm) raise nothing.
  await sendEvent(edge, 'error', 'results conflict', { conflicts: 3 }, t0 + 8000);
  await sendEvent(edge, 'warn', 'marker 3', { alarm: 'image-brightness' }, t0 + 9000);
  await logged(log, 'alert raised', 'image-brightness');
  assert.deepEqual((await alerts(f)).items.map((a) => a.type).sort(), ['disk-low', 'golden-set-failed', 'image-brightness', 'image-contrast', 'image-quota', 'score-drift']);
});

test("the fleet's own alerts on an injected clock: an edge offline too long, a growing backlog; each resolves when its condition ends", async (t) => {
  const log = captureLogger('info');
  let clock = Date.now();
  const f = await startFleet(t, {
    logger: log.logger,
    alertClock: () => clock,
    alerts: { offlineAfterMs: 60_000, checkMs: 50, backlogWindowMs: 60_000, backlogMinGrowth: 10 },
  });
  let edge = await edgeOn(f, 'press-3', 'L3');
  // Backlog: 5 results waiting, a window later 50 → raised (from the newest sample a window old); a window later 40 → no longer growing.
  await sendTelemetry(edge, [], 0);
  await sendTelemetry(edge, [], 5); // inside the window: not judged yet
  await sendEvent(edge, 'warn', 'marker', { alarm: 'disk-low' });
  await logged(log, 'alert raised', 'disk-low');
  assert.equal((await alerts(f, '?type=backlog-growing')).items.length, 0);
  clock += 61_000;
  await sendTelemetry(edge, [], 50);
  await logged(log, 'alert raised', 'backlog-growing');
  const backlog = (await alerts(f, '?type=backlog-growing')).items[0]!;
  assert.deepEqual([backlog.source, backlog.edgeId, backlog.line, backlog.data?.from, backlog.data?.to], ['fleet', 'press-3', 'L3', 5, 50]);
  clock += 61_000;
  await sendTelemetry(edge, [], 40);
  await logged(log, 'alert resolved', 'backlog-growing');

  // Offline: the edge's connection drops (its will says offline); nothing until offlineAfterMs on the clock.
  await edge.client.stream.destroy();
  await log.waitFor((l) => l.msg === 'edge state' && l.edgeId === 'press-3' && l.online === false);
  // Alert rules run in arrival order: once another edge's later alarm is raised, the offline state was noted.
  const other = await edgeOn(f, 'press-4', 'L3');
  t.after(() => other.close());
  await sendEvent(other, 'warn', 'marker', { alarm: 'disk-low' });
  await logged(log, 'alert raised', 'disk-low', 'press-4');
  const offlineAt = clock;
  clock += 61_000;
  await logged(log, 'alert raised', 'edge-offline', 'press-3');
  const offline = (await alerts(f, '?type=edge-offline')).items[0]!;
  assert.deepEqual([offline.severity, offline.edgeId, offline.line, offline.state], ['critical', 'press-3', 'L3', 'open']);
  assert.ok(offline.raisedAt >= offlineAt + 60_000, 'raised only once the clock passed offlineAfterMs');
  // Back online: resolved at once (its state report), without waiting for a check.
  edge = await edgeOn(f, 'press-3', 'L3');
  t.after(() => edge.close());
  await logged(log, 'alert resolved', 'edge-offline', 'press-3');
  assert.equal((await alerts(f, '?type=edge-offline')).items[0]!.state, 'resolved');
});

test('an alarm name edges do not raise keeps no alert: one edge cannot fill the alerts and the webhooks with made-up types', async (t) => {
  const log = captureLogger('info');
  const f = await startFleet(t, { logger: log.logger });
  const edge = await edgeOn(f, 'press-9', 'L9');
  t.after(() => edge.close());
  const t0 = Date.now();
  for (let i = 0; i < 50; i++) await sendEvent(edge, 'error', 'forged', { alarm: `made-up-${i % 5}` }, t0 + i);
  await sendTelemetry(edge, ['invented', 'image-blur'], 0, t0 + 100);
  // The edge's stream is ordered: once image-blur is raised, every forged report before it was judged.
  await logged(log, 'alert raised', 'image-blur');
  assert.deepEqual((await alerts(f)).items.map((a) => [a.type, a.edgeId]), [['image-blur', 'press-9']]);
  const warned = log.lines.filter((l) => l.msg === 'edge reported an alarm this fleet does not know: no alert kept').map((l) => l.alarm);
  assert.deepEqual(warned.sort(), ['invented', 'made-up-0', 'made-up-1', 'made-up-2', 'made-up-3', 'made-up-4'], 'each unknown name logged once');
});
