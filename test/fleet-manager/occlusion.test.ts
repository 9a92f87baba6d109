/**
 * Occlusion maps on demand (issue 17): a real edge agent runs a real classifier package and
 * uploads its kept image to a real fleet where the same package is registered; over real HTTP an
 * inspector asks for the map. Each cell's value is checked against the score drop computed here,
 * independently, by running the same package on the image with that cell greyed. Then the one-line
 * refusals: no image, a model that is not a classifier, a model not in the registry, a role
 * without results:read, and a second computation while one runs.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import sharp from 'sharp';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { loadModelPackage } from '../../models/package.js';
import { jet } from '../../models/postprocess/heatmap.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { OCC_IMAGE, OCC_MODEL, OCC_VERSION, spotClassifierPackage, spotImage } from '../helpers/occlusion-classifier.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { waitFor } from '../helpers/wait-for.js';
import { register, startFleet, uploadTar } from './control-helpers.js';
import { tempDir } from './helpers.js';

const ID = `${OCC_MODEL}@${OCC_VERSION}`;

/** p(label) on `image` with the pixels of [x0, x1) × [y0, y1) set to grey 128: computed here, not by the fleet's code. */
async function scoreWithGreyed(runner: Awaited<ReturnType<typeof loadModelPackage>>, image: Buffer, label: string, cell?: { x0: number; x1: number; y0: number; y1: number }): Promise<number> {
  let input = image;
  if (cell) {
    const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
    for (let y = cell.y0; y < cell.y1; y++) for (let x = cell.x0; x < cell.x1; x++) for (let c = 0; c < info.channels; c++) data[(y * info.width + x) * info.channels + c] = 128;
    input = await sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } }).png().toBuffer();
  }
  const r = await runner.inspect(input, { topK: 3 });
  return r.top!.find((t) => t.label === label)!.score;
}

test('an occlusion map of a real classifier result, computed by the fleet, equals the score drops of the model on greyed cells', { timeout: 120_000 }, async (t) => {
  const fleet = await startFleet(t);
  const pkgDir = await tempDir(t);
  const archive = await spotClassifierPackage(pkgDir);
  const up = await uploadTar(fleet.httpUrl, OCC_MODEL, archive, fleet.admin);
  assert.equal(up.status, 201, JSON.stringify(up.body));

  // A real edge agent running that package keeps the defect frame's image and uploads it.
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;
  const dataDir = path.join(fleet.dataDir, 'cls-1');
  await mkdir(dataDir, { recursive: true });
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: 'cls-1',
      line: 'line-C',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, 'cls-1', path.join(dataDir, 'fleet.credential')) },
      model: { dir: pkgDir },
      sync: { batchSize: 10, intervalMs: 100 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  const image = await spotImage();
  const outcome = await agent.inspect(image, { camera: 'cam1', source: 'http' });
  assert.deepEqual([outcome.record.model, outcome.record.verdict, outcome.record.label], [ID, 'defect', 'dent']);
  const seq = outcome.record.seq;
  type Row = { seq: number; storeId?: string; hasImage: boolean };
  const row = await waitFor(async () => ((await fleet.api('GET', '/api/results?edge=cls-1')).body.items as Row[]).find((r) => r.seq === seq && r.hasImage), 'the kept image at the fleet');

  const inspector = await fleet.creds.headers('inspector');
  const before = await fetch(`${fleet.httpUrl}/api/results/cls-1/${seq}/occlusion`, { headers: inspector });
  assert.equal(before.status, 404);
  assert.match(((await before.json()) as { message: string }).message, /^no occlusion map for result cls-1\/\d+; POST to compute one$/);

  const started = Date.now();
  const res = await fetch(`${fleet.httpUrl}/api/results/cls-1/${seq}/occlusion`, { method: 'POST', headers: inspector });
  const map = (await res.json()) as { model: string; label: string; score: number; cols: number; rows: number; width: number; height: number; drops: number[]; url: string; storeId: string | null };
  assert.equal(res.status, 200, JSON.stringify(map));
  t.diagnostic(`occlusion map (8×8 cells, 65 runs in a child) answered in ${Date.now() - started} ms`);
  assert.deepEqual([map.model, map.label, map.cols, map.rows, map.width, map.height, map.drops.length], [ID, 'dent', 8, 8, OCC_IMAGE.width, OCC_IMAGE.height, 64]);
  assert.equal(map.storeId, row.storeId);

  // Independently: the same package, the same image (as the fleet serves it), cells greyed here.
  const served = Buffer.from(await (await fetch(`${fleet.httpUrl}/api/results/cls-1/${seq}/image`, { headers: inspector })).arrayBuffer());
  assert.deepEqual(served, image);
  const runner = await loadModelPackage(pkgDir);
  t.after(() => runner.close());
  const base = await scoreWithGreyed(runner, image, 'dent');
  assert.ok(Math.abs(base - map.score) < 1e-6, `base score ${base} vs ${map.score}`);
  // 16 × 12 px cells: (5, 2) holds the blue spot, (0, 0) and (6, 5) are plain grey.
  for (const [cx, cy] of [[5, 2], [0, 0], [6, 5]] as const) {
    const drop = base - (await scoreWithGreyed(runner, image, 'dent', { x0: cx * 16, x1: cx * 16 + 16, y0: cy * 12, y1: cy * 12 + 12 }));
    const got = map.drops[cy * 8 + cx]!;
    assert.ok(Math.abs(got - drop) < 1e-6, `cell (${cx}, ${cy}): map ${got}, computed here ${drop}`);
  }
  const spot = map.drops[2 * 8 + 5]!;
  assert.ok(spot > 0.05, `greying the spot lowers p(dent) clearly: ${spot}`);
  assert.equal(Math.max(...map.drops), spot, 'the spot cell matters most');
  assert.ok(Math.abs(map.drops[0]!) < spot / 20, `a grey cell hardly matters (JPEG noise only): ${map.drops[0]}`);

  // The stored heatmap (one square per cell, stretched over the image when drawn): red over the spot cell, blue over plain grey.
  const png = await fetch(`${fleet.httpUrl}${map.url}`, { headers: inspector });
  assert.equal(png.status, 200);
  assert.equal(png.headers.get('content-type'), 'image/png');
  const { data, info } = await sharp(Buffer.from(await png.arrayBuffer())).raw().toBuffer({ resolveWithObject: true });
  assert.deepEqual([info.width, info.height], [64, 64]);
  const at = (x: number, y: number) => [...data.subarray((y * info.width + x) * info.channels, (y * info.width + x) * info.channels + 3)];
  // jet(1) is dark red; the linear upscale blends a little of the blue neighbours in.
  const [r, g, b] = at(5 * 8 + 4, 2 * 8 + 4);
  assert.ok(r! > 90 && r! > 2 * b! && g! < 40, `the spot cell is red: ${[r, g, b]}`);
  const [r0, g0, b0] = at(3, 3);
  assert.ok(r0! < 10 && g0! < 10 && b0! >= jet(0)[2] && b0! < 200, `a plain cell is dark blue: ${[r0, g0, b0]}`);

  // The audit log names who asked for which result.
  const audit = await fleet.api('GET', '/api/audit?limit=20');
  const entry = (audit.body.entries as { action: string; target: string; actor: string }[]).find((e) => e.action === 'result.occlusion');
  assert.ok(entry, JSON.stringify(audit.body).slice(0, 400));
  assert.match(entry.target, new RegExp(`^result:cls-1/.*/${seq}$`));
  assert.equal(entry.actor, 'user:test-inspector');
});

test('occlusion refusals in one line: no image, not a classifier, not registered, no permission, one computation at a time', { timeout: 120_000 }, async (t) => {
  const fleet = await startFleet(t);
  const pkgDir = await tempDir(t);
  assert.equal((await uploadTar(fleet.httpUrl, OCC_MODEL, await spotClassifierPackage(pkgDir), fleet.admin)).status, 201);
  await register(fleet.httpUrl, 'tiny-anomaly', '1.0.0', fleet.admin);
  const credential = await fleet.creds.enrollEdge('sim-1');
  const edge = await connectSimEdge(fleet.mqttUrl, { id: 'sim-1', credential, line: 'line-C', localModel: { name: OCC_MODEL, version: OCC_VERSION } });
  t.after(() => edge.close());
  const rec = (model: string) => ({ ts: Date.now(), camera: 'cam1', source: 'http' as const, model, verdict: 'defect' as const, label: 'scratch', score: 0.9, latencyMs: 3 });
  // seq 1: no image; 2: an anomaly model; 3: a model the registry does not have; 4 and 5: the classifier.
  await edge.sendResults([rec(ID), rec('tiny-anomaly@1.0.0'), rec('elsewhere@9.9.9'), rec(ID), rec(ID)]);
  const image = await spotImage();
  for (const seq of [2, 3, 4, 5]) {
    const put = await fetch(`${fleet.httpUrl}/api/results/sim-1/${seq}/image`, { method: 'PUT', headers: { authorization: `Bearer ${credential}`, 'content-type': 'image/jpeg' }, body: image });
    assert.equal(put.status, 201, await put.text());
  }
  const inspector = await fleet.creds.headers('inspector');
  const post = async (seq: number, headers = inspector) => {
    const res = await fetch(`${fleet.httpUrl}/api/results/sim-1/${seq}/occlusion`, { method: 'POST', headers });
    return { status: res.status, body: (await res.json()) as { error?: string; message?: string; label?: string } };
  };
  const oneLine = (m: string | undefined) => assert.ok(m && !m.includes('\n'), `one line: ${m}`);

  const none = await post(1);
  assert.deepEqual([none.status, none.body.error], [404, 'OSP_ERR_NOT_FOUND']);
  assert.match(none.body.message!, /^result sim-1\/1 has no kept image; an occlusion map needs one$/);
  const anomaly = await post(2);
  assert.equal(anomaly.status, 409);
  assert.match(anomaly.body.message!, /^result sim-1\/2 was made by tiny-anomaly@1\.0\.0 \(task anomaly\); occlusion maps are for classifiers$/);
  const unknown = await post(3);
  assert.equal(unknown.status, 404);
  assert.match(unknown.body.message!, /^model elsewhere@9\.9\.9 that made result sim-1\/3 is not in the registry/);
  oneLine(unknown.body.message);
  const viewer = await post(4, await fleet.creds.headers('viewer'));
  assert.equal(viewer.status, 403);

  // Two at once: one is computed, the other refused (retry later) rather than queued.
  const both = await Promise.all([post(4), post(5)]);
  assert.deepEqual(both.map((b) => b.status).sort(), [200, 503], JSON.stringify(both));
  const busy = both.find((b) => b.status === 503)!;
  assert.equal(busy.body.error, 'OSP_ERR_BUSY');
  assert.match(busy.body.message!, /^another occlusion map is being computed; retry in a few seconds$/);
  assert.equal(both.find((b) => b.status === 200)!.body.label, 'dent');
});
