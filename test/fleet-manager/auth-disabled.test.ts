/**
 * `auth.enabled: false` (the benchmarks' baseline, a developer's machine): every HTTP request and
 * MQTT client is let in as anonymous, and the fleet listens on loopback only whatever it was told,
 * and says so. With the default, none of that is reachable. Real fleet manager, real sockets.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { connectAsync } from 'mqtt';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { anonymousPrincipal, can, type Principal } from '../../fleet-manager/auth/principal.js';
import { PERMISSIONS } from '../../fleet-manager/auth/roles.js';
import { captureLogger, tempDir, type CapturedLogger } from './helpers.js';

const WARNING = /authentication is off/;

/** This machine's first non-loopback IPv4 address: a wildcard bind answers there, a loopback bind does not. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return undefined;
}

/** True when a TCP connection to host:port is accepted. */
function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** A fleet told to serve every interface, with one admin already in its database (so only auth.enabled decides). */
async function start(t: TestContext, enabled: boolean | undefined): Promise<{ httpUrl: string; mqttUrl: string; log: CapturedLogger }> {
  const dataDir = await tempDir(t);
  const identity = openSqliteIdentityStore({ file: join(dataDir, 'fleet.db'), logger: pino({ level: 'silent' }) });
  await identity.addUser({ username: 'admin', password: 'a long admin password', role: 'admin' });
  await identity.close();
  const log = captureLogger('info');
  const fm = createFleetManager({
    dataDir,
    http: { host: '0.0.0.0', port: 0 },
    mqtt: { host: '0.0.0.0', port: 0 },
    ...(enabled !== undefined && { auth: { enabled } }),
    logger: log.logger,
  });
  t.after(() => fm.close());
  return { ...(await fm.start()), log };
}

const port = (url: string) => Number(new URL(url).port);
const boundHost = (log: CapturedLogger, msg: string) => log.lines.find((l) => l.msg === msg)?.host;

test('auth.enabled false: loopback only although told 0.0.0.0, one warning, anonymous HTTP and MQTT let in', async (t) => {
  const { httpUrl, mqttUrl, log } = await start(t, false);
  assert.equal(boundHost(log, 'mqtt broker listening'), '127.0.0.1');
  assert.equal(log.lines.filter((l) => WARNING.test(l.msg)).length, 1, 'the warning is logged once');
  assert.equal(log.lines.find((l) => WARNING.test(l.msg))!.level, 40, 'as a warning');
  const outside = externalAddress();
  if (outside) {
    assert.equal(await reachable(outside, port(httpUrl)), false, `HTTP not reachable on ${outside}`);
    assert.equal(await reachable(outside, port(mqttUrl)), false, `MQTT not reachable on ${outside}`);
  }
  assert.equal(await reachable('127.0.0.1', port(httpUrl)), true);

  // HTTP: no credential, yet admin-only routes answer.
  assert.equal((await fetch(`${httpUrl}/api/edges`)).status, 200);
  assert.equal((await fetch(`${httpUrl}/api/audit`)).status, 200);

  // MQTT: no username; another edge's topic and `#` are allowed.
  const client = await connectAsync(mqttUrl, { clientId: 'anyone', reconnectPeriod: 0 });
  t.after(() => client.endAsync(true));
  const granted = await client.subscribeAsync('#', { qos: 1 });
  assert.equal(granted[0]!.qos, 1, '# granted');
  const seen = new Promise<string>((resolve) => client.once('message', (topic) => resolve(topic)));
  await client.publishAsync('osprey/v1/edges/someone-else/events', Buffer.from('{}'), { qos: 1 });
  assert.equal(await seen, 'osprey/v1/edges/someone-else/events');
});

test('auth enabled (the default): the fleet serves the interfaces it was told, and refuses anonymous HTTP and MQTT', async (t) => {
  const { httpUrl, mqttUrl, log } = await start(t, undefined);
  assert.equal(boundHost(log, 'mqtt broker listening'), '0.0.0.0');
  assert.equal(log.lines.filter((l) => WARNING.test(l.msg)).length, 0);
  const outside = externalAddress();
  if (outside) assert.equal(await reachable(outside, port(httpUrl)), true, `HTTP reachable on ${outside}`);
  assert.equal((await fetch(`${httpUrl}/api/edges`)).status, 401);
  await assert.rejects(connectAsync(mqttUrl, { clientId: 'anyone', reconnectPeriod: 0 }), /Not authorized|Bad username/i);
});

test('only an anonymous principal minted for an app without authentication holds permissions; a look-alike holds none', () => {
  const forged = { kind: 'anonymous' } as Principal;
  const minted = anonymousPrincipal();
  for (const p of PERMISSIONS.filter((x) => x !== 'public')) {
    assert.equal(can(forged, p), false, `forged: ${p}`);
    assert.equal(can(minted, p), true, `minted: ${p}`);
  }
});

test('no user yet: a fleet told to serve every interface listens on loopback only and says so, until the first admin exists', async (t) => {
  const dataDir = await tempDir(t);
  const log = captureLogger('info');
  const opts = { dataDir, http: { host: '0.0.0.0', port: 0 }, mqtt: { host: '0.0.0.0', port: 0 } };
  const fresh = createFleetManager({ ...opts, logger: log.logger });
  const { httpUrl } = await fresh.start();
  assert.equal(boundHost(log, 'mqtt broker listening'), '127.0.0.1');
  assert.ok(log.lines.some((l) => /^no users yet: the fleet listens on loopback only/.test(String(l.msg)) && l.level === 40), 'it says so');
  const outside = externalAddress();
  if (outside) assert.equal(await reachable(outside, port(httpUrl)), false, `HTTP not reachable on ${outside}`);
  // Still no credential-free access on loopback: authentication is on.
  assert.equal((await fetch(`${httpUrl}/api/edges`)).status, 401);
  await fresh.close();

  // The first admin (as `osprey fleet init` makes one), then a restart: the configured interfaces.
  const identity = openSqliteIdentityStore({ file: join(dataDir, 'fleet.db'), logger: pino({ level: 'silent' }) });
  await identity.addUser({ username: 'admin', password: 'a long admin password', role: 'admin' });
  await identity.close();
  const log2 = captureLogger('info');
  const served = createFleetManager({ ...opts, logger: log2.logger });
  t.after(() => served.close());
  await served.start();
  assert.equal(boundHost(log2, 'mqtt broker listening'), '0.0.0.0');
  assert.ok(!log2.lines.some((l) => /^no users yet/.test(String(l.msg))));
});
