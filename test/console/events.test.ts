import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { openSse } from './sse-reader.js';

const model = { name: 'inspect', version: '1' };

test('GET /api/events: a snapshot, then each change of an edge as it is stored; refused without a credential; ends at shutdown', async (t) => {
  const fleet = await startFleet(t);
  const url = `${fleet.httpUrl}/api/events`;

  const anonymous = await openSse(url, {});
  assert.equal(anonymous.status, 401);

  const e1 = await connectSimEdge(fleet.mqttUrl, { id: 'e1', credential: await fleet.creds.enrollEdge('e1'), line: 'L1', localModel: model });
  t.after(() => e1.close());
  const known = await fleet.api('GET', '/api/edges');
  assert.equal(known.status, 200);

  const viewer = await fleet.creds.headers('viewer');
  const stream = await openSse(url, viewer);
  t.after(() => stream.close());
  assert.equal(stream.status, 200);
  assert.equal(stream.headers.get('content-type'), 'text/event-stream; charset=utf-8');
  assert.equal(stream.headers.get('cache-control'), 'no-store');

  // The snapshot holds e1 once the fleet has its state (it may race the first state message).
  const snap = await stream.next((e) => e.event === 'snapshot');
  assert.equal(typeof snap.data.now, 'number');
  if (!snap.data.edges.some((e: { id: string }) => e.id === 'e1')) await stream.next((e) => e.event === 'edge' && e.data.edge.id === 'e1');

  // Telemetry arrives as an `edge` event carrying the whole view, without asking.
  await e1.sendTelemetry({ 'inspect@1': { frames: 7, defects: 0 } });
  const live = await stream.next((e) => e.event === 'edge' && e.data.edge.telemetry?.frames === 7);
  assert.equal(live.data.edge.id, 'e1');
  assert.equal(live.data.edge.online, true);
  assert.equal(live.data.edge.telemetry.intervalMs, 1000);
  assert.equal(live.data.edge.activeModel, 'inspect@1');

  // A second edge appears, then the first drops off the network: its will says offline.
  const e2 = await connectSimEdge(fleet.mqttUrl, { id: 'e2', credential: await fleet.creds.enrollEdge('e2'), line: 'L2', localModel: model });
  t.after(() => e2.close());
  await stream.next((e) => e.event === 'edge' && e.data.edge.id === 'e2' && e.data.edge.online);
  await e1.close();
  const gone = await stream.next((e) => e.event === 'edge' && e.data.edge.id === 'e1' && !e.data.edge.online);
  assert.equal(gone.data.edge.line, 'L1');

  // Shutdown ends the stream instead of waiting on it.
  await fleet.fm.close();
  await stream.ended;
});
