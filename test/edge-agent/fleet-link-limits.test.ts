/**
 * The fleet link under hostile packet sizes, against a scripted MQTT server (real TCP, real
 * mqtt-packet framing) so the test controls exactly what the edge receives and sees what it sends.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { createFleetLink } from '../../edge-agent/fleet-link.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { publishHeader, streamPayload } from '../helpers/mqtt-flood.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir, testLogger } from './fixtures.js';

const EDGE = 'press-9';
const MiB = 1024 * 1024;

test('fleet link: a 100 MB desired packet drops the connection unread; the link reconnects, and result batches are split to fit maxPacketBytes', async (t) => {
  const maxPacketBytes = 64 * 1024;
  const store = openResultStore(await tempDir(t));
  // Rows of ~1.2 KB: 200 of them (one batch of batchSize 500) would be ~240 KB.
  for (let i = 0; i < 200; i++) {
    store.append({ ts: Date.now(), camera: 'cam1', source: 'http', frame: 'f'.repeat(500) + i, model: 'm@1', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 1 });
  }

  let connections = 0;
  let floodWritten = -1;
  const resultPackets: number[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    const nth = ++connections;
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    const send = (p: Packet) => socket.write(mqttPacket.generate(p));
    socket.on('data', (b) => parser.parse(b));
    parser.on('packet', (p: Packet) => {
      if (p.cmd === 'connect') send({ cmd: 'connack', returnCode: 0, sessionPresent: false });
      else if (p.cmd === 'subscribe') {
        send({ cmd: 'suback', messageId: p.messageId!, granted: p.subscriptions.map(() => 1) });
        if (nth === 1) {
          // The first connection gets a desired state of 100 MB, streamed until the edge hangs up.
          socket.write(publishHeader(edgeTopic(EDGE, 'desired'), 100 * MiB, 7));
          void streamPayload(socket, 100 * MiB).then((n) => (floodWritten = n));
        }
      } else if (p.cmd === 'publish') {
        if (p.qos > 0) send({ cmd: 'puback', messageId: p.messageId! });
        if (p.topic === edgeTopic(EDGE, 'results')) {
          resultPackets.push(mqttPacket.generate(p).length);
          const toSeq = (JSON.parse(String(p.payload)) as { toSeq: number }).toSeq;
          const ack = encodeMessage(envelope('ack', EDGE, { ackSeq: toSeq, ...(store.storeId ? { storeId: store.storeId } : {}) }));
          send({ cmd: 'publish', topic: edgeTopic(EDGE, 'ack'), payload: ack, qos: 0, retain: false, dup: false });
        }
      } else if (p.cmd === 'pingreq') send({ cmd: 'pingresp' });
      else if (p.cmd === 'disconnect') socket.end();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');

  const link = createFleetLink({
    edgeId: EDGE,
    mqttUrl: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    store,
    sync: { batchSize: 500, window: 1, intervalMs: 50, ackTimeoutMs: 5000 },
    telemetryIntervalMs: 60_000,
    logger: testLogger(),
    reconnectPeriodMs: 50,
    maxPacketBytes,
    state: () => ({ line: 'L1', cameras: ['cam1'] }),
    telemetry: () => ({}) as never,
  });
  link.start();
  // Link first (it says offline and disconnects), then the server, then the store.
  t.after(async () => {
    await link.close({ finalSyncMs: 0 });
    for (const s of sockets) s.destroy();
    server.close();
    store.close();
  });

  await waitFor(() => store.ackedSeq === 200, 'all 200 results acked', 15_000);
  assert.ok(connections >= 2, 'the link reconnected after dropping the oversized packet');
  await waitFor(() => floodWritten >= 0, 'the flood to end');
  assert.ok(floodWritten < 16 * MiB, `the edge hung up after ${floodWritten} of 100 MB`);
  t.diagnostic(`the edge hung up after ${Math.round(floodWritten / MiB)} MB of a 100 MB desired packet`);
  assert.equal(link.stats.messagesDropped, 0, 'the oversized desired state was never read as a message');
  assert.ok(resultPackets.length > 1, 'the backlog went in several batches');
  assert.ok(resultPackets.every((n) => n <= maxPacketBytes), `every results packet fits: ${resultPackets.join(', ')}`);
});
