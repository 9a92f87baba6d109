/** edge-agent/fleet-tls.ts and `fleet.caFile`: the edge trusts only the CA it was given, for the host it dialled. */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { request } from 'undici';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { certificateRefusal, loadEdgeFleetTls } from '../../edge-agent/fleet-tls.js';
import { ensurePrivateCa } from '../../fleet-manager/private-ca.js';
import { tempDir } from './fixtures.js';

const base = { edgeId: 'press-1', line: 'line-A', dataDir: 'data', model: { dir: 'model' } };

test('fleet.caFile: resolved against the config file, and only with mqtts:// and https:// URLs', async (t) => {
  const dir = await tempDir(t);
  const ok = parseEdgeConfig({ ...base, fleet: { mqttUrl: 'mqtts://fleet:8883', httpUrl: 'https://fleet:8443', caFile: 'ca.pem' } }, 'edge.json', dir);
  assert.equal(ok.fleet?.caFile, path.join(dir, 'ca.pem'));
  assert.throws(() => parseEdgeConfig({ ...base, fleet: { mqttUrl: 'mqtt://fleet:1883', caFile: 'ca.pem' } }, 'edge.json', dir), {
    code: 'OSP_ERR_CONFIG',
    message: 'config fleet.mqttUrl: must be mqtts:// when fleet.caFile is set (edge.json)',
  });
  assert.throws(() => parseEdgeConfig({ ...base, fleet: { mqttUrl: 'mqtts://fleet:8883', httpUrl: 'http://fleet:8080', caFile: 'ca.pem' } }, 'edge.json', dir), {
    code: 'OSP_ERR_CONFIG',
    message: 'config fleet.httpUrl: must be https:// when fleet.caFile is set (edge.json)',
  });
});

test('loadEdgeFleetTls: none without caFile; a missing or non-PEM file is one line naming fleet.caFile', async (t) => {
  const dir = await tempDir(t);
  assert.equal(await loadEdgeFleetTls({ fleet: { mqttUrl: 'mqtts://fleet:8883' } }), undefined);
  const missing = path.join(dir, 'missing.pem');
  await assert.rejects(loadEdgeFleetTls({ fleet: { mqttUrl: 'mqtts://fleet:8883', caFile: missing } }), {
    code: 'OSP_ERR_CONFIG',
    message: `config fleet.caFile: cannot read ${missing} (ENOENT)`,
  });
  const junk = path.join(dir, 'junk.pem');
  await writeFile(junk, 'not a certificate');
  await assert.rejects(loadEdgeFleetTls({ fleet: { mqttUrl: 'mqtts://fleet:8883', caFile: junk } }), { code: 'OSP_ERR_CONFIG', message: /^config fleet\.caFile: .*junk\.pem is not a PEM certificate/ });

  const { caFile } = await ensurePrivateCa(path.join(dir, 'tls'), { hosts: [] });
  const byName = await loadEdgeFleetTls({ fleet: { mqttUrl: 'mqtts://fleet.plant.local:8883', caFile } });
  t.after(() => byName?.dispatcher.close());
  assert.deepEqual(byName?.mqtt, { ca: await readFile(caFile), rejectUnauthorized: true, servername: 'fleet.plant.local' });
  const byIp = await loadEdgeFleetTls({ fleet: { mqttUrl: 'mqtts://[::1]:8883', caFile } });
  t.after(() => byIp?.dispatcher.close());
  assert.equal(byIp?.mqtt.servername, undefined, 'no SNI for an IP address (RFC 6066)');
});

/** An HTTPS server on `host`, port 0, with the fleet certificate of `tlsDir`. */
async function httpsServer(t: TestContext, tlsDir: string, host: string): Promise<string> {
  const files = await ensurePrivateCa(tlsDir, { hosts: [] });
  const server = createServer({ cert: await readFile(files.certFile), key: await readFile(files.keyFile) }, (_req, res) => res.end('ok'));
  server.listen(0, host);
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `https://${host}:${(server.address() as AddressInfo).port}`;
}

test("the edge's dispatcher accepts the fleet signed by its CA, for the host it dialled, and nothing else", async (t) => {
  const dir = await tempDir(t);
  const url = await httpsServer(t, path.join(dir, 'fleet-tls'), '127.0.0.1');
  const tlsFor = async (caFile: string) => {
    const tls = (await loadEdgeFleetTls({ fleet: { mqttUrl: 'mqtts://127.0.0.1:8883', caFile } }))!;
    t.after(() => tls.dispatcher.close());
    return tls;
  };
  const right = await tlsFor(path.join(dir, 'fleet-tls', 'ca.pem'));
  const res = await request(url, { dispatcher: right.dispatcher });
  assert.equal(res.statusCode, 200);
  assert.equal(await res.body.text(), 'ok');

  const otherCa = (await ensurePrivateCa(path.join(dir, 'other'), { hosts: [] })).caFile;
  const wrong = await tlsFor(otherCa);
  const err = await request(url, { dispatcher: wrong.dispatcher }).then(
    () => assert.fail('a fleet signed by another CA was accepted'),
    (e: unknown) => e,
  );
  assert.equal((err as NodeJS.ErrnoException).code, 'UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  assert.equal(certificateRefusal(err, otherCa), `fleet certificate refused: unable to verify the first certificate (UNABLE_TO_VERIFY_LEAF_SIGNATURE); trusted: fleet.caFile ${otherCa}`);

  // CA rotation: a caFile holding the old and the new CA accepts a fleet signed by either.
  const bundle = path.join(dir, 'bundle.pem');
  await writeFile(bundle, Buffer.concat([await readFile(otherCa), await readFile(path.join(dir, 'fleet-tls', 'ca.pem'))]));
  const both = await tlsFor(bundle);
  assert.equal((await request(url, { dispatcher: both.dispatcher })).statusCode, 200);

  // Signed by the right CA but for other names: 127.0.0.2 is not in the certificate.
  const elsewhere = await httpsServer(t, path.join(dir, 'fleet-tls'), '127.0.0.2');
  await assert.rejects(request(elsewhere, { dispatcher: right.dispatcher }), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
});

test('certificateRefusal names only certificate refusals', () => {
  const refused = Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' });
  assert.equal(certificateRefusal(refused, undefined), "fleet certificate refused: certificate has expired (CERT_HAS_EXPIRED); trusted: the system's CAs (no fleet.caFile)");
  assert.equal(certificateRefusal(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:8883'), { code: 'ECONNREFUSED' }), '/ca.pem'), undefined);
  assert.equal(certificateRefusal(new Error('TLS not authorized'), '/ca.pem'), 'fleet certificate refused: TLS not authorized; trusted: fleet.caFile /ca.pem');
});
