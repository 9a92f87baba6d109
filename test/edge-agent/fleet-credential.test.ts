/**
 * The edge's own credential (fleet.credentialFile): read once at start with clear refusals, sent
 * as the MQTT password with the edge id as username and client id, and as a bearer only to the
 * fleet's own origin. Never logged.
 */
import assert from 'node:assert/strict';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { fleetCredential, readFleetCredential } from '../../edge-agent/fleet-credential.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { isOspreyError } from '../../protocol/errors.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir } from './fixtures.js';

const modelDir = useDemoModel();
const SECRET = `ospe_${'A'.repeat(12)}.${'b'.repeat(43)}`;

async function credentialFile(dir: string, text: string, mode = 0o600): Promise<string> {
  const file = path.join(dir, 'fleet.credential');
  await writeFile(file, text, { mode });
  await chmod(file, mode);
  return file;
}

test('a credential file that is missing, readable by others or not a credential is refused in one line naming the file', async (t) => {
  const dir = await tempDir(t);
  const missing = path.join(dir, 'nope');
  await assert.rejects(readFleetCredential(missing, undefined), (err) => {
    assert.ok(isOspreyError(err, 'OSP_ERR_CONFIG'));
    assert.match(err.message, /^config fleet\.credentialFile \(.*nope\): cannot read it \(ENOENT\); enroll the edge with "osprey edge enroll"$/);
    return true;
  });
  const open = await credentialFile(dir, `${SECRET}\n`, 0o644);
  await assert.rejects(readFleetCredential(open, undefined), (err) => {
    assert.ok(isOspreyError(err, 'OSP_ERR_CONFIG'));
    assert.match(err.message, /other users may read or change it \(mode 644\); run chmod 600 on it/);
    assert.ok(!err.message.includes(SECRET), 'the secret is never in a message');
    return true;
  });
  const wrong = await credentialFile(dir, 'ospn_notanedgecredential\n');
  await assert.rejects(readFleetCredential(wrong, undefined), (err) => {
    assert.ok(isOspreyError(err, 'OSP_ERR_CONFIG'));
    assert.match(err.message, /does not hold an edge credential/);
    assert.ok(!err.message.includes('ospn_notanedgecredential'));
    return true;
  });
  const good = await credentialFile(dir, `${SECRET}\n`);
  const cred = await readFleetCredential(good, 'http://fleet.example:8080');
  assert.deepEqual(cred.mqtt('press-1'), { username: 'press-1', password: SECRET });
});

test('the credential goes only to the fleet origin, never to another server a URL names', () => {
  const cred = fleetCredential(SECRET, 'http://fleet.example:8080/');
  assert.deepEqual(cred.headersFor('http://fleet.example:8080/api/artifacts/abc'), { authorization: `Bearer ${SECRET}` });
  assert.deepEqual(cred.headersFor('http://fleet.example:9090/api/artifacts/abc'), {}, 'another port');
  assert.deepEqual(cred.headersFor('https://fleet.example:8080/api/artifacts/abc'), {}, 'another scheme');
  assert.deepEqual(cred.headersFor('http://evil.example/api/artifacts/abc'), {}, 'another host');
  assert.deepEqual(cred.headersFor('not a url'), {});
  assert.deepEqual(fleetCredential(SECRET, undefined).headersFor('http://fleet.example:8080/x'), {}, 'no fleet.httpUrl: sent nowhere');
});

test('fleet.credentialFile is resolved against the config file directory', () => {
  const c = parseEdgeConfig(
    { edgeId: 'e1', line: 'L', dataDir: 'data', model: { dir: 'm' }, fleet: { mqttUrl: 'mqtt://h:1883', credentialFile: 'keys/fleet.credential' } },
    '/etc/osprey/edge.json',
    '/etc/osprey',
  );
  assert.equal(c.fleet?.credentialFile, '/etc/osprey/keys/fleet.credential');
});

test('the edge connects to MQTT as its own id (username and client id) with its credential as password, and never logs it', async (t) => {
  const dir = await tempDir(t);
  const broker = await startBroker();
  t.after(() => broker.close());
  const seen: { clientId: string; username: string | undefined; password: string | undefined }[] = [];
  broker.broker.authenticate = (client, username, password, done) => {
    seen.push({ clientId: client.id, username, password: password?.toString() });
    done(null, true);
  };
  const fleet = await startFakeFleet(broker.url);
  t.after(() => fleet.close());
  const file = await credentialFile(dir, `${SECRET}\n`);
  let logged = '';
  const logger = pino({ level: 'trace' }, new Writable({ write: (chunk, _enc, cb) => ((logged += String(chunk)), cb()) }));
  const agent = createEdgeAgent(edgeConfig(dir, await modelDir, { edgeId: 'press-7', fleet: { mqttUrl: broker.url, credentialFile: file } }), { logger, reconnectPeriodMs: 100, finalSyncMs: 200 });
  await agent.start();
  await fleet.next('state', (m) => m.msg.edgeId === 'press-7' && m.msg.online);
  await agent.close();
  const edge = seen.filter((s) => s.username === 'press-7');
  assert.ok(edge.length >= 1, `the edge authenticated as press-7: ${JSON.stringify(seen.map((s) => s.clientId))}`);
  for (const s of edge) {
    assert.equal(s.clientId, 'press-7', 'client id bound to the edge id');
    assert.equal(s.password, SECRET);
  }
  assert.ok(logged.length > 0, 'the agent logged');
  assert.ok(!logged.includes(SECRET) && !logged.includes(SECRET.slice(5)), 'the credential is never logged');
});

test('an edge whose credential file is missing does not start, and says which file', async (t) => {
  const dir = await tempDir(t);
  const agent = createEdgeAgent(edgeConfig(dir, await modelDir, { fleet: { mqttUrl: 'mqtt://127.0.0.1:1', credentialFile: path.join(dir, 'absent') } }), { logger: pino({ level: 'silent' }) });
  await assert.rejects(agent.start(), /config fleet\.credentialFile \(.*absent\): cannot read it/);
});
