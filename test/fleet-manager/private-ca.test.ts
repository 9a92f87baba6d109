/** The fleet's private CA (fleet-manager/private-ca.ts): files, modes, names, reuse and re-issue. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ensurePrivateCa, RENEW_BEFORE_MS, SERVER_VALIDITY_DAYS } from '../../fleet-manager/private-ca.js';
import { tempDir } from './helpers.js';

const read = async (file: string) => new X509Certificate(await readFile(file));
const mode = async (file: string) => (await stat(file)).mode & 0o777;

test('ensurePrivateCa writes a CA and a server certificate it signed, keys 0600, SAN covering every host', async (t) => {
  const dir = path.join(await tempDir(t), 'tls');
  const files = await ensurePrivateCa(dir, { hosts: ['fleet.plant.local', '10.1.2.3', 'FLEET-B', '[fd00::7]'] });
  assert.equal(files.created, true);
  assert.deepEqual(
    [files.caFile, files.certFile, files.keyFile].map((f) => path.basename(f)),
    ['ca.pem', 'fleet.pem', 'fleet.key'],
  );
  assert.equal(await mode(path.join(dir, 'ca.key')), 0o600);
  assert.equal(await mode(files.keyFile), 0o600);
  assert.equal((await stat(dir)).mode & 0o077, 0, 'the directory is the owner\'s only');

  const ca = await read(files.caFile);
  const cert = await read(files.certFile);
  assert.equal(ca.ca, true);
  assert.equal(cert.ca, false);
  assert.ok(cert.verify(ca.publicKey), 'the server certificate is signed by the CA');
  assert.ok(cert.checkPrivateKey(createPrivateKey(await readFile(files.keyFile))), 'fleet.key is the certificate\'s key');
  for (const host of ['fleet.plant.local', 'fleet-b', 'localhost']) assert.equal(cert.checkHost(host), host, host);
  for (const ip of ['10.1.2.3', '127.0.0.1', 'fd00::7', '::1']) assert.ok(cert.checkIP(ip), ip);
  assert.equal(cert.checkHost('other.plant.local'), undefined, 'no name it was not asked for');
  assert.equal(cert.checkIP('10.1.2.4'), undefined);
  assert.match(cert.keyUsage?.join(',') ?? '', /1\.3\.6\.1\.5\.5\.7\.3\.1/, 'extended key usage: serverAuth');
});

test('ensurePrivateCa is idempotent; a new host or a near expiry re-issues the server certificate under the same CA', async (t) => {
  const dir = path.join(await tempDir(t), 'tls');
  const now = new Date('2026-01-01T00:00:00Z');
  const first = await ensurePrivateCa(dir, { hosts: ['fleet.plant.local'], now });
  const snapshot = async () => Promise.all(['ca.pem', 'ca.key', 'fleet.pem', 'fleet.key'].map((f) => readFile(path.join(dir, f), 'utf8')));
  const before = await snapshot();

  const again = await ensurePrivateCa(dir, { hosts: ['fleet.plant.local'], now });
  assert.equal(again.created, false);
  assert.deepEqual(again, { ...first, created: false });
  assert.deepEqual(await snapshot(), before, 'nothing rewritten');

  // A host not covered yet: new server certificate and key, same CA.
  const wider = await ensurePrivateCa(dir, { hosts: ['fleet.plant.local', '10.9.9.9'], now });
  assert.equal(wider.created, true);
  const after = await snapshot();
  assert.deepEqual(after.slice(0, 2), before.slice(0, 2), 'the CA is kept');
  assert.notEqual(after[2], before[2]);
  assert.notEqual(after[3], before[3]);
  assert.ok((await read(wider.certFile)).checkIP('10.9.9.9'));

  // Within RENEW_BEFORE_MS of expiry: re-issued.
  const late = new Date(now.getTime() + SERVER_VALIDITY_DAYS * 86_400_000 - RENEW_BEFORE_MS + 86_400_000);
  assert.equal((await ensurePrivateCa(dir, { hosts: ['10.9.9.9'], now: late })).created, true);
  const renewed = await read(wider.certFile);
  assert.ok(new Date(renewed.validTo).getTime() > late.getTime() + RENEW_BEFORE_MS);
  assert.ok(renewed.verify((await read(wider.caFile)).publicKey));
});

test('ensurePrivateCa refuses a bad host and a CA whose key is missing, with one line', async (t) => {
  const dir = path.join(await tempDir(t), 'tls');
  await assert.rejects(ensurePrivateCa(dir, { hosts: ['not a host'] }), { code: 'OSP_ERR_CONFIG', message: /TLS host "not a host"/ });
  await ensurePrivateCa(dir, { hosts: [] });
  await rm(path.join(dir, 'ca.key'));
  await assert.rejects(ensurePrivateCa(dir, { hosts: [] }), { code: 'OSP_ERR_CONFIG', message: /only one of ca\.pem and ca\.key/ });
  // A damaged server certificate is simply issued again (the CA key is back).
  await rm(dir, { recursive: true });
  const files = await ensurePrivateCa(dir, { hosts: [] });
  await writeFile(files.certFile, 'garbage');
  assert.equal((await ensurePrivateCa(dir, { hosts: [] })).created, true);
  assert.ok((await read(files.certFile)).checkHost('localhost'));
});
