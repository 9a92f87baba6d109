import assert from 'node:assert/strict';
import { test } from 'node:test';
import { request } from 'undici';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { generatePartImage } from '../../models/fixtures.js';
import { check } from '../../protocol/validator.js';
import { TelemetryMessageSchema } from '../../protocol/messages.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, pngClaiming, startBroker, tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();

interface Answer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, unknown>;
}

test('POST /inspect answers verdicts, refuses bad input with a one-line 4xx, keeps serving, and counts failures', async (t) => {
  const dir = await tempDir(t);
  const broker = await startBroker();
  t.after(() => broker.close());
  const fleet = await startFakeFleet(broker.url);
  t.after(() => fleet.close());
  const agent = createEdgeAgent(
    edgeConfig(dir, await modelDir, {
      fleet: { mqttUrl: broker.url },
      http: { host: '127.0.0.1', port: 0, bodyLimitBytes: 1024 * 1024 },
      telemetry: { intervalMs: 100 },
    }),
    { logger: testLogger() },
  );
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  assert.match(httpUrl, /^http:\/\/127\.0\.0\.1:\d+$/);

  const post = async (body: Buffer | string, contentType?: string, query = '', headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await request(`${httpUrl}/inspect${query}`, {
      method: 'POST',
      body,
      headers: { ...(contentType ? { 'content-type': contentType } : {}), ...headers },
    });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown>, headers: res.headers };
  };

  const good = await generatePartImage({ seed: 21, format: 'jpeg' });
  const defect = await generatePartImage({ seed: 22, defect: 'missing', format: 'png' });

  const ok = await post(good, 'image/jpeg', '?frame=part-0001');
  assert.equal(ok.status, 200);
  assert.equal(ok.body.seq, 1);
  assert.equal(ok.body.verdict, 'ok');
  assert.equal(ok.body.camera, 'cam1');
  assert.match(String(ok.body.model), /^osprey-demo-anomaly@/);
  assert.equal(typeof ok.body.score, 'number');
  assert.equal(typeof ok.body.threshold, 'number');
  assert.equal(typeof ok.body.latencyMs, 'number');
  assert.equal(typeof ok.body.label, 'string');

  const bad = await post(defect, 'image/png', '?camera=cam2');
  assert.equal(bad.status, 200);
  assert.deepEqual([bad.body.seq, bad.body.verdict, bad.body.camera], [2, 'defect', 'cam2']);
  const viaHeader = await post(good, 'application/octet-stream', '', { 'x-osprey-camera': 'cam2' });
  assert.deepEqual([viaHeader.status, viaHeader.body.seq, viaHeader.body.camera], [200, 3, 'cam2']);

  const cases: [string, Buffer | string, string | undefined, string, number, string][] = [
    ['zero bytes', Buffer.alloc(0), 'image/jpeg', '', 400, 'OSP_ERR_IMAGE_EMPTY'],
    ['zero bytes, no content type', Buffer.alloc(0), undefined, '', 400, 'OSP_ERR_IMAGE_EMPTY'],
    ['a truncated JPEG', good.subarray(0, good.length >> 1), 'image/jpeg', '', 422, 'OSP_ERR_IMAGE_DECODE'],
    ['a text file', 'just some text, not an image\n', 'application/octet-stream', '', 422, 'OSP_ERR_IMAGE_DECODE'],
    ['a PNG claiming 30000×30000', pngClaiming(30000, 30000), 'image/png', '', 413, 'OSP_ERR_IMAGE_TOO_LARGE'],
    ['a body over the limit', Buffer.alloc(1024 * 1024 + 1), 'application/octet-stream', '', 413, 'OSP_ERR_IMAGE_TOO_LARGE'],
    ['an unknown content type', good, 'text/plain', '', 415, 'OSP_ERR_CONTENT_TYPE'],
    ['JSON', '{"image":"..."}', 'application/json', '', 415, 'OSP_ERR_CONTENT_TYPE'],
    ['an unknown camera', good, 'image/jpeg', '?camera=cam9', 400, 'OSP_ERR_BAD_REQUEST'],
    ['an unknown query parameter', good, 'image/jpeg', '?cam=cam1', 400, 'OSP_ERR_BAD_REQUEST'],
  ];
  for (const [what, body, type, query, status, code] of cases) {
    const res = await post(body, type, query);
    assert.equal(res.status, status, `${what}: status (${JSON.stringify(res.body)})`);
    assert.equal(res.body.error, code, `${what}: code`);
    assert.equal(typeof res.body.message, 'string');
    assert.ok(String(res.body.message).length > 0, `${what}: a message`);
    assert.doesNotMatch(String(res.body.message), /\n/, `${what}: one line`);
    assert.deepEqual(Object.keys(res.body).sort(), ['error', 'message']);
  }

  // Still serving, and the bad inputs took no seq.
  const after = await post(good, 'image/jpeg');
  assert.deepEqual([after.status, after.body.seq], [200, 4]);

  const expectedFailures = {
    OSP_ERR_IMAGE_EMPTY: 2,
    OSP_ERR_IMAGE_DECODE: 2,
    OSP_ERR_IMAGE_TOO_LARGE: 2,
    OSP_ERR_CONTENT_TYPE: 2,
    OSP_ERR_BAD_REQUEST: 2,
  };
  const health = await request(`${httpUrl}/health`);
  assert.equal(health.statusCode, 200);
  const h = (await health.body.json()) as Record<string, unknown>;
  assert.equal(h.status, 'ok');
  assert.equal(h.edgeId, 'edge-test');
  assert.equal(h.lastSeq, 4);
  assert.deepEqual(h.failures, expectedFailures);
  assert.deepEqual(h.fleet, { configured: true, connected: true, messagesDropped: 0, acksRejected: 0 });
  assert.deepEqual(h.queue, { depth: 0, running: 0, max: 64 });

  // The same counters reach the fleet in telemetry (schema-valid), and rejections raise events.
  const telemetry = await fleet.next('telemetry', (m) => m.msg.lastSeq === 4 && Object.keys(m.msg.failures).length === 5);
  assert.ok(check(TelemetryMessageSchema, telemetry.msg).ok);
  assert.deepEqual(telemetry.msg.failures, expectedFailures);
  const rejected = await fleet.next('events', (m) => m.msg.kind === 'input-rejected' && m.msg.data?.code === 'OSP_ERR_IMAGE_DECODE');
  assert.equal(rejected.msg.level, 'warn');
  await fleet.next('events', (m) => m.msg.kind === 'started');

  const missing = await request(`${httpUrl}/nope`);
  assert.equal(missing.statusCode, 404);
  assert.equal(((await missing.body.json()) as { error: string }).error, 'OSP_ERR_NOT_FOUND');
});

test('a full queue answers 503 with Retry-After', async (t) => {
  const dir = await tempDir(t);
  const agent = createEdgeAgent(edgeConfig(dir, await modelDir, { queue: { concurrency: 1, maxDepth: 1 } }), {
    logger: testLogger(),
  });
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  const img = await generatePartImage({ seed: 23, format: 'jpeg' });
  const answers = await Promise.all(
    Array.from({ length: 6 }, async () => {
      const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: img, headers: { 'content-type': 'image/jpeg' } });
      return { status: res.statusCode, retryAfter: res.headers['retry-after'], body: (await res.body.json()) as { error?: string } };
    }),
  );
  const refused = answers.filter((a) => a.status === 503);
  assert.ok(refused.length >= 1, `some refused: ${answers.map((a) => a.status).join(',')}`);
  assert.ok(answers.some((a) => a.status === 200));
  for (const r of refused) {
    assert.equal(r.body.error, 'OSP_ERR_QUEUE_FULL');
    assert.equal(r.retryAfter, '1');
  }
  assert.equal(agent.health().failures.OSP_ERR_QUEUE_FULL, refused.length);
});
