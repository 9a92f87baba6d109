/**
 * `osprey fleet broker-config`: the files it writes, run as the real command, and Mosquitto
 * accepting exactly the passwords behind them (the `$7$` hashes stored at enrollment).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { connectAsync } from 'mqtt';
import { runOsprey } from '../helpers/osprey-process.js';
import { openTestIdentity } from '../helpers/identity.js';
import { mosquittoSkip, startMosquitto } from '../helpers/mosquitto.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { FLEET_MQTT_USERNAME } from '../../fleet-manager/broker-auth.js';


const osprey = runOsprey;

test('broker-config: password file of the valid edge credentials and the fleet, ACL patterns, conf; the fleet secret is kept 0600', async (t) => {
  const data = await tempDir(t);
  const ids = openTestIdentity(t, join(data, 'fleet.db'));
  const a = await ids.enrollEdge('edge-a');
  await ids.enrollEdge('edge-gone');
  await ids.identity.revokeEdgeCredentials('edge-gone');
  const out = join(data, 'mosquitto');

  const r = await osprey('fleet', 'broker-config', '--data', data, '--out', out);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes(a), 'no credential printed');
  const secretFile = join(data, 'keys', 'broker-fleet.secret');
  const secret = (await readFile(secretFile, 'utf8')).trim();
  assert.ok(!r.stdout.includes(secret), 'no fleet password printed');
  assert.equal((await stat(secretFile)).mode & 0o777, 0o600);
  assert.equal((await stat(join(out, 'passwd'))).mode & 0o777, 0o600);

  const passwd = (await readFile(join(out, 'passwd'), 'utf8')).trim().split('\n');
  assert.deepEqual(passwd.map((l) => l.split(':')[0]), [FLEET_MQTT_USERNAME, 'edge-a'], 'a revoked edge has no line');
  assert.ok(passwd.every((l) => /^[^:]+:\$7\$101\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/.test(l)), 'mosquitto $7$ hashes');
  const acl = await readFile(join(out, 'acl'), 'utf8');
  for (const line of [
    `user ${FLEET_MQTT_USERNAME}`,
    'topic readwrite osprey/v1/#',
    'pattern write osprey/v1/edges/%u/state',
    'pattern write osprey/v1/edges/%u/results',
    'pattern write osprey/v1/edges/%u/telemetry',
    'pattern write osprey/v1/edges/%u/events',
    'pattern read osprey/v1/edges/%u/ack',
    'pattern read osprey/v1/edges/%u/desired',
  ]) {
    assert.ok(acl.split('\n').includes(line), line);
  }
  assert.ok(!/pattern (read|write|readwrite) .*[#+]/.test(acl), 'no wildcard for edges');
  const conf = await readFile(join(out, 'mosquitto.conf'), 'utf8');
  for (const line of ['allow_anonymous false', `password_file ${join(out, 'passwd')}`, `acl_file ${join(out, 'acl')}`, 'use_username_as_clientid true']) {
    assert.ok(conf.split('\n').includes(line), line);
  }

  // A re-run (after enrolling more edges) keeps the fleet's password.
  await ids.enrollEdge('edge-b');
  assert.equal((await osprey('fleet', 'broker-config', '--data', data, '--out', out)).code, 0);
  assert.equal((await readFile(secretFile, 'utf8')).trim(), secret);
  assert.match(await readFile(join(out, 'passwd'), 'utf8'), /^edge-b:\$7\$/m);
});

test('broker-config: missing options and a folder without a fleet database are one-line errors', async (t) => {
  const empty = await tempDir(t);
  for (const [args, pattern] of [
    [['fleet', 'broker-config', '--out', empty], /--data DIR is required/],
    [['fleet', 'broker-config', '--data', empty], /--out DIR is required/],
    [['fleet', 'broker-config', '--data', empty, '--out', join(empty, 'o')], /--data: no fleet database at .*fleet\.db/],
  ] as const) {
    const r = await osprey(...args);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  }
  assert.match((await osprey('fleet', 'broker-config', '--help')).stdout, /Usage: osprey fleet broker-config/);
});

test('broker-config: Mosquitto accepts the enrolled credential and the fleet password, and refuses wrong ones', { skip: mosquittoSkip(), timeout: 20_000 }, async (t) => {
  const data = await tempDir(t);
  const ids = openTestIdentity(t, join(data, 'fleet.db'));
  const credential = await ids.enrollEdge('edge-a');
  const other = await ids.enrollEdge('edge-b');
  assert.equal((await osprey('fleet', 'broker-config', '--data', data, '--out', join(data, 'm'))).code, 0);
  const broker = await startMosquitto({ accessConfig: await readFile(join(data, 'm', 'mosquitto.conf'), 'utf8') });
  t.after(() => broker.close());
  const fleetPassword = (await readFile(join(data, 'keys', 'broker-fleet.secret'), 'utf8')).trim();
  const tryConnect = async (username: string, password: string) => {
    try {
      const c = await connectAsync(broker.url, { clientId: username, username, password, reconnectPeriod: 0 });
      await c.endAsync(true);
      return 0;
    } catch (err) {
      return (err as { code?: number }).code ?? -1;
    }
  };
  assert.equal(await tryConnect('edge-a', credential), 0);
  assert.equal(await tryConnect(FLEET_MQTT_USERNAME, fleetPassword), 0);
  assert.notEqual(await tryConnect('edge-a', other), 0);
  assert.notEqual(await tryConnect('edge-a', `${credential}x`), 0);
  assert.notEqual(await tryConnect(FLEET_MQTT_USERNAME, `${fleetPassword}x`), 0);
});
