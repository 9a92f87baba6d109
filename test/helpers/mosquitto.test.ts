/**
 * The Mosquitto helper itself: a broker that started must stay up until the test stops it (its
 * start timer once SIGKILLed it 10 s after every successful start), and a death nobody asked for
 * must be visible to the test.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { mosquittoSkip, startMosquitto, type Mosquitto } from './mosquitto.js';

/** A publish that comes back through the broker: it is up and routing. */
async function roundTrip(broker: Mosquitto): Promise<void> {
  const client = await mqtt.connectAsync(broker.url, { clientId: `helper-test-${process.pid}`, reconnectPeriod: 0 });
  try {
    await client.subscribeAsync('helper/echo', { qos: 1 });
    const got = new Promise<[string, Buffer]>((resolve) => client.once('message', (topic, payload) => resolve([topic, payload])));
    await client.publishAsync('helper/echo', 'ping', { qos: 1 });
    const [topic, payload] = await got;
    assert.deepEqual([topic, payload.toString()], ['helper/echo', 'ping']);
  } finally {
    await client.endAsync(true);
  }
}

test('a started Mosquitto outlives its start timer and stays the same process', { skip: mosquittoSkip(), timeout: 30_000 }, async (t) => {
  // A short start timer makes the regression quick; the default (10 s) is what used to kill it.
  const startTimeoutMs = 500;
  const broker = await startMosquitto({ startTimeoutMs });
  t.after(() => broker.close());
  const pid = broker.pid;
  assert.ok(pid, 'a running broker has a pid');
  // Waiting for time is the point here: the old timer fired startTimeoutMs after the spawn. The
  // wait ends early on the event that would show the fault, the broker's own exit.
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    broker.nextUnexpectedExit().then((e) => `exited: ${JSON.stringify(e)}`),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still up'), startTimeoutMs * 3))),
  ]);
  clearTimeout(timer);
  assert.equal(outcome, 'still up');
  broker.assertSameBroker({ generation: 1, pid });
  await roundTrip(broker);
});

test('a broker that dies by itself is reported; a stop or restart asked for is not', { skip: mosquittoSkip(), timeout: 30_000 }, async (t) => {
  const broker = await startMosquitto();
  t.after(() => broker.close());
  await broker.restart();
  broker.assertSameBroker({ generation: 2 });
  const pid = broker.pid!;
  const died = broker.nextUnexpectedExit();
  process.kill(pid, 'SIGKILL');
  const e = await died;
  assert.deepEqual([e.pid, e.generation, e.signal], [pid, 2, 'SIGKILL']);
  assert.throws(() => broker.assertSameBroker({ generation: 2, pid }), /mosquitto died during the test: pid \d+ \(generation 2\) exited by itself/);
});
