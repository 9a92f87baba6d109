/**
 * Edge enrollment (issue 14) against a real fleet over real HTTP: `osprey edge enroll` run as a
 * child process exchanges a one-time token for the edge credential (0600 file, never printed),
 * tokens are one-time, expiring and bound; failed guesses are rate-limited; artifact downloads
 * need a live edge credential.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { packArchive } from '../../models/package-archive.js';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { OSPREY_BIN } from '../helpers/osprey-process.js';
import { brokerUrlFor } from '../../cli/edge-enroll.js';
import { packageFiles, startFleet, uploadTar, type TestFleet } from './control-helpers.js';

const run = promisify(execFile);

/** Runs `osprey edge enroll …`; resolves with the exit code and output (never throws on exit ≠ 0). */
async function enrollCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [OSPREY_BIN, 'edge', 'enroll', ...args], { timeout: 30_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function enrollHttp(fleet: TestFleet, body: unknown): Promise<{ status: number; body: Record<string, string> }> {
  const res = await fetch(`${fleet.httpUrl}/api/edges/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, string> };
}

const token = async (fleet: TestFleet, edgeId: string | null, line: string | null = null) =>
  (await fleet.creds.identity.createEnrollmentToken({ edgeId, line, ttlMs: 600_000, createdBy: 'user:test-admin' })).token;

test('osprey edge enroll writes the credential 0600 without printing it; the token works once; the audit names the edge', async (t) => {
  const fleet = await startFleet(t);
  const out = join(fleet.dataDir, 'edge', 'fleet.credential');
  const tok = await token(fleet, 'press-1');
  const first = await enrollCli(['--fleet', fleet.httpUrl, '--token', tok, '--edge-id', 'press-1', '--out', out]);
  assert.equal(first.code, 0, first.stderr);
  const credential = (await readFile(out, 'utf8')).trim();
  assert.match(credential, /^ospe_/);
  assert.equal((await stat(out)).mode & 0o777, 0o600, 'only its owner reads it');
  assert.ok(!first.stdout.includes(credential) && !first.stderr.includes(credential), 'never printed');
  assert.ok(!first.stdout.includes(tok), 'nor is the token');
  assert.match(first.stdout, /"credentialFile": ".*fleet\.credential"/);
  assert.match(first.stdout, new RegExp(`"httpUrl": "${fleet.httpUrl}"`));
  assert.match(first.stdout, /"mqttUrl": "mqtt:\/\/127\.0\.0\.1:\d+"/);
  const cred = await fleet.creds.identity.resolveEdgeCredential(credential);
  assert.equal(cred?.edgeId, 'press-1', 'the fleet knows the credential as press-1');

  const [audit] = await fleet.creds.identity.queryAudit({ action: 'edge.enroll' });
  assert.equal(audit?.actor, 'edge:press-1');
  assert.equal(audit?.target, 'edge:press-1');
  assert.ok(!JSON.stringify(audit).includes(credential.split('.')[1]!), 'no secret in the audit log');

  // The same token again: refused, and the credential file already there is left alone.
  const again = await enrollCli(['--fleet', fleet.httpUrl, '--token', tok, '--edge-id', 'press-1', '--out', out]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /^osprey: enrollment of press-1 refused by the fleet \(HTTP 401 OSP_ERR_UNAUTHENTICATED\): enrollment refused: the token was used already \[OSP_ERR_UNAUTHENTICATED\]\n$/);
  assert.equal((await readFile(out, 'utf8')).trim(), credential);
  assert.ok(await fleet.creds.identity.resolveEdgeCredential(credential), 'a refused reuse revokes nothing');
});

test('enrollment refuses expired tokens, tokens of another edge and malformed bodies; a line token enrolls one edge of any id', async (t) => {
  const fleet = await startFleet(t);
  // A token made an hour ago with ten minutes to live (same database, a clock an hour behind).
  const past = openSqliteIdentityStore({ file: join(fleet.dataDir, 'fleet.db'), logger: pino({ level: 'silent' }), now: () => Date.now() - 3_600_000 });
  t.after(() => past.close());
  const expired = (await past.createEnrollmentToken({ edgeId: 'press-1', line: null, ttlMs: 600_000, createdBy: 'test' })).token;
  const r1 = await enrollHttp(fleet, { token: expired, edgeId: 'press-1' });
  assert.equal(r1.status, 401);
  assert.match(r1.body.message!, /expired/);

  const forX = await token(fleet, 'press-x');
  const r2 = await enrollHttp(fleet, { token: forX, edgeId: 'press-y' });
  assert.equal(r2.status, 401);
  assert.match(r2.body.message!, /another edge than press-y/);
  assert.equal((await enrollHttp(fleet, { token: forX, edgeId: 'press-x' })).status, 200, 'the refused try did not spend it');

  const lineToken = await token(fleet, null, 'line-A');
  const r3 = await enrollHttp(fleet, { token: lineToken, edgeId: 'any-edge-7' });
  assert.equal(r3.status, 200);
  assert.equal(r3.body.edgeId, 'any-edge-7');
  assert.equal((await fleet.creds.identity.resolveEdgeCredential(r3.body.credential!))?.line, 'line-A');
  assert.equal((await enrollHttp(fleet, { token: lineToken, edgeId: 'any-edge-8' })).status, 401, 'a line token is one-time too');

  // A line token cannot take over an edge already enrolled (it would revoke its credential).
  const working = (await enrollHttp(fleet, { token: await token(fleet, 'press-9'), edgeId: 'press-9' })).body.credential!;
  const takeover = await enrollHttp(fleet, { token: await token(fleet, null, 'line-A'), edgeId: 'press-9' });
  assert.equal(takeover.status, 401);
  assert.match(takeover.body.message!, /press-9 is enrolled already; a line token enrolls new edges only/);
  assert.equal((await fleet.creds.identity.resolveEdgeCredential(working))?.edgeId, 'press-9', 'its credential still works');
  const fleetId = await enrollHttp(fleet, { token: await token(fleet, null, 'line-A'), edgeId: 'osprey-fleet' });
  assert.equal(fleetId.status, 400, "the fleet's MQTT identity is no edge id");

  const bad = await enrollHttp(fleet, { token: 'x', edgeId: 'has space' });
  assert.equal(bad.status, 400);
  assert.match(bad.body.message!, /edgeId/);
  const extra = await enrollHttp(fleet, { token: 'x', edgeId: 'e', role: 'admin' });
  assert.equal(extra.status, 400);
  assert.match(extra.body.message!, /\(role\)/);
});

test('guessing enrollment tokens is rate-limited per address: after 10 failures even a valid token waits', async (t) => {
  const fleet = await startFleet(t);
  const valid = await token(fleet, 'press-1');
  for (let i = 0; i < 10; i++) {
    const guess = `ospn_${'A'.repeat(12)}.${String(i).padStart(43, 'x')}`;
    assert.equal((await enrollHttp(fleet, { token: guess, edgeId: 'press-1' })).status, 401);
  }
  const res = await fetch(`${fleet.httpUrl}/api/edges/enroll`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: valid, edgeId: 'press-1' }) });
  assert.equal(res.status, 429);
  assert.ok(Number(res.headers.get('retry-after')) > 0);
  assert.equal(((await res.json()) as { error: string }).error, 'OSP_ERR_RATE_LIMITED');
  assert.equal((await fleet.creds.identity.listEdgeCredentials()).length, 0, 'no credential was made');
});

test('artifacts download with a live edge credential only: none 401, revoked 401, another edge any registered artifact', async (t) => {
  const fleet = await startFleet(t);
  const admin = await fleet.creds.headers('admin');
  const up = await uploadTar(fleet.httpUrl, 'm', packArchive(packageFiles('m', '1.0.0')), admin);
  assert.equal(up.status, 201);
  const sha256 = String(up.body.sha256);
  const url = `${fleet.httpUrl}/api/artifacts/${sha256}`;
  const get = (credential?: string) => fetch(url, credential ? { headers: { authorization: `Bearer ${credential}` } } : {});

  const none = await get();
  assert.equal(none.status, 401);
  assert.equal(((await none.json()) as { error: string }).error, 'OSP_ERR_UNAUTHENTICATED');

  const tok = await token(fleet, 'press-1');
  const first = (await enrollHttp(fleet, { token: tok, edgeId: 'press-1' })).body.credential!;
  const ok = await get(first);
  assert.equal(ok.status, 200);
  assert.equal(Buffer.from(await ok.arrayBuffer()).length, Number(ok.headers.get('content-length')));

  // Re-enrollment (a new token) replaces the credential: the old one stops at once.
  const second = (await enrollHttp(fleet, { token: await token(fleet, 'press-1'), edgeId: 'press-1' })).body.credential!;
  const revoked = await get(first);
  assert.equal(revoked.status, 401);
  assert.match(((await revoked.json()) as { message: string }).message, /unknown or revoked/);
  assert.equal((await get(second)).status, 200);
  // Any enrolled edge may fetch any registered artifact: they are content-addressed and signed.
  const other = (await enrollHttp(fleet, { token: await token(fleet, 'press-2'), edgeId: 'press-2' })).body.credential!;
  assert.equal((await get(other)).status, 200);
  // Revoking every credential of the edge (what an admin does for a stolen one).
  await fleet.creds.identity.revokeEdgeCredentials('press-1');
  assert.equal((await get(second)).status, 401);
  assert.equal((await get(other)).status, 200, 'other edges are not affected');
});

test('the broker URL a fleet names for itself on loopback is printed with the host the edge reaches the fleet by', () => {
  assert.equal(brokerUrlFor('mqtt://127.0.0.1:1883', 'http://fleet.plant.local:8080/'), 'mqtt://fleet.plant.local:1883');
  assert.equal(brokerUrlFor('mqtt://0.0.0.0:1883', 'http://10.0.0.5:8080'), 'mqtt://10.0.0.5:1883');
  assert.equal(brokerUrlFor('mqtts://broker.plant.local:8883', 'http://fleet.plant.local:8080'), 'mqtts://broker.plant.local:8883', 'a real name is kept');
  assert.equal(brokerUrlFor(undefined, 'http://fleet.plant.local:8080'), undefined);
});
