/**
 * The fleet with `tls` configured (docs/SECURITY.md ("Transport: TLS")): a real fleet manager on port 0 serves
 * only HTTPS and MQTTS with a certificate from its private CA; plain clients and clients trusting
 * another CA are refused; the packet-size watch still guards the TLS socket.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { Agent, request } from 'undici';
import { createFleetManager, type FleetManagerOptions } from '../../fleet-manager/fleet-manager.js';
import { ensurePrivateCa } from '../../fleet-manager/private-ca.js';
import { resolveFleetConfig } from '../../fleet-manager/config.js';
import { edgeTopic } from '../../protocol/topics.js';
import { connectPacket, publishHeader, streamPayload } from '../helpers/mqtt-flood.js';
import { captureLogger, tempDir } from './helpers.js';
import { openTestIdentity } from '../helpers/identity.js';

const MiB = 1024 * 1024;

async function tlsFleet(t: TestContext, extra: Partial<FleetManagerOptions> = {}) {
  const dir = await tempDir(t);
  const files = await ensurePrivateCa(path.join(dir, 'tls'), { hosts: [] });
  const fm = createFleetManager({
    dataDir: dir,
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    tls: { certFile: files.certFile, keyFile: files.keyFile, caFile: files.caFile },
    logger: pino({ level: 'silent' }),
    ...extra,
  });
  const urls = await fm.start();
  t.after(() => fm.close());
  const ca = await readFile(files.caFile);
  const agent = new Agent({ connect: { ca } });
  t.after(() => agent.close());
  return { ...urls, dir, ca, agent, files };
}

/** A CA the fleet's certificate is not signed by. */
async function otherCa(t: TestContext): Promise<Buffer> {
  return readFile((await ensurePrivateCa(path.join(await tempDir(t), 'tls'), { hosts: [] })).caFile);
}

/** Connects once (no retries); resolves with the error that ended it, or 'connected'. */
function tryMqtt(url: string, opts: mqtt.IClientOptions): Promise<Error | 'connected'> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  return new Promise((resolve) => {
    let error: Error | undefined;
    client.on('connect', () => {
      client.end(true);
      resolve('connected');
    });
    client.on('error', (err) => (error ??= err));
    client.on('close', () => {
      client.end(true);
      resolve(error ?? new Error('closed without CONNACK'));
    });
  });
}

test('with tls the fleet serves only HTTPS and MQTTS; its own client connects over mqtts', async (t) => {
  const fleet = await tlsFleet(t);
  assert.match(fleet.httpUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(fleet.mqttUrl, /^mqtts:\/\/127\.0\.0\.1:\d+$/);

  const res = await request(`${fleet.httpUrl}/health`, { dispatcher: fleet.agent });
  assert.equal(res.statusCode, 200);
  const health = (await res.body.json()) as { status: string; mqtt: boolean };
  assert.equal(health.status, 'ok');
  assert.equal(health.mqtt, true, "the fleet's own MQTT client is connected over mqtts");

  // Plain HTTP to the TLS port: the server never answers HTTP.
  const plainHttp = fleet.httpUrl.replace('https:', 'http:');
  await assert.rejects(request(`${plainHttp}/health`), (err: Error & { code?: string }) => {
    assert.match(String(err.code), /UND_ERR_SOCKET|ECONNRESET/, String(err));
    return true;
  });
  // HTTPS without the CA: the certificate is not trusted.
  await assert.rejects(request(`${fleet.httpUrl}/health`), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });

  // MQTTS with the CA works; plain MQTT to the same port and MQTTS trusting another CA do not.
  const probe = await openTestIdentity(t, path.join(fleet.dir, 'fleet.db')).enrollEdge('tls-probe');
  assert.equal(await tryMqtt(fleet.mqttUrl, { ca: fleet.ca, clientId: 'tls-probe', username: 'tls-probe', password: probe }), 'connected');
  const plain = await tryMqtt(fleet.mqttUrl.replace('mqtts:', 'mqtt:'), { clientId: 'plain-probe' });
  assert.notEqual(plain, 'connected', 'plain MQTT on the TLS port is refused');
  const wrong = await tryMqtt(fleet.mqttUrl, { ca: await otherCa(t), clientId: 'wrong-ca-probe' });
  assert.notEqual(wrong, 'connected');
  assert.equal((wrong as NodeJS.ErrnoException).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
});

test('the packet-size watch drops an oversized packet on the TLS socket before it is buffered', async (t) => {
  const log = captureLogger('warn');
  const fleet = await tlsFleet(t, { mqtt: { host: '127.0.0.1', port: 0, maxPacketBytes: 65_536 }, logger: log.logger });
  const { hostname, port } = new URL(fleet.mqttUrl);
  const socket = tlsConnect({ host: hostname, port: Number(port), ca: fleet.ca });
  socket.on('error', () => undefined); // the broker hanging up mid-write is the expected outcome
  await once(socket, 'secureConnect');
  // A real edge's login: the broker must let it in, so only the size watch can drop it.
  const credential = await openTestIdentity(t, path.join(fleet.dir, 'fleet.db')).enrollEdge('press-1');
  socket.write(connectPacket({ clientId: 'press-1', username: 'press-1', password: credential }));
  socket.write(publishHeader(edgeTopic('press-1', 'results'), 64 * MiB));
  const written = await streamPayload(socket, 64 * MiB);
  socket.destroy();
  assert.ok(written < 64 * MiB, `the broker hung up after ${written} bytes`);
  const line = await log.waitFor((l) => l.msg === 'mqtt packet over maxPacketBytes; connection dropped');
  assert.equal(line.maxPacketBytes, 65_536);
});

test('bad tls files stop start-up with one line naming the field', async (t) => {
  const dir = await tempDir(t);
  const files = await ensurePrivateCa(path.join(dir, 'tls'), { hosts: [] });
  const start = (tls: FleetManagerOptions['tls']) =>
    createFleetManager({ dataDir: dir, http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 }, tls, logger: pino({ level: 'silent' }) }).start();
  await assert.rejects(start({ certFile: path.join(dir, 'missing.pem'), keyFile: files.keyFile }), {
    code: 'OSP_ERR_CONFIG',
    message: /^fleet config tls\.certFile: cannot read .*missing\.pem \(ENOENT\)$/,
  });
  // The CA's key is not the server certificate's key.
  await assert.rejects(start({ certFile: files.certFile, keyFile: path.join(dir, 'tls', 'ca.key') }), { code: 'OSP_ERR_CONFIG', message: /^fleet config tls: .*fleet\.pem with key .*ca\.key is not usable/ });
  await writeFile(path.join(dir, 'junk.pem'), 'not a certificate');
  await assert.rejects(start({ certFile: files.certFile, keyFile: files.keyFile, caFile: path.join(dir, 'junk.pem') }), { code: 'OSP_ERR_CONFIG', message: /^fleet config tls\.caFile: .*junk\.pem is not a PEM certificate/ });
  assert.throws(() => resolveFleetConfig({ tls: { certFile: 'a.pem' } }), { code: 'OSP_ERR_CONFIG', message: /tls/ });
});

test('tls paths resolve against the config file like dataDir; a resolved config resolves again unchanged', () => {
  const config = resolveFleetConfig({ tls: { certFile: 'tls/fleet.pem', keyFile: '/etc/osprey/fleet.key', caFile: 'tls/ca.pem' } }, '/srv/osprey');
  assert.deepEqual(config.tls, { certFile: '/srv/osprey/tls/fleet.pem', keyFile: '/etc/osprey/fleet.key', caFile: '/srv/osprey/tls/ca.pem' });
  assert.deepEqual(resolveFleetConfig({ ...config, brokerUrl: undefined }, '/elsewhere'), config);
  assert.equal(resolveFleetConfig({}).tls, null);
  assert.equal(resolveFleetConfig({ ...resolveFleetConfig({}), brokerUrl: undefined }).tls, null);
});
