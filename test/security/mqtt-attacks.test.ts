/**
 * The MQTT attacks of issue 14, each run against the embedded aedes broker and against
 * Mosquitto configured by `osprey fleet broker-config`, with a real fleet manager on each. Every
 * "nothing arrived" is checked after a later real event (an ack, a desired state) that would
 * have come after the forged message on the same connection, never after a sleep.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { edgeTopic } from '../../protocol/topics.js';
import { decodeMessage, encodeMessage, envelope } from '../../protocol/validator.js';
import { FLEET_MQTT_USERNAME } from '../../fleet-manager/broker-auth.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { results } from '../fleet-manager/helpers.js';
import { packageFiles, uploadTar } from '../fleet-manager/control-helpers.js';
import { packArchive } from '../../models/package-archive.js';
import { writeBrokerConfig } from '../../cli/broker-config.js';
import { join } from 'node:path';
import { brokerKinds, grantedQos, publishOutcome, startMqttWorld, type MqttWorld } from './mqtt-world.js';

const LOCAL = { name: 'inspect', version: '1' };
const FORGED_CREDENTIAL = 'ospe_AAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';

/** Every message a client receives on `topic`, decoded as `kind`. */
function collect(client: MqttClient, topic: string): Buffer[] {
  const got: Buffer[] = [];
  client.on('message', (t, payload) => {
    if (t === topic) got.push(payload);
  });
  return got;
}

/**
 * A connection of edge `as` that publishes one forged message (QoS 1). aedes refuses it by
 * closing the connection (MQTT 3.1.1 has no reason code); Mosquitto acknowledges and drops it.
 */
async function forge(w: MqttWorld, as: string, topic: string, payload: Buffer, retain = false): Promise<void> {
  const c = await w.connect(w.login(as));
  assert.equal(await publishOutcome(c, topic, payload, { qos: 1, retain }), w.kind === 'aedes' ? 'closed' : 'acked', `${w.kind} on ${topic}`);
}

for (const { kind, skip } of brokerKinds()) {
  test(`${kind}: anonymous, unknown and borrowed credentials are refused at CONNECT`, { skip, timeout: 30_000 }, async (t) => {
    const w = await startMqttWorld(t, kind, ['edge-a', 'edge-b']);
    const a = w.login('edge-a');
    const b = w.login('edge-b');
    const refusals: [string, Parameters<MqttWorld['connackCode']>[0]][] = [
      ['anonymous', { clientId: 'anyone' }],
      ['anonymous with an edge client id', { clientId: 'edge-a' }],
      ['a username without a password', { clientId: 'edge-a', username: 'edge-a' }],
      ['a made-up credential', { clientId: 'edge-a', username: 'edge-a', password: FORGED_CREDENTIAL }],
      ["edge B's credential under A's name", { clientId: 'edge-a', username: 'edge-a', password: b.password }],
      ["an edge credential as the fleet", { clientId: 'osprey-fleet-x', username: FLEET_MQTT_USERNAME, password: a.password }],
      ['a wrong fleet password', { clientId: 'osprey-fleet-x', username: FLEET_MQTT_USERNAME, password: 'not-the-fleet-password-at-all' }],
    ];
    for (const [what, opts] of refusals) {
      const code = await w.connackCode(opts);
      // 4: bad user name or password, 5: not authorized [MQTT-3.2.2-3].
      assert.ok(code === 4 || code === 5, `${what}: CONNACK ${code}`);
    }
    assert.equal(await w.connackCode(a), 0, 'the real credential connects');
  });

  test(`${kind}: another identity using edge A's client id does not take A's session over`, { skip, timeout: 30_000 }, async (t) => {
    const w = await startMqttWorld(t, kind, ['edge-a', 'edge-b']);
    const a = await connectSimEdge(w.mqttUrl, { id: 'edge-a', credential: w.login('edge-a').password, line: 'L1', localModel: LOCAL });
    t.after(() => a.close());
    let aClosed = 0;
    a.client.on('close', () => aClosed++);
    const b = w.login('edge-b');
    for (const clientId of ['edge-a', 'osprey-fleet-takeover']) {
      const code = await w.connackCode({ ...b, clientId });
      // aedes refuses a client id other than the username; Mosquitto (use_username_as_clientid)
      // replaces it with the username, so B connects as B and A's session is untouched.
      if (kind === 'aedes') assert.ok(code === 4 || code === 5, `client id ${clientId} with B's credential: CONNACK ${code}`);
      else assert.equal(code, 0, `Mosquitto connects B as itself (client id ${clientId} replaced)`);
    }
    // A's own connection still works: a batch is stored and acked through it.
    await a.sendResults(results(1, 2).map(({ seq: _seq, ...r }) => r));
    assert.equal(aClosed, 0, 'edge A was never disconnected');
    assert.equal(a.client.connected, true);
  });

  test(`${kind}: edge B cannot publish results, events, state, telemetry or acks as edge A`, { skip, timeout: 30_000 }, async (t) => {
    const w = await startMqttWorld(t, kind, ['edge-a', 'edge-b']);
    const forged = {
      results: envelope('results', 'edge-a', { fromSeq: 1, toSeq: 5, results: results(1, 5, { verdict: 'ok', label: 'forged' }) }),
      events: envelope('events', 'edge-a', { kind: 'model-failed', level: 'error', message: 'forged', data: { name: 'inspect', version: '2', code: 'OSP_ERR_FORGED' } }),
      state: envelope('state', 'edge-a', { online: true, line: 'forged-line' }),
      telemetry: envelope('telemetry', 'edge-a', {
        intervalMs: 1000, frames: 1, defects: 1, failed: 0, failures: {}, fps: 1,
        latencyMs: { count: 1, p50: 1, p95: 1, max: 1, p99: 1 }, queueDepth: 0, lastSeq: 5, perModel: {},
      } as never),
    } as const;
    for (const [k, msg] of Object.entries(forged)) {
      await forge(w, 'edge-b', edgeTopic('edge-a', k as keyof typeof forged), encodeMessage(msg), k === 'state');
    }
    // The real A connects now, with a forged ack for it on its way first.
    const realA = await w.connect(w.login('edge-a'));
    const acks = collect(realA, edgeTopic('edge-a', 'ack'));
    await realA.subscribeAsync(edgeTopic('edge-a', 'ack'), { qos: 1 });
    await forge(w, 'edge-b', edgeTopic('edge-a', 'ack'), encodeMessage(envelope('ack', 'edge-a', { ackSeq: 999 })));
    // A's own batch; A's messages are handled in order, so its ack comes after anything forged for A.
    const acked = new Promise<void>((resolve) => realA.on('message', (topic) => topic === edgeTopic('edge-a', 'ack') && resolve()));
    await realA.publishAsync(edgeTopic('edge-a', 'results'), encodeMessage(envelope('results', 'edge-a', { fromSeq: 1, toSeq: 1, results: results(1, 1) })), { qos: 1 });
    await acked;

    assert.deepEqual(acks.map((p) => (decodeMessage('ack', p) as { value: { ackSeq: number } }).value.ackSeq), [1], 'A got only the fleet\'s ack');
    const stored = await w.fleet.api('GET', '/api/results?edge=edge-a&limit=100');
    assert.deepEqual(stored.body.items.map((r: { seq: number; label: string }) => [r.seq, r.label]), [[1, 'good']], "the fleet stored A's own result only");
    const edge = (await w.fleet.api('GET', '/api/edges')).body.edges.find((e: { id: string }) => e.id === 'edge-a');
    assert.notEqual(edge.line, 'forged-line', 'no forged state');
    assert.equal(edge.ackedSeq, 1);
    const events = await w.fleet.api('GET', '/api/edges/edge-a/events');
    assert.deepEqual(events.body.events.filter((e: { message: string }) => e.message === 'forged'), [], 'no forged event');
  });

  test(`${kind}: a forged model-failed event for edge A does not roll A's rollout back`, { skip, timeout: 30_000 }, async (t) => {
    const w = await startMqttWorld(t, kind, ['edge-a', 'edge-b']);
    const headers = await w.fleet.creds.headers('release-manager');
    for (const version of ['1', '2']) {
      const res = await uploadTar(w.fleet.httpUrl, 'inspect', packArchive(packageFiles('inspect', version)), headers);
      assert.ok(res.status === 201 || res.status === 200, `upload inspect@${version}: ${res.status}`);
    }
    const a = await connectSimEdge(w.mqttUrl, { id: 'edge-a', credential: w.login('edge-a').password, line: 'L1', localModel: LOCAL });
    t.after(() => a.close());
    await a.waitDesired(() => true);
    const r = (await w.fleet.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { edges: ['edge-a'] }, stages: [{ mode: 'live', gates: { minFrames: 1000 } }] })).body;
    await a.waitActive('inspect@2');

    const failed = envelope('events', 'edge-a', {
      kind: 'model-failed',
      level: 'error',
      message: 'inspect@2 refused: not signed by the fleet key',
      data: { name: 'inspect', version: '2', code: 'OSP_ERR_MODEL_SIGNATURE', reason: 'not signed by the fleet key' },
    });
    await forge(w, 'edge-b', edgeTopic('edge-a', 'events'), encodeMessage(failed));
    // A's messages are handled in order: once its batch is acked, a forged event would have counted.
    await a.sendResults(results(1, 2).map(({ seq: _seq, ...rec }) => ({ ...rec, model: 'inspect@2' })));
    const doc = (await w.fleet.api('GET', `/api/rollouts/${r.id}`)).body;
    assert.equal(doc.status, 'running');
    assert.notEqual(doc.stages[0].edges[0].status, 'failed');
  });

  test(`${kind}: only the fleet publishes desired states: an edge's retained desired for X never reaches X`, { skip, timeout: 30_000 }, async (t) => {
    const w = await startMqttWorld(t, kind, ['edge-x', 'edge-b']);
    const x = await connectSimEdge(w.mqttUrl, { id: 'edge-x', credential: w.login('edge-x').password, line: 'L1', localModel: LOCAL });
    t.after(() => x.close());
    const seen = collect(x.client, edgeTopic('edge-x', 'desired'));
    await x.waitDesired(() => true); // the fleet's first desired state for X
    x.follow = false; // nothing to report back: X is closed below
    const evil = envelope('desired', 'edge-x', {
      configVersion: 99,
      config: {},
      active: { name: 'evil', version: '1', sha256: 'a'.repeat(64), size: 1, url: 'http://attacker.invalid/evil.tar', signature: 'AAAA' },
      shadow: null,
    });
    await forge(w, 'edge-b', edgeTopic('edge-x', 'desired'), encodeMessage(evil), true);
    // The fleet's next desired state for X arrives after anything forged before it.
    assert.equal((await w.fleet.api('PUT', '/api/edges/edge-x/config', { sampling: { keepGoodEvery: 3 } })).status, 200);
    await x.waitDesired((d) => d.config.sampling?.keepGoodEvery === 3);
    assert.ok(seen.length >= 2);
    assert.ok(seen.every((p) => !p.toString().includes('attacker.invalid')), 'X never received the forged desired state');
    // A new connection of X gets the fleet's retained desired state, not a forged one.
    await x.close();
    const again = await w.connect(w.login('edge-x'));
    const retained = new Promise<Buffer>((resolve) => again.on('message', (_t, p) => resolve(p)));
    await again.subscribeAsync(edgeTopic('edge-x', 'desired'), { qos: 1 });
    assert.ok(!(await retained).toString().includes('attacker.invalid'));
  });

  test(`${kind}: an edge's subscriptions to #, $SYS and other edges' topics are refused and deliver nothing`, { skip, timeout: 30_000 }, async (t) => {
    const w = await startMqttWorld(t, kind, ['edge-a', 'edge-b']);
    const spy = await w.connect(w.login('edge-b'));
    const got: string[] = [];
    spy.on('message', (topic) => got.push(topic));
    const refused = ['#', 'osprey/v1/#', '$SYS/#', 'osprey/v1/edges/+/results', edgeTopic('edge-a', 'results'), edgeTopic('edge-a', 'desired'), edgeTopic('edge-a', 'ack')];
    const grants: Record<string, number> = {};
    for (const filter of refused) grants[filter] = await grantedQos(spy, filter);
    // aedes refuses the SUBSCRIBE (SUBACK 128). Mosquitto 2.0 grants every filter and applies
    // its read ACL to each message instead; either way nothing may arrive (checked below).
    if (kind === 'aedes') for (const filter of refused) assert.equal(grants[filter], 128, `${filter} refused`);
    else t.diagnostic(`Mosquitto SUBACK: ${JSON.stringify(grants)}`);
    for (const own of [edgeTopic('edge-b', 'ack'), edgeTopic('edge-b', 'desired')]) assert.equal(await grantedQos(spy, own), 1, `${own} granted`);

    // A's result goes to the fleet and is acked; then the fleet publishes B's desired state,
    // which reaches B after anything of A's that B could have seen.
    const a = await connectSimEdge(w.mqttUrl, { id: 'edge-a', credential: w.login('edge-a').password, line: 'L1', localModel: LOCAL });
    t.after(() => a.close());
    await a.sendResults(results(1, 3).map(({ seq: _seq, ...r }) => r));
    const desiredForB = new Promise<void>((resolve) => spy.on('message', (topic) => topic === edgeTopic('edge-b', 'desired') && resolve()));
    assert.equal((await w.fleet.api('PUT', '/api/edges/edge-b/config', { sampling: { keepGoodEvery: 5 } })).status, 200);
    await desiredForB;
    assert.deepEqual(got, [edgeTopic('edge-b', 'desired')], 'B received only its own desired state');
  });
}

test('aedes: a revoked credential is refused at the next CONNECT; disconnectEdge drops the live connection', { timeout: 30_000 }, async (t) => {
  const w = await startMqttWorld(t, 'aedes', ['edge-a']);
  const live = await w.connect(w.login('edge-a'));
  const closed = new Promise<void>((resolve) => live.once('close', () => resolve()));
  assert.equal(await w.fleet.creds.identity.revokeEdgeCredentials('edge-a'), 1);
  assert.equal(w.fleet.fm.disconnectEdge('edge-a'), 1);
  await closed;
  const code = await w.connackCode(w.login('edge-a'));
  assert.ok(code === 4 || code === 5, `revoked credential: CONNACK ${code}`);
});

test('mosquitto: after a revocation and an enrollment, broker-config and SIGHUP refuse the old credential and accept the new edge', { skip: brokerKinds()[1]!.skip, timeout: 30_000 }, async (t) => {
  const w = await startMqttWorld(t, 'mosquitto', ['edge-a']);
  assert.equal(await w.connackCode(w.login('edge-a')), 0);
  await w.fleet.creds.identity.revokeEdgeCredentials('edge-a');
  const late = await w.fleet.creds.enrollEdge('edge-late');
  assert.notEqual(await w.connackCode({ clientId: 'edge-late', username: 'edge-late', password: late }), 0, 'not in the password file yet');
  await writeBrokerConfig(w.fleet.dataDir, join(w.fleet.dataDir, 'mosquitto'));
  await w.mosquitto!.reload();
  const code = await w.connackCode(w.login('edge-a'));
  assert.ok(code === 4 || code === 5, `revoked credential: CONNACK ${code}`);
  assert.equal(await w.connackCode({ clientId: 'edge-late', username: 'edge-late', password: late }), 0);
});
