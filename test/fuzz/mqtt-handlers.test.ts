/**
 * Fuzzes the two MQTT receivers end to end, over a real broker: the fleet's ingest (what edges
 * publish: results, state, telemetry, events) into a real SQLite store, and the edge's fleet link
 * (what the fleet publishes: ack, desired). After each fuzzed payload a valid sentinel message
 * goes the same way and must be handled: nothing a publisher sends stops or stalls the receiver,
 * nothing invalid is stored or handed on, and nothing is logged as a handler failure.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { connectAsync, type MqttClient } from 'mqtt';
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
import { assertBoundedMemory, fuzz, nastyString, payloadBytes, sampleMessages, toBytes } from './arbitraries.js';

const MB = 1024 * 1024;
const EDGE = 'edge-fuzz';

/** A topic for a fuzzed payload: mostly the edge's own, sometimes another level or a bent one. */
function topics(kinds: readonly MessageKind[]): fc.Arbitrary<{ kind: MessageKind; topic: string }> {
  return fc.constantFrom(...kinds).chain((kind) =>
    fc.oneof(
      { weight: 6, arbitrary: fc.constant({ kind, topic: edgeTopic(EDGE, kind) }) },
      { weight: 1, arbitrary: nastyString.map((s) => ({ kind, topic: `osprey/v1/edges/${s.replace(/[+#\0]/g, '').slice(0, 100) || 'x'}/${kind}` })) },
      { weight: 1, arbitrary: fc.constant({ kind, topic: `osprey/v1/edges/${EDGE}/${kind}/extra` }) },
    ),
  );
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
  const broker = await startBroker({ host: '127.0.0.1', port: 0, logger: log.logger });
  const fleetClient = await connectAsync(broker.url, { clientId: 'fuzz-fleet', reconnectPeriod: 0 });
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
  const sentinel = await connectEdge(t, broker.url, 'sentinel-1');
  const attacker = await connectAsync(broker.url, { clientId: 'fuzz-attacker', reconnectPeriod: 0 });
  t.after(() => attacker.endAsync(true));
  noDelay(attacker);
  noDelay(sentinel.client);
  const samples = sampleMessages(EDGE);
  let seq = 0;

  await assertBoundedMemory(128 * MB, 'ingest', () =>
    fuzz(
      'fleet ingest',
      fc.asyncProperty(
        topics(['results', 'state', 'telemetry', 'events']).chain(({ kind, topic }) => fc.tuple(fc.constant(topic), payloadBytes(samples[kind as keyof typeof samples]), fc.boolean())),
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
  const broker = await startBroker({ host: '127.0.0.1', port: 0, logger: testLogger() });
  const store = openResultStore(dir);
  for (let i = 0; i < 5; i++) store.append({ ts: Date.now(), camera: 'cam1', source: 'http', model: 'm@1', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 1 });
  const desired: DesiredMessage[] = [];
  const waiters = new Map<number, () => void>();
  let up!: () => void;
  const linkUp = new Promise<void>((resolve) => (up = resolve));
  const link = createFleetLink({
    edgeId: EDGE,
    mqttUrl: broker.url,
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
  const fleet = await connectAsync(broker.url, { clientId: 'fuzz-fleet', reconnectPeriod: 0 });
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
