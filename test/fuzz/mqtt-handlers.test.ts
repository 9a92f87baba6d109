/**
 * Fuzzes the two MQTT receivers end to end, over a real broker with authentication and topic ACLs:
 * the fleet's ingest (what an edge publishes on its own topics: results, state, telemetry, events)
 * into a real SQLite store, and the edge's fleet link (what the fleet publishes: ack, desired).
 * The publisher is the identity the broker lets publish there (the edge, or the fleet): what a
 * compromised edge or a broken fleet could send. Other topics are the broker ACL's, tested elsewhere. After each fuzzed payload a valid sentinel message
 * goes the same way and must be handled: nothing a publisher sends stops or stalls the receiver,
 * nothing invalid is stored or handed on, and nothing is logged as a handler failure.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Logger } from 'pino';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { connectAsync, type MqttClient } from 'mqtt';
import { FLEET_MQTT_USERNAME } from '../../fleet-manager/broker-auth.js';
import { openTestIdentity } from '../helpers/identity.js';
import { createFleetLink } from '../../edge-agent/fleet-link.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import { startBroker } from '../../fleet-manager/broker.js';
import { createIngest } from '../../fleet-manager/ingest.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import type { DesiredMessage } from '../../protocol/messages.js';
import { edgeTopic, type MessageKind } from '../../protocol/topics.js';
import { check, encodeMessage, envelope } from '../../protocol/validator.js';
import { DesiredMessageSchema } from '../../protocol/messages.js';
import { captureLogger, connectEdge, result, tempDir } from '../fleet-manager/helpers.js';
import { testLogger } from '../edge-agent/fixtures.js';
import { assertBoundedMemory, fuzz, payloadBytes, sampleMessages, toBytes } from './arbitraries.js';

const MB = 1024 * 1024;
const EDGE = 'edge-fuzz';

/** A topic for a fuzzed payload: one the publisher may use (the broker refuses the rest). */
function topics(kinds: readonly MessageKind[]): fc.Arbitrary<{ kind: MessageKind; topic: string }> {
  return fc.constantFrom(...kinds).map((kind) => ({ kind, topic: edgeTopic(EDGE, kind) }));
}

/** An embedded broker that authenticates edges through `ids` and the fleet by a fresh secret. */
async function authBroker(t: TestContext, logger: Logger) {
  const ids = openTestIdentity(t, join(await tempDir(t), 'fleet.db'));
  const fleetSecret = randomBytes(32).toString('base64url');
  const broker = await startBroker({ host: '127.0.0.1', port: 0, logger, fleetSecret, resolveEdgeCredential: (c) => ids.identity.resolveEdgeCredential(c) });
  const fleetLogin = { clientId: `osprey-fleet-${randomBytes(4).toString('hex')}`, username: FLEET_MQTT_USERNAME, password: fleetSecret, reconnectPeriod: 0 };
  return { broker, ids, fleetLogin };
}

/** Nagle would hold each small publish for the peer's delayed ACK (~40 ms a round trip). */
function noDelay(client: MqttClient): void {
  (client.stream as { setNoDelay?: (on: boolean) => unknown }).setNoDelay?.(true);
}

/** No log line says a handler threw (ingest and the link catch it and log it at error). */
function assertNoHandlerFailure(lines: { level: number; msg: string }[]): void {
  const failures = lines.filter((l) => l.level >= 50);
  assert.deepEqual(failures.map((l) => l.msg), [], 'handler failures were logged');
}

test('fleet ingest: any payload on an inbound edge topic is stored valid or dropped, and ingest keeps acking', async (t) => {
  const dir = await tempDir(t);
  const log = captureLogger('warn');
  const store = openSqliteStore({ file: `${dir}/fleet.db`, logger: log.logger });
  const { broker, ids, fleetLogin } = await authBroker(t, log.logger);
  const fleetClient = await connectAsync(broker.url, fleetLogin);
  noDelay(fleetClient);
  const ingest = createIngest({ client: fleetClient, store, logger: log.logger });
  t.after(async () => {
    await ingest.stop();
    await fleetClient.endAsync(true);
    await broker.close();
    await store.close();
  });
  await ingest.start();
  // The sentinel is another edge: its ack proves ingest handled every message published before it.
  const sentinel = await connectEdge(t, broker.url, 'sentinel-1', await ids.enrollEdge('sentinel-1'));
  // The edge itself sends the garbage: the broker lets only it publish on its topics.
  const attacker = await connectAsync(broker.url, { clientId: EDGE, username: EDGE, password: await ids.enrollEdge(EDGE), reconnectPeriod: 0 });
  t.after(() => attacker.endAsync(true));
  noDelay(attacker);
  noDelay(sentinel.client);
  const samples = sampleMessages(EDGE);
  let seq = 0;

  await assertBoundedMemory(128 * MB, 'ingest', () =>
    fuzz(
      'fleet ingest',
      fc.asyncProperty(
        // Retained only on state: the broker refuses a retained publish anywhere else (and never acks it).
        topics(['results', 'state', 'telemetry', 'events']).chain(({ kind, topic }) => fc.tuple(fc.constant(topic), payloadBytes(samples[kind as keyof typeof samples]), kind === 'state' ? fc.boolean() : fc.constant(false))),
        async ([topic, payload, retain]) => {
          await attacker.publishAsync(topic, toBytes(payload), { qos: 1, retain });
          seq++;
          await sentinel.publishResults([result(seq)]);
          assert.equal(await sentinel.nextAck(), seq, 'the sentinel batch was acked in order');
        },
      ),
      1.5,
    ),
  );
  const c = ingest.counters();
  assert.equal(c.storeErrors, 0, 'no store error');
  assertNoHandlerFailure(log.lines);
  // Whatever was stored for the fuzzed edge passed the schema: the edge views still read back.
  await store.listEdges();
  t.diagnostic(`ingest: ${c.messages} messages, ${c.dropped} dropped, ${c.resultsStored} results stored`);
});

test('edge fleet link: any payload on its ack/desired topics is handled or dropped; only valid desired states reach the agent', async (t) => {
  const dir = await tempDir(t);
  const log = captureLogger('warn');
  const { broker, ids, fleetLogin } = await authBroker(t, testLogger());
  const store = openResultStore(dir);
  for (let i = 0; i < 5; i++) store.append({ ts: Date.now(), camera: 'cam1', source: 'http', model: 'm@1', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 1 });
  const desired: DesiredMessage[] = [];
  const waiters = new Map<number, () => void>();
  let up!: () => void;
  const linkUp = new Promise<void>((resolve) => (up = resolve));
  const link = createFleetLink({
    edgeId: EDGE,
    mqttUrl: broker.url,
    credentials: { username: EDGE, password: await ids.enrollEdge(EDGE) },
    store,
    sync: { batchSize: 10, window: 1, intervalMs: 60_000, ackTimeoutMs: 60_000 },
    telemetryIntervalMs: 60_000,
    logger: log.logger,
    state: () => ({ line: 'L1', cameras: ['cam1'] }),
    telemetry: () => ({}) as never,
    onUp: () => up(),
    onDesired: (d) => {
      desired.push(d);
      waiters.get(d.configVersion)?.();
    },
  });
  link.start();
  t.after(async () => {
    await link.close({ finalSyncMs: 0 });
    await broker.close();
    store.close();
  });
  await linkUp;
  const fleet = await connectAsync(broker.url, fleetLogin);
  t.after(() => fleet.endAsync(true));
  noDelay(fleet);
  const samples = sampleMessages(EDGE, store.storeId);
  // Sentinel desired states count down from the top, where no mutation of the sample lands.
  let version = 1_000_000_000;

  await assertBoundedMemory(128 * MB, 'fleet link', () =>
    fuzz(
      'edge fleet link',
      fc.asyncProperty(
        topics(['ack', 'desired']).chain(({ kind, topic }) => fc.tuple(fc.constant(topic), payloadBytes(samples[kind as 'ack' | 'desired']))),
        async ([topic, payload]) => {
          await fleet.publishAsync(topic, toBytes(payload), { qos: 1 });
          const v = version--;
          const handled = new Promise<void>((resolve) => waiters.set(v, resolve));
          await fleet.publishAsync(edgeTopic(EDGE, 'desired'), encodeMessage(envelope('desired', EDGE, { active: null, config: {}, configVersion: v })), { qos: 1 });
          await handled;
          waiters.delete(v);
          assert.ok(store.ackedSeq <= store.lastSeq, `acked ${store.ackedSeq} beyond the last seq ${store.lastSeq}`);
        },
      ),
      1.5,
    ),
  );
  for (const d of desired) {
    assert.equal(check(DesiredMessageSchema, d).ok, true, 'only schema-valid desired states reach the agent');
    assert.equal(d.edgeId, EDGE);
  }
  assert.ok(link.connected, 'the link is still up');
  assertNoHandlerFailure(log.lines);
  t.diagnostic(`fleet link: ${desired.length} desired states handed on, ${link.stats.messagesDropped} dropped`);
});
