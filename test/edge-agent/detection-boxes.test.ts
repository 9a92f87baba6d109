/**
 * Detection boxes travel with the kept image (issue 17, "explainability"): a real edge agent runs
 * a real detection package (test/models/fixtures-detection.ts), keeps the defect frame's image and
 * uploads it; at a real fleet the result carries the model's boxes beside `hasImage`, in the
 * image's own pixels, and so does the review queue item that shows that image.
 */
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import sharp from 'sharp';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { ORIGINAL_BOXES, yoloDetector } from '../models/fixtures-detection.js';
import { solidPng, writePackage } from '../models/helpers.js';
import { tempDir } from './fixtures.js';

test("a real detector edge's kept defect image reaches the fleet with its boxes, in the results and the review queue", { timeout: 120_000 }, async (t) => {
  const fleet = await startFleet(t);
  const pkgDir = await tempDir(t);
  const { model, manifest } = yoloDetector();
  await writePackage(pkgDir, manifest, model);
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;
  const dataDir = path.join(fleet.dataDir, 'det-1');
  await mkdir(dataDir, { recursive: true });
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: 'det-1',
      line: 'line-D',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, 'det-1', path.join(dataDir, 'fleet.credential')) },
      model: { dir: pkgDir },
      sync: { batchSize: 10, intervalMs: 100 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();

  // Red: a scratch (defect) beside the screws; grey: four screws, ok (its image is not kept).
  const red = await solidPng(128, 64, [255, 0, 0]);
  const outcome = await agent.inspect(red, { camera: 'cam1', source: 'http' });
  await agent.inspect(await solidPng(128, 64, [128, 128, 128]), { camera: 'cam1', source: 'http' });
  assert.deepEqual([outcome.record.verdict, outcome.record.label], ['defect', 'scratch']);
  const boxes = outcome.inspection.detections!;
  assert.ok(boxes.some((d) => d.label === 'scratch' && d.box.join() === ORIGINAL_BOXES.S.join()), JSON.stringify(boxes));

  type Row = { seq: number; verdict: string; hasImage: boolean; detections?: { label: string; score: number; box: number[] }[] };
  const rows = await waitFor(async () => {
    const items = (await fleet.api('GET', '/api/results?edge=det-1')).body.items as Row[];
    return items.length === 2 && items.some((r) => r.hasImage) ? items : undefined;
  }, 'both results and the defect image at the fleet');
  const kept = rows.find((r) => r.hasImage)!;
  assert.equal(kept.seq, outcome.record.seq, 'the kept image is the defect frame');
  assert.deepEqual(kept.detections, boxes, 'its boxes, as the model drew them');
  assert.ok(rows.find((r) => !r.hasImage)!.detections!.length >= 3, 'boxes travel with every result, image or not');

  // The boxes are in the image's own pixels: the image the fleet serves is the frame, 128 × 64.
  const inspector = await fleet.creds.headers('inspector');
  const img = await fetch(`${fleet.httpUrl}/api/results/det-1/${kept.seq}/image`, { headers: inspector });
  const meta = await sharp(Buffer.from(await img.arrayBuffer())).metadata();
  assert.deepEqual([meta.width, meta.height], [128, 64]);
  for (const d of boxes) assert.ok(d.box[0] >= 0 && d.box[2] <= 128 && d.box[1] >= 0 && d.box[3] <= 64, `box inside the image: ${d.box}`);

  const queue = await fleet.api('GET', '/api/review/queue?edge=det-1');
  const item = (queue.body.items as { seq: number; image: string; detections?: unknown }[]).find((i) => i.seq === kept.seq);
  assert.ok(item, JSON.stringify(queue.body));
  assert.deepEqual(item.detections, boxes, 'the review screen gets the boxes with the image');
});
