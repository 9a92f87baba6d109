/**
 * TLS end to end (docs/SECURITY.md ("Transport: TLS")): a fleet manager serving only HTTPS and MQTTS with a
 * certificate from its private CA, and edge agents with the built-in ONNX model, in one process.
 * - An edge trusting that CA (fleet.caFile) syncs results over mqtts, uploads its defect images
 *   and downloads a rolled-out model over https.
 * - An edge trusting another CA never connects, and says why in one log line and in its health.
 */
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino, type Logger } from 'pino';
import { Agent, request } from 'undici';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { ensurePrivateCa } from '../../fleet-manager/private-ca.js';
import { archiveDirectory, packArchive, unpackArchive } from '../../models/package-archive.js';
import { DEMO_MODEL_NAME, generatePartImage } from '../../models/fixtures.js';
import { useDemoModel } from '../edge-agent/demo-model.js';
import { tempDir } from '../edge-agent/fixtures.js';
import { captureLogger } from '../fleet-manager/helpers.js';
import { waitFor } from '../helpers/wait-for.js';
import { openTestIdentity } from '../helpers/identity.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { signedArchive, testPublisherKey } from '../helpers/publisher.js';

const modelDir = useDemoModel();
const silent = pino({ level: process.env.OSPREY_TEST_LOG ?? 'silent' });

function edgeAgent(dir: string, model: string, edgeId: string, fleet: Record<string, unknown>, logger: Logger): EdgeAgent {
  return createEdgeAgent(
    parseEdgeConfig(
      {
        edgeId,
        line: 'line-A',
        dataDir: path.join(dir, edgeId),
        http: { host: '127.0.0.1', port: 0 },
        model: { dir: model, retryBaseMs: 50, retryMaxMs: 500 },
        fleet,
        sync: { batchSize: 4, intervalMs: 100, ackTimeoutMs: 2000 },
        telemetry: { intervalMs: 60_000 },
        images: { retryBaseMs: 20, retryMaxMs: 200, sampling: { uncertainBand: 0 } },
      },
      'test',
      dir,
    ),
    { logger, reconnectPeriodMs: 100, finalSyncMs: 2000 },
  );
}

test('over TLS an edge trusting the fleet CA syncs, uploads and downloads; one trusting another CA never connects and says why', { timeout: 120_000 }, async (t: TestContext) => {
  const model = await modelDir;
  const dir = await tempDir(t);
  const tls = await ensurePrivateCa(path.join(dir, 'fleet', 'tls'), { hosts: [] });
  const fleet = createFleetManager({
    dataDir: path.join(dir, 'fleet'),
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    rollouts: { tickMs: 100 },
    registry: { publisherKeys: [testPublisherKey()] },
    tls: { certFile: tls.certFile, keyFile: tls.keyFile, caFile: tls.caFile },
    logger: silent,
  });
  const { httpUrl, mqttUrl } = await fleet.start();
  t.after(() => fleet.close());
  assert.match(httpUrl, /^https:/);
  assert.match(mqttUrl, /^mqtts:/);
  // The edge's copy of the CA, as an installer would put it beside the edge config.
  const edgeCa = path.join(dir, 'fleet-ca.pem');
  await copyFile(tls.caFile, edgeCa);
  const wrongCa = (await ensurePrivateCa(path.join(dir, 'other-ca'), { hosts: [] })).caFile;

  const client = new Agent({ connect: { ca: await readFile(edgeCa) } });
  t.after(() => client.close());
  // People with an admin's API token; each edge with its own enrolled credential.
  const creds = openTestIdentity(t, path.join(dir, 'fleet', 'fleet.db'));
  const admin = await creds.headers('admin');
  const api = async (method: string, p: string, body?: Buffer | string, type = 'application/json') => {
    const res = await request(`${httpUrl}${p}`, { method: method as 'GET', dispatcher: client, headers: { ...admin, ...(body !== undefined && { 'content-type': type }) }, ...(body !== undefined && { body }) });
    const text = await res.body.text();
    return { status: res.statusCode, text };
  };
  const publicKey = (await api('GET', '/api/fleet/public-key')).text;

  // The impostor first: it keeps retrying (every 100 ms) through everything below.
  const impostorLog = captureLogger('info');
  const impostorCredential = await enrolledCredentialFile(creds, 'press-wrong-ca', path.join(dir, 'press-wrong-ca.credential'));
  const impostor = edgeAgent(dir, model, 'press-wrong-ca', { mqttUrl, httpUrl, publicKey, caFile: wrongCa, credentialFile: impostorCredential }, impostorLog.logger);
  t.after(() => impostor.close());
  await impostor.start();
  const refusal = await impostorLog.waitFor((l) => typeof l.msg === 'string' && l.msg.startsWith('fleet certificate refused'));
  assert.match(refusal.msg, /^fleet certificate refused: .*\(UNABLE_TO_VERIFY_LEAF_SIGNATURE\); trusted: fleet\.caFile .*other-ca\/ca\.pem$/);

  // The real edge: results over mqtts, defect images over https.
  const credentialFile = await enrolledCredentialFile(creds, 'press-tls', path.join(dir, 'press-tls.credential'));
  const edge = edgeAgent(dir, model, 'press-tls', { mqttUrl, httpUrl, publicKey, trustedKeys: [testPublisherKey()], caFile: edgeCa, credentialFile }, silent);
  t.after(() => edge.close());
  await edge.start();
  const defects: number[] = [];
  for (let i = 0; i < 6; i++) {
    const defect = i % 3 === 1;
    const outcome = await edge.inspect(await generatePartImage({ seed: 500 + i, defect: defect ? 'scratch' : null, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
    if (outcome.record.verdict === 'defect') defects.push(outcome.record.seq);
  }
  assert.equal(defects.length, 2);
  await waitFor(() => edge.health().ackedSeq === 6, 'results synced over mqtts');
  await waitFor(() => edge.health().storage?.imagesPending === 0, 'images uploaded over https');
  const page = JSON.parse((await api('GET', '/api/results?edge=press-tls')).text) as { items: { seq: number; hasImage: boolean }[] };
  assert.equal(page.items.length, 6);
  assert.deepEqual(page.items.filter((r) => r.hasImage).map((r) => r.seq).sort(), defects.sort());

  // A rollout: the desired state names an https artifact URL; the edge downloads it with the CA.
  const files = unpackArchive(await archiveDirectory(model));
  const manifest = JSON.parse(files.get('manifest.json')!.toString()) as { version: string };
  const v2 = packArchive(new Map([...files, ['manifest.json', Buffer.from(JSON.stringify({ ...manifest, version: '2.0.0' }))]]));
  const uploaded = await api('POST', `/api/models/${DEMO_MODEL_NAME}/versions`, Buffer.from(signedArchive(v2)), 'application/x-tar');
  assert.equal(uploaded.status, 201, uploaded.text);
  const rollout = await api('POST', '/api/rollouts', JSON.stringify({ model: DEMO_MODEL_NAME, version: '2.0.0', target: { edges: ['press-tls'] }, stages: [{ mode: 'live' }] }));
  assert.equal(rollout.status, 201, rollout.text);
  await waitFor(() => edge.health().model === `${DEMO_MODEL_NAME}@2.0.0`, 'v2 downloaded over https and active', 60_000);

  // All the while the impostor retried and never got in: not connected, one log line, unknown to the fleet.
  const health = impostor.health();
  assert.equal(health.fleet.connected, false);
  assert.match(health.fleet.lastError ?? '', /^fleet certificate refused: /);
  assert.equal(impostorLog.lines.filter((l) => String(l.msg).startsWith('fleet certificate refused')).length, 1, 'said once, not at every retry');
  const edges = JSON.parse((await api('GET', '/api/edges')).text) as { edges: { id: string }[] };
  assert.deepEqual(edges.edges.map((e) => e.id), ['press-tls']);
});
