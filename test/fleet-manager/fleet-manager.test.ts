/**
 * A real fleet manager (HTTP and embedded MQTT on port 0, SQLite in a temp dir) with real
 * mqtt.js clients acting as edges. Every wait is on an event: an ack, a log line, a promise.
 */
import { test, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createFleetManager, type FleetManager } from '../../fleet-manager/fleet-manager.js';
import { startBroker } from '../../fleet-manager/broker.js';
import { isOspreyError } from '../../protocol/errors.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { captureLogger, connectEdge, result, results, tempDir, type CapturedLogger } from './helpers.js';
import { credentialsFor, openTestIdentity, type TestIdentity } from '../helpers/identity.js';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { writeFile } from 'node:fs/promises';
import { connectAsync } from 'mqtt';

const local = { host: '127.0.0.1', port: 0 };
let fm: FleetManager;
let httpUrl: string;
let mqttUrl: string;
let log: CapturedLogger;
let dataDir: string;
/** Edge enrollment on the shared manager's database. */
let creds: TestIdentity;

before(async () => {
  log = captureLogger();
  // The shared manager's data dir lives for the whole file, not one test, so no tempDir(t).
  dataDir = await mkdtemp(join(tmpdir(), 'osprey-fleet-'));
  fm = createFleetManager({ dataDir, http: local, mqtt: local, logger: log.logger });
  ({ httpUrl, mqttUrl } = await fm.start());
  creds = credentialsFor(openSqliteIdentityStore({ file: join(dataDir, 'fleet.db'), logger: pino({ level: 'silent' }) }));
});

after(async () => {
  await creds.identity.close();
  await fm.close();
  await rm(dataDir, { recursive: true, force: true });
});

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- JSON bodies, checked by the asserts
async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${httpUrl}${path}`, { headers: await creds.headers('admin') });
  return { status: res.status, body: await res.json() };
}

test('start returns real URLs; /health answers over HTTP', async () => {
  assert.match(httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.match(mqttUrl, /^mqtt:\/\/127\.0\.0\.1:\d+$/);
  const health = await get('/health');
  assert.equal(health.status, 200);
  assert.equal(health.body.status, 'ok');
  assert.equal(health.body.mqtt, true);
});

test('an edge reports state, then results are stored and acked', { timeout: 10_000 }, async (t) => {
  const edge = await connectEdge(t, mqttUrl, 'edge-a', await creds.enrollEdge('edge-a'));
  await edge.publishState({ line: 'line-1', cameras: ['cam-1'], active: { name: 'builtin-anomaly', version: '1' } });
  await edge.publishResults(results(1, 10));
  assert.equal(await edge.nextAck(), 10);
  await edge.publishResults(results(11, 15, { verdict: 'defect', label: 'scratch' }));
  assert.equal(await edge.nextAck(), 15);

  const page = await get('/api/results?edge=edge-a&limit=100');
  assert.deepEqual(page.body.items.map((r: { seq: number }) => r.seq), [15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
  assert.ok(page.body.items.every((r: { line: string }) => r.line === 'line-1'));
  assert.deepEqual(page.body.items.at(-1), { edgeId: 'edge-a', line: 'line-1', ...result(1), hasImage: false });

  const edges = await get('/api/edges');
  const a = edges.body.edges.find((e: { id: string }) => e.id === 'edge-a');
  assert.equal(a.online, true);
  assert.equal(a.ackedSeq, 15);
  assert.equal(a.activeModel, 'builtin-anomaly@1');
  const stats = await get('/api/lines/line-1/stats?from=0&bucket=1d');
  assert.deepEqual(
    { total: stats.body.totals.total, defect: stats.body.totals.defect, byLabel: stats.body.totals.byLabel },
    { total: 15, defect: 5, byLabel: { good: 10, scratch: 5 } },
  );

  // The same batch again: nothing new, the same ack.
  await edge.publishResults(results(11, 15, { verdict: 'defect', label: 'scratch' }));
  assert.equal(await edge.nextAck(), 15);
  assert.equal((await get('/api/results?edge=edge-a&limit=100')).body.items.length, 15);
});

test('a lost batch holds the ack at the gap until it arrives', { timeout: 10_000 }, async (t) => {
  const edge = await connectEdge(t, mqttUrl, 'edge-gap', await creds.enrollEdge('edge-gap'));
  await edge.publishState({ line: 'line-2' });
  await edge.publishResults(results(11, 20));
  assert.equal(await edge.nextAck(), 0);
  await edge.publishResults(results(21, 30));
  assert.equal(await edge.nextAck(), 0);
  await edge.publishResults(results(1, 10));
  assert.equal(await edge.nextAck(), 30);
  assert.equal((await get('/api/results?edge=edge-gap&limit=1000')).body.items.length, 30);
});

test('bad messages are logged and dropped; the manager keeps serving and ingesting', { timeout: 10_000 }, async (t) => {
  const edge = await connectEdge(t, mqttUrl, 'edge-bad', await creds.enrollEdge('edge-bad'));
  const droppedBefore = (await get('/health')).body.ingest.dropped;
  await edge.publishState({ line: 'line-3' });
  await edge.publishRaw('results', '{"v":1,');
  const invalid = envelope('results', 'edge-bad', { fromSeq: 1, toSeq: 1, results: [result(1)] }) as Record<string, unknown>;
  await edge.publishRaw('results', encodeMessage({ ...invalid, results: [{ ...result(1), seq: 0, extra: true }] }));
  await edge.publishRaw('results', encodeMessage(envelope('results', 'someone-else', { fromSeq: 1, toSeq: 1, results: [result(1)] })));
  await edge.publishRaw('results', encodeMessage(envelope('results', 'edge-bad', { fromSeq: 5, toSeq: 6, results: [result(1)] })));
  await edge.publishRaw('state', Buffer.from([0xff, 0xfe, 0x00]));
  await edge.publishRaw('telemetry', encodeMessage(envelope('state', 'edge-bad', { online: true })));
  await edge.publishRaw('events', encodeMessage({ ...envelope('events', 'edge-bad', { kind: 'started', level: 'info', message: '' }), kind: 'exploded' }));
  // Ordered after the bad ones on the same connection: its ack proves they were all handled.
  await edge.publishResults(results(1, 3));
  assert.equal(await edge.nextAck(), 3);

  const health = await get('/health');
  assert.equal(health.status, 200);
  assert.equal(health.body.ingest.dropped - droppedBefore, 7);
  const drops = log.lines.filter((l) => l.msg === 'message dropped' && l.edgeId === 'edge-bad');
  assert.equal(drops.length, 7);
  // The batch-range check runs in the edge's store queue, so drops are not all in arrival order.
  const reasons = drops.map((l) => String(l.reason));
  for (const expected of [
    /\/results\/0\/seq must be >= 1/,
    /additional properties \(extra\)/,
    /envelope edgeId "someone-else" does not match the topic/,
    /seq 1 outside the batch range 5\.\.6/,
    /must have required property 'intervalMs'/,
    /\/kind must be equal to constant/,
  ]) {
    assert.ok(reasons.some((r) => expected.test(r)), `${expected} in ${JSON.stringify(reasons)}`);
  }
  assert.equal(reasons.filter((r) => r.startsWith('not JSON')).length, 2);
  assert.ok(drops.every((l) => l.level === 40 && typeof l.topic === 'string' && l.component === 'ingest'));
  assert.equal((await get('/api/results?edge=edge-bad')).body.items.length, 3);
});

test('an edge that vanishes is marked offline by its last will', { timeout: 10_000 }, async (t) => {
  const edge = await connectEdge(t, mqttUrl, 'edge-will', await creds.enrollEdge('edge-will'));
  const offline = log.waitFor((l) => l.msg === 'edge state' && l.edgeId === 'edge-will' && l.online === false);
  await edge.publishState({ line: 'line-1' });
  // A crash, not a clean disconnect: the socket just goes away, so the broker publishes the will.
  edge.client.stream.destroy();
  await offline;
  const e = (await get('/api/edges')).body.edges.find((x: { id: string }) => x.id === 'edge-will');
  assert.equal(e.online, false);
  assert.equal(e.line, 'line-1');
});

test('close is idempotent and a restart keeps the data and the acks', { timeout: 15_000 }, async (t) => {
  const dir = await tempDir(t);
  const opts = { dataDir: dir, http: local, mqtt: local, logger: pino({ level: 'silent' }) };
  const first = createFleetManager(opts);
  t.after(() => first.close());
  const one = await first.start();
  const ids = openTestIdentity(t, join(dir, 'fleet.db'));
  const credential = await ids.enrollEdge('edge-r');
  const e1 = await connectEdge(t, one.mqttUrl, 'edge-r', credential);
  await e1.publishState({ line: 'line-r' });
  await e1.publishResults(results(1, 5));
  assert.equal(await e1.nextAck(), 5);
  await e1.client.endAsync();
  await Promise.all([first.close(), first.close()]);
  await assert.rejects(fetch(`${one.httpUrl}/health`));

  const second = createFleetManager(opts);
  t.after(() => second.close());
  const two = await second.start();
  const auth = { headers: await openTestIdentity(t, join(dir, 'fleet.db')).headers('admin') };
  // A new embedded broker knows no one: the edge is offline until it reports again.
  const before = (await (await fetch(`${two.httpUrl}/api/edges`, auth)).json()) as { edges: { online: boolean; ackedSeq: number }[] };
  assert.deepEqual(before.edges.map((e) => [e.online, e.ackedSeq]), [[false, 5]]);
  const e2 = await connectEdge(t, two.mqttUrl, 'edge-r', credential);
  await e2.publishResults(results(4, 8));
  assert.equal(await e2.nextAck(), 8);
  const res = await fetch(`${two.httpUrl}/api/results?edge=edge-r`, auth);
  assert.equal(((await res.json()) as { items: unknown[] }).items.length, 8);
});

test('with brokerUrl the manager embeds no broker and ingests through the external one, with its brokerPasswordFile', { timeout: 10_000 }, async (t) => {
  const dir = await tempDir(t);
  const ids = openTestIdentity(t, join(dir, 'fleet.db'));
  const fleetSecret = 'the-external-broker-password-of-the-fleet';
  const broker = await startBroker({ ...local, logger: pino({ level: 'silent' }), fleetSecret, resolveEdgeCredential: (c) => ids.identity.resolveEdgeCredential(c) });
  t.after(() => broker.close());
  const brokerPasswordFile = join(dir, 'fleet-broker.secret');
  await writeFile(brokerPasswordFile, `${fleetSecret}\n`, { mode: 0o600 });
  const ext = createFleetManager({ dataDir: dir, http: local, mqtt: { host: '127.0.0.1', port: 1 }, brokerUrl: broker.url, brokerPasswordFile, logger: pino({ level: 'silent' }) });
  t.after(() => ext.close());
  const { mqttUrl: url } = await ext.start();
  assert.equal(url, broker.url);
  const edge = await connectEdge(t, url, 'edge-x', await ids.enrollEdge('edge-x'));
  await edge.publishResults(results(1, 2));
  assert.equal(await edge.nextAck(), 2);
});

test('fleetBrokerSecret: in-process code connects to the embedded broker as the fleet and reads every edge; a wrong password is refused', { timeout: 10_000 }, async (t) => {
  const dir = await tempDir(t);
  const fleetBrokerSecret = 'observer-secret-of-this-test';
  const own = createFleetManager({ dataDir: dir, http: local, mqtt: local, logger: pino({ level: 'silent' }), fleetBrokerSecret });
  t.after(() => own.close());
  const { mqttUrl: url } = await own.start();
  await assert.rejects(connectAsync(url, { clientId: 'osprey-fleet-observer', username: 'osprey-fleet', password: `${fleetBrokerSecret}x`, reconnectPeriod: 0 }), /Not authorized|Bad username or password/);
  const observer = await connectAsync(url, { clientId: 'osprey-fleet-observer', username: 'osprey-fleet', password: fleetBrokerSecret, reconnectPeriod: 0 });
  t.after(() => observer.endAsync(true));
  const ack = new Promise<string>((resolve) => observer.on('message', (topic) => resolve(topic)));
  await observer.subscribeAsync('osprey/v1/edges/+/ack', { qos: 1 });
  const edge = await connectEdge(t, url, 'edge-o', await openTestIdentity(t, join(dir, 'fleet.db')).enrollEdge('edge-o'));
  await edge.publishResults(results(1, 1));
  assert.equal(await ack, 'osprey/v1/edges/edge-o/ack');
  assert.throws(() => createFleetManager({ dataDir: dir, fleetBrokerSecret: 'short' }), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && /fleetBrokerSecret/.test(err.message));
});

test('start fails clearly: bad options, unreachable broker, port in use', { timeout: 15_000 }, async (t) => {
  assert.throws(() => createFleetManager({ http: { port: -5 } }), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && /\/http\/port/.test(err.message));

  // A port that was just free and is now closed: nothing listens there.
  const probe = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const freePort = (probe.address() as AddressInfo).port;
  await new Promise((resolve) => probe.close(resolve));
  const dead = createFleetManager({ dataDir: await tempDir(t), http: local, brokerUrl: `mqtt://127.0.0.1:${freePort}`, logger: pino({ level: 'silent' }) });
  await assert.rejects(dead.start(), (err) => isOspreyError(err, 'OSP_ERR_BROKER') && err.message.includes(`mqtt://127.0.0.1:${freePort}`));
  await dead.close();

  const noPassword = createFleetManager({ dataDir: await tempDir(t), http: local, brokerUrl: `mqtt://127.0.0.1:${freePort}`, brokerPasswordFile: 'missing.secret', logger: pino({ level: 'silent' }) });
  await assert.rejects(noPassword.start(), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && /brokerPasswordFile .*missing\.secret does not exist/.test(err.message));
  await noPassword.close();

  const busy = createFleetManager({ dataDir: await tempDir(t), http: local, mqtt: { host: '127.0.0.1', port: Number(new URL(mqttUrl).port) }, logger: pino({ level: 'silent' }) });
  await assert.rejects(busy.start(), (err) => isOspreyError(err, 'OSP_ERR_BROKER') && /EADDRINUSE/.test(err.message));
  await busy.close();
});
