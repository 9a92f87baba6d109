/**
 * The same package that `osprey infer` runs, unchanged in the edge agent: a detection package
 * with expected counts, loaded by createEdgeAgent from its directory and driven over POST /inspect.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { pino } from 'pino';
import { request } from 'undici';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { ORIGINAL_BOXES, yoloDetector } from './fixtures-detection.js';
import { solidPng, tempDir, writePackage } from './helpers.js';

test('a detection package runs in the edge agent: POST /inspect answers with detections and verdicts', async (t) => {
  const dir = await tempDir(t);
  const modelDir = path.join(dir, 'model');
  const { model, manifest } = yoloDetector({ dtype: 'float16', halfOutput: true });
  await writePackage(modelDir, manifest, model);
  const config = parseEdgeConfig({ edgeId: 'edge-det', line: 'line-D', dataDir: path.join(dir, 'data'), http: { port: 0 }, model: { dir: modelDir } });
  const agent = createEdgeAgent(config, { logger: pino({ level: 'silent' }) });
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();

  const inspect = async (rgb: [number, number, number]) => {
    const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: await solidPng(128, 64, rgb), headers: { 'content-type': 'image/png' } });
    assert.equal(res.statusCode, 200);
    return (await res.body.json()) as { seq: number; verdict: string; label: string; model: string; detections?: { label: string; box: number[] }[] };
  };
  const grey = await inspect([128, 128, 128]);
  assert.deepEqual([grey.verdict, grey.label, grey.model], ['ok', 'ok', 'yolo-fixture@1.0.0']);
  assert.deepEqual(grey.detections!.map((d) => d.box), [ORIGINAL_BOXES.A, ORIGINAL_BOXES.D, ORIGINAL_BOXES.B, ORIGINAL_BOXES.C].map((b) => [...b]));
  const red = await inspect([255, 0, 0]);
  assert.deepEqual([red.verdict, red.label], ['defect', 'scratch']);
  const green = await inspect([0, 255, 0]);
  assert.deepEqual([green.verdict, green.label, green.seq], ['defect', 'missing:screw', 3]);
});
