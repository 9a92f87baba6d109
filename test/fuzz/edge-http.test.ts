/**
 * Fuzzes the edge's POST /inspect over real HTTP, on a real agent with the built-in ONNX model:
 * bodies from random and mutated JPEG/PNG headers to real images cut short or with bytes
 * overwritten, any content type, odd camera/frame headers and query strings. Every answer is a
 * verdict or a JSON error with a known code and a one-line message (503 only for a full queue),
 * the agent keeps serving, and memory stays bounded.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { request } from 'undici';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { generatePartImage } from '../../models/fixtures.js';
import { useDemoModel } from '../edge-agent/demo-model.js';
import { edgeConfig, tempDir, testLogger } from '../edge-agent/fixtures.js';
import { assertBoundedMemory, assertErrorAnswer, fuzz, imageBytes, nastyString, queryString } from './arbitraries.js';

const MB = 1024 * 1024;
const modelDir = useDemoModel();

/** A header value undici will send: the string's UTF-8 bytes as latin1, without line breaks or other control characters. */
const headerValue = nastyString.map((s) => Buffer.from(s.slice(0, 600)).toString('latin1').replace(/[\x00-\x1f\x7f]/g, ''));

/** A real agent (built-in model, no fleet) listening on a free port; closed after the test. */
async function startAgent(t: TestContext): Promise<string> {
  const dir = await tempDir(t, 'osprey-fuzz-edge-');
  const agent = createEdgeAgent(
    edgeConfig(dir, await modelDir, { http: { host: '127.0.0.1', port: 0, bodyLimitBytes: 256 * 1024 }, maxPixels: 1 << 20 }),
    { logger: testLogger() },
  );
  t.after(() => agent.close());
  return (await agent.start()).httpUrl;
}

test('POST /inspect answers any body, content type, header and query with a verdict or a one-line JSON error', async (t) => {
  const httpUrl = await startAgent(t);
  const good = await generatePartImage({ seed: 21, format: 'jpeg' });
  const real = [good, await generatePartImage({ seed: 22, format: 'png' })];

  const requests = fc.record({
    body: fc.oneof({ weight: 8, arbitrary: imageBytes(real) }, { weight: 2, arbitrary: fc.constantFrom(...real) }, { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) }, { weight: 1, arbitrary: fc.constant(Buffer.alloc(300 * 1024, 1)) }),
    type: fc.option(fc.oneof(fc.constantFrom('image/jpeg', 'image/png', 'application/octet-stream', 'image/jpeg; charset=x', 'IMAGE/PNG', 'application/json', 'multipart/form-data; boundary=x', 'image/svg+xml'), headerValue), { nil: undefined }),
    camera: fc.option(fc.oneof(fc.constantFrom('cam1', 'cam2', 'cam9'), headerValue), { nil: undefined }),
    frame: fc.option(headerValue, { nil: undefined }),
    query: queryString(['camera', 'frame']),
  });
  let answered = 0;
  await assertBoundedMemory(160 * MB, 'POST /inspect', () =>
    fuzz(
      'edge POST /inspect',
      fc.asyncProperty(requests, async (r) => {
        const headers: Record<string, string> = {};
        if (r.type !== undefined) headers['content-type'] = r.type;
        if (r.camera !== undefined) headers['x-osprey-camera'] = r.camera;
        if (r.frame !== undefined) headers['x-osprey-frame'] = r.frame;
        const res = await request(`${httpUrl}/inspect${r.query}`, { method: 'POST', body: r.body, headers });
        const body = await res.body.text();
        const what = `POST /inspect${r.query.slice(0, 100)} ${JSON.stringify(headers).slice(0, 200)} (${r.body.length} bytes) → ${res.statusCode} ${body.slice(0, 200)}`;
        if (res.statusCode === 200) {
          const verdict = (JSON.parse(body) as { verdict?: string }).verdict;
          assert.ok(verdict === 'ok' || verdict === 'defect', what);
          answered++;
          return;
        }
        assertErrorAnswer({ statusCode: res.statusCode, headers: res.headers, body }, what, [503]);
      }),
      1.5,
    ),
  );
  // Still serving: a good image is inspected after all of that.
  const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: good, headers: { 'content-type': 'image/jpeg' } });
  assert.equal(res.statusCode, 200, await res.body.text());
  assert.ok(answered > 0, 'no fuzzed request reached a verdict: the success path went untested');
  t.diagnostic(`${answered} fuzzed requests got a verdict`);
});

test('regression: an unknown camera name is quoted escaped, in one line (found by fuzzing)', async (t) => {
  const httpUrl = await startAgent(t);
  const good = await generatePartImage({ seed: 21, format: 'jpeg' });
  // The name was quoted raw: ?camera=%00 or %0A put a NUL or a line break in the message.
  for (const query of ['?camera=%00', '?camera=a%0Ab', '?camera=%1B%5B31m']) {
    const bad = await request(`${httpUrl}/inspect${query}`, { method: 'POST', body: good, headers: { 'content-type': 'image/jpeg' } });
    assertErrorAnswer({ statusCode: bad.statusCode, headers: bad.headers, body: await bad.body.text() }, query);
  }
});
