/** `osprey fleet tls-init`: files, the printed config section (which `osprey fleet start` accepts as is), reuse, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { startOsprey, runOsprey } from '../helpers/osprey-process.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const exec = promisify(execFile);

const osprey = runOsprey;

test('osprey fleet tls-init writes the CA and certificate, prints a tls section fleet start accepts, and keeps them on a rerun', { timeout: 60_000 }, async (t) => {
  const dir = await makeTempDir(t, 'osprey-tls-cli-');
  const data = join(dir, 'fleet');
  const help = await osprey('fleet', 'tls-init', '--help');
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: osprey fleet tls-init/);

  const first = await osprey('fleet', 'tls-init', '--data', data, '--host', 'fleet.plant.local', '--host', '10.0.0.5');
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /^wrote the private CA/);
  const snippet = JSON.parse(/\{\n {2}"tls"[\s\S]*?\n\}/.exec(first.stdout)![0]) as { tls: { certFile: string; keyFile: string; caFile: string } };
  assert.deepEqual(snippet.tls, { certFile: join(data, 'tls', 'fleet.pem'), keyFile: join(data, 'tls', 'fleet.key'), caFile: join(data, 'tls', 'ca.pem') });
  assert.equal((await stat(snippet.tls.keyFile)).mode & 0o777, 0o600);
  const cert = new X509Certificate(await readFile(snippet.tls.certFile));
  assert.ok(cert.checkHost('fleet.plant.local') && cert.checkIP('10.0.0.5') && cert.checkIP('127.0.0.1'));

  const again = await osprey('fleet', 'tls-init', '--data', data, '--host', 'fleet.plant.local', '--host', '10.0.0.5');
  assert.match(again.stdout, /^kept the private CA/);
  assert.equal(new X509Certificate(await readFile(snippet.tls.certFile)).serialNumber, cert.serialNumber);

  const bad = await osprey('fleet', 'tls-init', '--data', data, '--host', 'bad host');
  assert.equal(bad.code, 1);
  assert.equal(bad.stderr, 'osprey: TLS host "bad host" is neither a DNS name nor an IP address [OSP_ERR_CONFIG]\n');

  // The printed section, pasted into a config: the fleet starts on HTTPS and MQTTS.
  const config = join(dir, 'fleet.json');
  await writeFile(config, JSON.stringify({ dataDir: 'fleet', http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 }, ...snippet }));
  const fleet = startOsprey(['fleet', 'start', '--config', config]);
  t.after(() => fleet.stop('SIGKILL'));
  const started = await fleet.waitForLine((l) => l.msg === 'fleet manager started' && typeof l.httpUrl === 'string');
  assert.match(String(started.httpUrl), /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.match(String(started.mqttUrl), /^mqtts:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(await fleet.stop('SIGTERM'), 0);
});

test('osprey fleet init --tls makes the admin and the CA; osprey edge enroll --ca enrolls over HTTPS and refuses a fleet it cannot verify', { timeout: 60_000 }, async (t) => {
  const dir = await makeTempDir(t, 'osprey-tls-enroll-');
  const data = join(dir, 'fleet');
  const init = await osprey('fleet', 'init', '--data', data, '--tls');
  assert.equal(init.code, 0, init.stderr);
  assert.match(init.stdout, /Password: +\S{20,}/);
  const snippet = JSON.parse(/\{\n {2}"tls"[\s\S]*?\n\}/.exec(init.stdout)![0]) as { tls: { certFile: string; keyFile: string; caFile: string } };
  const config = join(dir, 'fleet.json');
  await writeFile(config, JSON.stringify(snippet));
  const fleet = startOsprey(['fleet', 'start', '--config', config, '--data', data, '--port', '0', '--mqtt-port', '0']);
  t.after(() => fleet.stop());
  const { httpUrl } = (await fleet.waitForLine((l) => l.msg === 'fleet manager started')) as { httpUrl: string };
  assert.match(httpUrl, /^https:/);

  const token = async () => (await osprey('edge', 'token', '--edge-id', 'press-9', '--data', data)).stdout.trim();
  const unverified = await osprey('edge', 'enroll', '--fleet', httpUrl, '--token', await token(), '--edge-id', 'press-9', '--out', join(dir, 'no.credential'));
  assert.notEqual(unverified.code, 0);
  assert.match(unverified.stderr, /^osprey: cannot reach the fleet at https:.*certificate/);
  assert.equal(unverified.stderr.trim().split('\n').length, 1);

  const out = join(dir, 'press-9.credential');
  const enrolled = await osprey('edge', 'enroll', '--fleet', httpUrl, '--ca', snippet.tls.caFile, '--token', await token(), '--edge-id', 'press-9', '--out', out);
  assert.equal(enrolled.code, 0, enrolled.stderr);
  assert.equal((await stat(out)).mode & 0o777, 0o600);
  assert.match(enrolled.stdout, new RegExp(`"caFile": ${JSON.stringify(snippet.tls.caFile).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  assert.match(enrolled.stdout, /"mqttUrl": "mqtts:/);
});
