/**
 * An edge with its own identity, end to end (issue 14): enrolled by the real `osprey edge enroll`,
 * a real edge agent syncs its results over MQTT with its credential, uploads its kept images and
 * downloads a rolled-out model with it; image uploads forged as another edge, or for a seq the
 * edge has not produced, are refused and leave nothing at the fleet, and the real image that
 * follows is accepted.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { archiveDirectory, packArchive, unpackArchive } from '../../models/package-archive.js';
import { DEMO_MODEL_NAME, ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { OSPREY_BIN } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { signedArchive, testPublisherKey } from '../helpers/publisher.js';

const run = promisify(execFile);

test('an enrolled edge syncs, uploads its images and downloads its model with its credential; forged image uploads are refused', { timeout: 120_000 }, async (t) => {
  const fleet = await startFleet(t);
  const admin = await fleet.creds.headers('admin');
  const api = async (method: string, path: string, body?: unknown, headers: Record<string, string> = admin) => {
    const res = await fetch(`${fleet.httpUrl}${path}`, body === undefined ? { method, headers } : { method, headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await res.text();
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- checked by the asserts
    return { status: res.status, body: (text && res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : text) as any };
  };

  // The model: v1 at the edge, the same package as 2.0.0 in the registry.
  const v1Dir = await ensureDemoModel(join(fleet.dataDir, 'models'));
  const files = unpackArchive(await archiveDirectory(v1Dir));
  const manifest = JSON.parse(files.get('manifest.json')!.toString()) as { version: string };
  const v2 = packArchive(new Map([...files, ['manifest.json', Buffer.from(JSON.stringify({ ...manifest, version: '2.0.0' }))]]));
  const up = await fetch(`${fleet.httpUrl}/api/models/${DEMO_MODEL_NAME}/versions`, { method: 'POST', body: signedArchive(v2), headers: { ...admin, 'content-type': 'application/x-tar' } });
  assert.equal(up.status, 201);
  const publicKey = (await api('GET', '/api/fleet/public-key')).body as string;

  // Enrollment by the real command, into the edge's data directory.
  const dataDir = join(fleet.dataDir, 'press-1');
  const { token } = await fleet.creds.identity.createEnrollmentToken({ edgeId: 'press-1', line: null, ttlMs: 600_000, createdBy: 'user:test-admin' });
  const credentialFile = join(dataDir, 'fleet.credential');
  await run(process.execPath, [OSPREY_BIN, 'edge', 'enroll', '--fleet', fleet.httpUrl, '--token', token, '--edge-id', 'press-1', '--out', credentialFile], { timeout: 30_000 });

  const config = parseEdgeConfig({
    edgeId: 'press-1',
    line: 'line-A',
    dataDir,
    http: { host: '127.0.0.1', port: 0 },
    // Signed by the test publisher, whose key the edge trusts (the fleet's own key signs nothing here).
    fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile },
    model: { dir: v1Dir, retryBaseMs: 50, retryMaxMs: 500 },
    sync: { batchSize: 10, intervalMs: 100 },
    telemetry: { intervalMs: 200 },
    images: { sampling: { keepGoodEvery: 1 }, retryBaseMs: 20, retryMaxMs: 200 },
  });
  const agent = createEdgeAgent(config, { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 });
  t.after(() => agent.close());
  await agent.start();

  let seed = 700;
  const frame = () => generatePartImage({ seed: seed++, defect: seed % 2 === 0 ? 'scratch' : null, format: 'jpeg' });
  const sent = new Map<number, Buffer>();
  for (let i = 0; i < 4; i++) {
    const img = await frame();
    sent.set((await agent.inspect(img, { camera: 'cam1', source: 'http' })).record.seq, img);
  }
  // Results over MQTT with the credential: the fleet acks all four.
  await waitFor(async () => (await api('GET', '/api/edges')).body.edges?.find((e: { id: string; ackedSeq: number }) => e.id === 'press-1' && e.ackedSeq === 4), 'results 1..4 at the fleet');
  // Images over HTTP with the credential.
  const image = (seq: number) => api('GET', `/api/results/press-1/${seq}/image`);
  await waitFor(async () => (await image(4)).status === 200, 'image 4 at the fleet');
  for (const [seq, bytes] of sent) {
    const res = await fetch(`${fleet.httpUrl}/api/results/press-1/${seq}/image`, { headers: admin });
    assert.equal(sha256(Buffer.from(await res.arrayBuffer())), sha256(bytes), `image ${seq} is the edge's`);
  }

  // Attacks on the next result, seq 5, before the edge has produced it.
  const forged = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(200, 7)]);
  const other = await fleet.creds.enrollEdge('press-2');
  const mine = (await readFile(credentialFile, 'utf8')).trim();
  const put = async (credential: string, edgeId: string, seq: number) => {
    const res = await fetch(`${fleet.httpUrl}/api/results/${edgeId}/${seq}/image`, { method: 'PUT', body: forged, headers: { authorization: `Bearer ${credential}`, 'content-type': 'image/jpeg' } });
    return { status: res.status, body: (await res.json()) as { error: string; message: string } };
  };
  const asOther = await put(other, 'press-1', 5);
  assert.equal(asOther.status, 403, 'another edge cannot upload press-1 images');
  assert.equal(asOther.body.error, 'OSP_ERR_FORBIDDEN');
  assert.match(asOther.body.message, /edge press-2 cannot upload images of edge press-1/);
  assert.equal((await put(other, 'press-1', 1)).status, 403, 'not for a result press-1 did produce either');
  const ahead = await put(mine, 'press-1', 5);
  assert.equal(ahead.status, 503, "press-1's own credential cannot plant an image on a result not produced yet");
  assert.equal(ahead.body.error, 'OSP_ERR_RESULT_UNSEEN');
  assert.equal((await put(mine, 'press-1', 1_000_000)).status, 503);
  assert.equal((await image(5)).status, 404, 'the fleet stored nothing');
  assert.equal((await image(1_000_000)).status, 404);

  // The real seq 5 and its image: accepted, the real bytes.
  const real = await frame();
  assert.equal((await agent.inspect(real, { camera: 'cam1', source: 'http' })).record.seq, 5);
  await waitFor(async () => (await image(5)).status === 200, 'the real image 5 at the fleet');
  const got = await fetch(`${fleet.httpUrl}/api/results/press-1/5/image`, { headers: admin });
  assert.equal(sha256(Buffer.from(await got.arrayBuffer())), sha256(real));
  const storage = agent.health().storage!;
  assert.equal(storage.imagesPending, 0);

  // A rollout: the edge downloads 2.0.0 from /api/artifacts with its credential, verifies and runs it.
  const r = await api('POST', '/api/rollouts', { model: DEMO_MODEL_NAME, version: '2.0.0', target: { edges: ['press-1'] }, stages: [{ mode: 'live' }] });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  await waitFor(() => agent.health().model === `${DEMO_MODEL_NAME}@2.0.0` || undefined, 'v2 active at the edge', 60_000, 50);
  const after = await agent.inspect(await frame(), { camera: 'cam1', source: 'http' });
  assert.equal(after.record.model, `${DEMO_MODEL_NAME}@2.0.0`);
});

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
