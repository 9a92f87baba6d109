/** The broker's topic rules as a table, and refusals that never log a secret (a real broker). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { edgePublishRefusal, edgeMaySubscribe, isEdgeUsername } from '../../fleet-manager/broker-auth.js';
import { startBroker } from '../../fleet-manager/broker.js';
import { openTestIdentity } from '../helpers/identity.js';
import { captureLogger, tempDir } from './helpers.js';

test('broker rules: an edge publishes its own four kinds, retains only state, subscribes to its own ack and desired', () => {
  const own = (kind: string) => `osprey/v1/edges/e1/${kind}`;
  for (const kind of ['state', 'results', 'telemetry', 'events']) assert.equal(edgePublishRefusal('e1', own(kind), false), null, kind);
  assert.equal(edgePublishRefusal('e1', own('state'), true), null);
  for (const kind of ['results', 'telemetry', 'events']) assert.match(edgePublishRefusal('e1', own(kind), true) ?? '', /does not retain/);
  for (const kind of ['ack', 'desired']) assert.match(edgePublishRefusal('e1', own(kind), false) ?? '', /does not publish/);
  for (const topic of ['osprey/v1/edges/e2/results', 'osprey/v1/edges/e1/results/x', 'other/topic', '$SYS/x']) {
    assert.match(edgePublishRefusal('e1', topic, false) ?? '', /only on its own topics/, topic);
  }
  assert.ok(edgeMaySubscribe('e1', own('ack')) && edgeMaySubscribe('e1', own('desired')));
  for (const filter of ['#', '+/#', 'osprey/v1/#', 'osprey/v1/edges/+/ack', 'osprey/v1/edges/e1/#', 'osprey/v1/edges/e1/+', own('results'), 'osprey/v1/edges/e2/ack', '$SYS/#']) {
    assert.equal(edgeMaySubscribe('e1', filter), false, filter);
  }
  assert.equal(isEdgeUsername('press-1'), true);
  for (const name of ['osprey-fleet', 'osprey-fleet-1', 'a/b', '', '#']) assert.equal(isEdgeUsername(name), false, name);
});

test('broker refusals log one line without the password, and no username that is no identity', async (t) => {
  const ids = openTestIdentity(t, join(await tempDir(t), 'fleet.db'));
  const log = captureLogger();
  const fleetSecret = 'fleet-secret-never-logged';
  const broker = await startBroker({ host: '127.0.0.1', port: 0, logger: log.logger, fleetSecret, resolveEdgeCredential: (c) => ids.identity.resolveEdgeCredential(c) });
  t.after(() => broker.close());
  const credential = await ids.enrollEdge('e1');
  const attempts = [
    { clientId: 'e1', username: 'e1', password: `${credential}x` },
    { clientId: 'osprey-fleet-1', username: 'osprey-fleet', password: `${fleetSecret}x` },
    // The credential pasted into the username (and client id) field.
    { clientId: credential, username: credential, password: credential },
  ];
  for (const a of attempts) await assert.rejects(connectAsync(broker.url, { ...a, reconnectPeriod: 0 }));
  const refused = log.lines.filter((l) => String(l.msg).startsWith('mqtt connect refused'));
  assert.equal(refused.length, attempts.length);
  const text = JSON.stringify(log.lines);
  assert.ok(!text.includes(credential.split('.')[1]!) && !text.includes(fleetSecret), 'no secret in the log');
  assert.deepEqual(refused.map((l) => l.username), ['e1', 'osprey-fleet', undefined]);
});
