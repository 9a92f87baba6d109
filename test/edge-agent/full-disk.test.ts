/**
 * The edge on a full disk (issue 13): a real edge agent whose data directory is a small tmpfs,
 * fed 1000 frames while keeping every image, uploading them to a real fleet app until the link is
 * cut; and a model download that runs out of disk. The line must get every verdict, every result
 * must be stored, and nothing half-written may be left behind.
 */
import assert from 'node:assert/strict';
import { readdir, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { pino } from 'pino';
import { connectAsync } from 'mqtt';
import { createIngest } from '../../fleet-manager/ingest.js';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { openSqliteImageStore } from '../../fleet-manager/image-store.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { freeBytes } from '../../edge-agent/disk-space.js';
import { generateSigningKeys, signArtifact } from '../../models/artifact-signature.js';
import { generatePartImage } from '../../models/fixtures.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { startTcpProxy } from '../../simulator/tcp-proxy.js';
import { cleanupStack, mountTmpfs } from '../helpers/tmpfs.js';
import { waitFor } from '../helpers/wait-for.js';
import { startArtifactServer, sha256Of } from './artifact-server.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, startBroker, tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();
const MiB = 1 << 20;

/** Every file under `dir` with its size. */
async function files(dir: string): Promise<{ file: string; size: number }[]> {
  const out: { file: string; size: number }[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await files(full)));
    else out.push({ file: full, size: (await stat(full)).size });
  }
  return out;
}

test('1000 frames on an 8 MiB disk, keeping every image: every verdict answered and stored, uploaded images go first, no 0-byte file', { timeout: 180_000 }, async (t) => {
  const defer = cleanupStack(t);
  const disk = await mountTmpfs(t, '8m', defer);
  if (!disk) return;
  const dir = await tempDir(t);
  const logger = pino({ level: 'silent' });
  // The fleet, on the ordinary disk: MQTT (a fake fleet that acks) and a real app taking images.
  const broker = await startBroker();
  defer(() => broker.close());
  const fleet = await startFakeFleet(broker.url);
  defer(() => fleet.close());
  const fleetStore = openSqliteStore({ file: path.join(dir, 'fleet.db'), logger });
  const fleetImages = openSqliteImageStore({ file: path.join(dir, 'fleet.db'), dir: path.join(dir, 'fleet-images'), logger });
  defer(async () => {
    await fleetImages.close();
    await fleetStore.close();
  });
  // The fleet's own ingest stores what the edge reports, so it knows which results the images are for.
  const ingestClient = await connectAsync(broker.url, { clientId: 'fleet-ingest', reconnectPeriod: 100 });
  defer(() => ingestClient.endAsync(true));
  const ingest = createIngest({ client: ingestClient, store: fleetStore, logger });
  await ingest.start();
  defer(() => ingest.stop());
  const identity = openTestIdentity(t, path.join(dir, 'fleet.db'));
  const credentialFile = path.join(dir, 'fleet.credential');
  await writeFile(credentialFile, await identity.enrollEdge('edge-test'), { mode: 0o600 });
  const app = await buildApp({ store: fleetStore, identity: identity.identity, logger, images: { images: fleetImages, maxImageBytes: 1 << 20 } });
  defer(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const proxy = await startTcpProxy((app.server.address() as AddressInfo).port);
  defer(() => proxy.close());

  const config = edgeConfig(dir, await modelDir, {
    dataDir: disk,
    fleet: { mqttUrl: broker.url, httpUrl: `http://127.0.0.1:${proxy.port}`, credentialFile },
    images: { upload: true, sampling: { keepDefectImages: true, uncertainBand: 0.05, keepGoodEvery: 1 }, retryBaseMs: 20, retryMaxMs: 100, timeoutMs: 500 },
    disk: { minFreeBytes: 2 * MiB, resumeFreeBytes: 3 * MiB, checkIntervalMs: 50, alarmHoldMs: 2000 },
  });
  const agent = createEdgeAgent(config, { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 500 });
  defer(() => agent.close());
  await agent.start();
  const frames = await Promise.all(Array.from({ length: 20 }, (_, i) => generatePartImage({ seed: 300 + i, defect: i % 10 === 9 ? 'scratch' : null, format: 'jpeg' })));
  const imageBytes = frames.reduce((s, f) => s + f.length, 0) / frames.length;
  t.diagnostic(`frame ~${Math.round(imageBytes / 1024)} KiB; 1000 frames ~${Math.round((imageBytes * 1000) / MiB)} MiB of images on an 8 MiB disk`);

  const seqs: number[] = [];
  let lowest = Number.POSITIVE_INFINITY;
  const inspect = async (i: number) => {
    const out = await agent.inspect(frames[i % frames.length]!, { camera: 'cam1', source: 'http' });
    seqs.push(out.record.seq);
    lowest = Math.min(lowest, freeBytes(disk) ?? lowest);
  };
  // Uploads work: images are sent, and sent ones make room.
  for (let i = 0; i < 600; i++) await inspect(i);
  const st = () => agent.health().storage!;
  await waitFor(() => st().imagesPending === 0, 'uploads caught up', 60_000);
  const evictedBefore = st().imagesEvicted;
  // The fleet's HTTP is cut: new images stay unsent; the disk fills with them.
  proxy.cut();
  for (let i = 600; i < 1000; i++) await inspect(i);
  // The verdict does not wait for its image to be written: let the last writes land.
  await waitFor(async () => !(await files(disk)).some((f) => f.file.endsWith('.tmp')), 'image writes done');
  const edgeFiles = await files(disk);
  t.diagnostic(`largest files: ${JSON.stringify(edgeFiles.filter((f) => f.size > 100_000))}`);

  assert.deepEqual(seqs, Array.from({ length: 1000 }, (_, i) => i + 1), 'every frame answered and stored, seqs gap-free');
  const h = agent.health();
  assert.equal(h.status, 'ok');
  assert.equal(h.lastSeq, 1000);
  assert.equal(h.storage?.notStored, 0, 'no result was refused for room');
  await waitFor(() => fleet.contiguous === 1000, 'all 1000 results at the fleet', 30_000);

  // Uploaded images went first: none is left, and only then did unsent ones go (oldest first),
  // so what is left unsent is the newest run of seqs, ending at 1000.
  const storeId = h.storeId!;
  const sent = edgeFiles.filter((f) => f.file.includes(`${path.sep}sent${path.sep}`));
  const pending = edgeFiles
    .filter((f) => f.file.startsWith(path.join(disk, 'images', storeId, 'pending')))
    // A defect's heatmap (`<seq>.heatmap.png`) lies beside its image: count the images.
    .filter((f) => !f.file.endsWith('.heatmap.png'))
    .map((f) => Number(path.basename(f.file).split('.')[0]))
    .sort((a, b) => a - b);
  t.diagnostic(`kept ${pending.length} unsent, ${sent.length} sent; evicted unsent ${h.storage?.imagesEvicted}; lowest free ${lowest} bytes; alarms ${JSON.stringify(h.alarms)}`);
  assert.equal(sent.length, 0, 'every uploaded image was deleted before unsent ones');
  assert.ok((h.storage?.imagesEvicted ?? 0) > 0, 'the disk could not hold 400 unsent images: some went');
  assert.ok(pending.length > 0);
  assert.deepEqual(pending, Array.from({ length: pending.length }, (_, i) => 1000 - pending.length + 1 + i), 'the newest unsent images are the ones kept');
  assert.equal(pending.length + (h.storage?.imagesEvicted ?? 0) - evictedBefore, 400, 'each image of the cut is kept or counted as evicted');

  // No 0-byte or temp file anywhere on the disk.
  assert.deepEqual(edgeFiles.filter((f) => f.size === 0 || f.file.endsWith('.tmp')), [], 'no 0-byte or temp files');
  // The disk-low alarm, if raised, did not flap.
  const diskEvents = fleet.messages.filter((m) => m.kind === 'events' && (m.msg as { data?: { alarm?: string } }).data?.alarm === 'disk-low');
  assert.ok(diskEvents.length <= 2, `disk-low events: ${diskEvents.length}`);
  // And after a clean stop.
  await agent.close();
  assert.deepEqual((await files(disk)).filter((f) => f.size === 0 || f.file.endsWith('.tmp')), [], 'no 0-byte or temp files after close');
});

test('a model download that fills the disk is aborted, its partial file deleted; the edge keeps inspecting', { timeout: 60_000 }, async (t) => {
  const defer = cleanupStack(t);
  const disk = await mountTmpfs(t, '4m', defer);
  if (!disk) return;
  const dir = await tempDir(t);
  const broker = await startBroker();
  defer(() => broker.close());
  const fleet = await startFakeFleet(broker.url);
  defer(() => fleet.close());
  const server = await startArtifactServer();
  defer(() => server.close());
  const keys = generateSigningKeys();
  // Larger than the whole disk; the bytes never need to be a package, the disk fills first.
  const blob = randomBytes(6 * MiB);
  const identity = { name: 'big-model', version: '1.0.0', sha256: sha256Of(blob), size: blob.length, pluginSha256: null };
  const url = server.add(blob);
  const agent = createEdgeAgent(
    edgeConfig(dir, await modelDir, {
      dataDir: disk,
      fleet: { mqttUrl: broker.url, publicKey: keys.publicKeyPem, artifactOrigins: [server.url] },
      model: { dir: await modelDir, retryBaseMs: 5, retryMaxMs: 40 },
      // No free-space floor: the download is let run into ENOSPC (the floor's refusal is tested in artifact-download.test.ts).
      disk: { minFreeBytes: 0, resumeFreeBytes: 0, checkIntervalMs: 1000, alarmHoldMs: 1000 },
    }),
    { logger: testLogger(), reconnectPeriodMs: 100, finalSyncMs: 300 },
  );
  defer(() => agent.close());
  await agent.start();
  await fleet.next('state', (m) => m.msg.online);
  const frame = await generatePartImage({ seed: 77, defect: null, format: 'jpeg' });
  const before = await agent.inspect(frame, { camera: 'cam1', source: 'http' });

  const desired = envelope('desired', 'edge-test', {
    active: { name: identity.name, version: identity.version, sha256: identity.sha256, size: blob.length, url, signature: signArtifact(identity, keys.privateKeyPem) },
    config: {},
    configVersion: 1,
  });
  await fleet.client.publishAsync(edgeTopic('edge-test', 'desired'), encodeMessage(desired), { qos: 1, retain: true });
  const failed = await fleet.next('events', (m) => m.msg.kind === 'model-failed');
  t.diagnostic(failed.msg.message);
  assert.match(failed.msg.message, /no space left on the disk writing .*\.part: download aborted, partial file deleted \(ENOSPC\)/);
  assert.ok(server.requestsFor(identity.sha256).length >= 1, 'the download did start');
  const left = await files(path.join(disk, 'models'));
  assert.deepEqual(left, [], 'no partial file, nothing half-extracted');

  const after = await agent.inspect(frame, { camera: 'cam1', source: 'http' });
  assert.equal(after.record.seq, before.record.seq + 1, 'the edge keeps inspecting and storing');
  assert.equal(after.record.model, before.record.model, 'on the model it had');
  assert.equal(agent.health().status, 'ok');
});
