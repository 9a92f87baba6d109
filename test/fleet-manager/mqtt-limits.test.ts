import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { pino } from 'pino';
import { startBroker, createRetainedCap } from '../../fleet-manager/broker.js';
import { createPacketSizeScanner, mqttPacketBytes } from '../../protocol/mqtt-packet-limit.js';
import { edgeTopic } from '../../protocol/topics.js';
import { startOsprey } from '../helpers/osprey-process.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { floodPublish, memoryOf, publishHeader } from '../helpers/mqtt-flood.js';
import { openTestIdentity } from '../helpers/identity.js';
import { tempDir } from './helpers.js';
import { FLEET_MQTT_USERNAME } from '../../fleet-manager/broker-auth.js';

const silent = pino({ level: 'silent' });
const MiB = 1024 * 1024;

test('packet scanner: finds an oversized packet from its header, across chunk boundaries', () => {
  const small = Buffer.concat([publishHeader('a/b', 100), Buffer.alloc(100)]);
  const big = publishHeader('a/b', 10 * MiB);
  const scan = createPacketSizeScanner(MiB);
  // Many small packets fed one byte at a time pass, then the big one is named by its header alone.
  const stream = Buffer.concat([small, small, small, big.subarray(0, 3)]);
  for (let i = 0; i < stream.length; i++) assert.equal(scan(stream.subarray(i, i + 1)), null, `byte ${i}`);
  assert.equal(scan(big.subarray(3)), mqttPacketBytes(10 * MiB + 7));
  // A packet of exactly the limit passes; one byte more does not.
  const exact = createPacketSizeScanner(mqttPacketBytes(1000));
  assert.equal(exact(Buffer.concat([Buffer.from([0x30]), Buffer.from([0xe8, 0x07]), Buffer.alloc(1000), Buffer.from([0x30, 0xe9, 0x07])])), mqttPacketBytes(1001));
  // Five length bytes are malformed [MQTT-2.2.3].
  assert.equal(createPacketSizeScanner(MiB)(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01])), Infinity);
});

test('retained cap: counts topics and bytes, allows replacements that do not grow, deletes on empty payload', () => {
  const cap = createRetainedCap(2, 1000);
  assert.equal(cap('a', undefined), null, 'not retained: not counted');
  assert.equal(cap('a', 600), null);
  assert.equal(cap('b', 300), null);
  assert.match(cap('c', 1) ?? '', /2 retained topics already \(mqtt\.maxRetainedMessages\)/);
  assert.match(cap('b', 500) ?? '', /over 1000 \(mqtt\.maxRetainedBytes\)/);
  assert.equal(cap('b', 400), null, 'grows within the cap');
  assert.equal(cap('a', 0), null, 'an empty retained payload deletes');
  assert.equal(cap('c', 600), null, 'room again');
});

test('embedded broker: a PUBLISH over maxPacketBytes drops that connection unread; other clients and retained caps work', async (t) => {
  const ids = openTestIdentity(t, join(await tempDir(t), 'fleet.db'));
  const fleetSecret = 'fleet secret of this test';
  const broker = await startBroker({
    host: '127.0.0.1',
    port: 0,
    logger: silent,
    maxPacketBytes: 256 * 1024,
    maxRetainedMessages: 1,
    maxRetainedBytes: 1 << 20,
    fleetSecret,
    resolveEdgeCredential: (c) => ids.identity.resolveEdgeCredential(c),
  });
  t.after(() => broker.close());
  const fleetLogin = (clientId: string) => ({ clientId: `osprey-fleet-${clientId}`, username: FLEET_MQTT_USERNAME, password: fleetSecret });
  const press1 = { clientId: 'press-1', username: 'press-1', password: await ids.enrollEdge('press-1') };
  const press2 = { clientId: 'press-2', username: 'press-2', password: await ids.enrollEdge('press-2') };
  const sub = await connectAsync(broker.url, { ...fleetLogin('sub'), reconnectPeriod: 0 });
  t.after(() => sub.endAsync(true));
  const got: string[] = [];
  sub.on('message', (topic) => got.push(topic));
  await sub.subscribeAsync('osprey/#', { qos: 1 });

  // An edge's results, and the fleet's own desired state: a size limit spares no one.
  for (const [kind, login] of [['results', press1], ['desired', fleetLogin('flood')]] as const) {
    const flood = await floodPublish(broker.url, login, edgeTopic('press-1', kind), 64 * MiB);
    assert.ok(flood.written < 64 * MiB, `${kind}: the broker read only the start of the packet (${flood.written} bytes written)`);
  }

  // The broker and the subscriber go on: a normal publish arrives, the flood never did.
  const pub = await connectAsync(broker.url, { ...press1, reconnectPeriod: 0 });
  t.after(() => pub.endAsync(true));
  const arrived = new Promise<void>((resolve) => sub.on('message', (topic) => topic.endsWith('/events') && resolve()));
  await pub.publishAsync(edgeTopic('press-1', 'events'), Buffer.alloc(200 * 1024), { qos: 1 });
  await arrived;
  assert.deepEqual(got, [edgeTopic('press-1', 'events')]);

  // Retained: one topic allowed; a second retained topic is refused (the publisher is dropped).
  await pub.publishAsync(edgeTopic('press-1', 'state'), Buffer.from('{}'), { qos: 1, retain: true });
  const refused = await connectAsync(broker.url, { ...press2, reconnectPeriod: 0 });
  t.after(() => refused.endAsync(true));
  const closed = new Promise<void>((resolve) => refused.once('close', () => resolve()));
  refused.publish(edgeTopic('press-2', 'state'), Buffer.from('{}'), { qos: 1, retain: true });
  await closed;
});

test('fleet process: a 200 MB results publish is refused, fleet memory stays bounded and ingest goes on', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'osprey-mqtt-limits-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const fleet = startOsprey(['fleet', 'start', '--port', '0', '--mqtt-port', '0', '--data', dir]);
  t.after(() => fleet.stop('SIGKILL'));
  const started = await fleet.waitForLine((l) => l.msg === 'fleet manager started');
  const mqttUrl = String(started.mqttUrl);
  const before = memoryOf(fleet.child.pid!);
  // The edge enrolls on the fleet's database, as `osprey edge enroll` would.
  const credential = await openTestIdentity(t, join(dir, 'fleet.db')).enrollEdge('press-1');

  const flood = await floodPublish(mqttUrl, { clientId: 'press-1', username: 'press-1', password: credential }, edgeTopic('press-1', 'results'), 200 * MiB);
  const after = memoryOf(fleet.child.pid!);
  assert.ok(flood.written < 200 * MiB, `broker hung up after ${flood.written} bytes`);
  const growth = after.peak - before.rss;
  t.diagnostic(`fleet RSS ${Math.round(before.rss / MiB)} MB before, peak ${Math.round(after.peak / MiB)} MB after a 200 MB publish (${Math.round(flood.written / MiB)} MB written before the hang-up)`);
  assert.ok(growth < 64 * MiB, `fleet peak RSS grew ${Math.round(growth / MiB)} MB (from ${Math.round(before.rss / MiB)} MB)`);
  await fleet.waitForLine((l) => l.msg === 'mqtt packet over maxPacketBytes; connection dropped');

  // Ingest still works: an edge's normal batch is stored and acked.
  const edge = await connectSimEdge(mqttUrl, { id: 'press-1', credential, line: 'L1', localModel: { name: 'inspect', version: '1' } });
  t.after(() => edge.close());
  await edge.sendResults([{ ts: Date.now(), camera: 'cam1', source: 'simulated', model: 'inspect@1', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 5 }]);
});
