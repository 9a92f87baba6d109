/**
 * Shared ingest (issue 18): two ingest consumers in one MQTT 5 shared-subscription group on a
 * real Mosquitto each store a share of the results, the shares are disjoint and together make
 * everything sent, and the edge is acked to its last seq. Telemetry and events are stored once
 * but seen by both (live views); states are stored and seen by both. The two consumers write one
 * SQLite file through two connections: the stand-in for the one PostgreSQL database several
 * instances share (two fleet managers on SQLite are not a supported multi-instance setup).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { pino } from 'pino';
import { createIngest, type InboundReport } from '../../fleet-manager/ingest.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { startMosquitto, mosquittoSkip } from '../helpers/mosquitto.js';
import { waitFor } from '../helpers/wait-for.js';
import { connectEdge, results, tempDir } from './helpers.js';

const BATCHES = 60;
const PER_BATCH = 10;

test('two ingest consumers in one shared-subscription group store disjoint shares of the results, together all of them, and the edge is acked to its last seq', { skip: mosquittoSkip(), timeout: 30_000 }, async (t) => {
  const broker = await startMosquitto();
  t.after(() => broker.close());
  const dir = await tempDir(t);
  const file = join(dir, 'fleet.db');
  const silent = pino({ level: 'silent' });

  const consumers = await Promise.all(
    ['a', 'b'].map(async (name) => {
      const store = openSqliteStore({ file, logger: silent });
      t.after(() => store.close());
      const client = await connectAsync(broker.url, { clientId: `osprey-fleet-${name}`, protocolVersion: 5, clean: true, reconnectPeriod: 0 });
      t.after(() => client.endAsync(true));
      const stored: InboundReport[] = [];
      const seen: InboundReport[] = [];
      const ingest = createIngest({ client, store, logger: silent, shareGroup: 'osprey-test', onReport: (r) => stored.push(r), onSeen: (r) => seen.push(r) });
      t.after(() => ingest.stop());
      await ingest.start();
      return { name, store, ingest, stored, seen };
    }),
  );

  const edge = await connectEdge(t, broker.url, 'edge-1', 'unused-on-an-anonymous-broker');
  await edge.publishState({ line: 'L1' });
  const last = BATCHES * PER_BATCH;
  for (let b = 0; b < BATCHES; b++) await edge.publishResults(results(b * PER_BATCH + 1, (b + 1) * PER_BATCH));
  await edge.client.publishAsync(edgeTopic('edge-1', 'events'), encodeMessage(envelope('events', 'edge-1', { kind: 'started', level: 'info', message: 'hello' })), { qos: 1 });
  // Acks come from both consumers, so not in seq order: wait for the one that covers everything.
  for (;;) if ((await edge.nextAck()) === last) break;

  const batchesOf = (c: (typeof consumers)[number]) =>
    c.stored.filter((r): r is Extract<InboundReport, { kind: 'results' }> => r.kind === 'results').map((r) => r.message.fromSeq);
  const [a, b] = consumers.map(batchesOf) as [number[], number[]];
  t.diagnostic(`batches stored by a: ${a.length}, by b: ${b.length}`);
  assert.ok(a.length > 0 && b.length > 0, 'the broker gave each consumer a share');
  assert.equal(a.filter((s) => b.includes(s)).length, 0, 'no batch went to both');
  assert.deepEqual([...a, ...b].sort((x, y) => x - y), Array.from({ length: BATCHES }, (_, i) => i * PER_BATCH + 1), 'together every batch, each once');
  assert.equal(consumers[0]!.ingest.counters().resultsStored + consumers[1]!.ingest.counters().resultsStored, last, 'every result inserted once');
  const rows = await consumers[0]!.store.listResults({ edge: 'edge-1', limit: 10_000 });
  assert.equal(rows.items.length, last, 'the shared database holds each result once');
  assert.equal((await consumers[1]!.store.getEdge('edge-1'))?.ackedSeq, last);

  // The event: stored by exactly one consumer, seen by both (the plain subscription).
  await Promise.all(consumers.map((c) => waitFor(() => c.seen.some((r) => r.kind === 'events'), `${c.name} sees the event`, 10_000)));
  await waitFor(() => consumers.some((c) => c.stored.some((r) => r.kind === 'events')), 'the event stored', 10_000);
  const eventsStored = consumers.map((c) => c.stored.filter((r) => r.kind === 'events').length);
  assert.equal(eventsStored[0]! + eventsStored[1]!, 1, 'the event is stored once');
  assert.equal((await consumers[0]!.store.listEvents('edge-1', 10)).filter((e) => e.message === 'hello').length, 1);
  for (const c of consumers) {
    assert.equal(c.seen.filter((r) => r.kind === 'events').length, 1, `${c.name} sees the event once`);
    assert.equal(c.seen.filter((r) => r.kind === 'state').length, 1, `${c.name} sees the state once`);
    assert.equal(c.stored.filter((r) => r.kind === 'state').length, 1, `${c.name} stores the state (an idempotent upsert; retained states reach no shared subscription)`);
  }
});
