/** `osprey fleet tls-init`: files, the printed config section (which `osprey fleet start` accepts as is), reuse, errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { X509Certificate } from 'node:crypto';
import { OSPREY_BIN, startOsprey } from '../helpers/osprey-process.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const exec = promisify(execFile);

async function osprey(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(process.execPath, [OSPREY_BIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

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
