/**
 * POST /inspect under hostile body sizes: refused from content-length before the body is read,
 * streamed bodies capped as they arrive, and a cap on the body bytes all requests hold at once.
 * A real server on port 0 and real HTTP; the pipeline is a gate the test opens, so requests can
 * be held "being inspected" for as long as the test needs.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { buildHttpServer } from '../../edge-agent/http-server.js';
import type { Pipeline } from '../../edge-agent/pipeline.js';
import { OspreyError } from '../../protocol/errors.js';
import { testLogger } from './fixtures.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: { error?: string; message?: string };
}

/** Client requests of the running test, destroyed at teardown (a hung one must not hold the server open). */
const open = new Set<ClientRequest>();

/** A server whose pipeline holds every frame until `release()`; then answers a decode error. */
async function serve(t: TestContext, limits: { bodyLimitBytes: number; maxInFlightBytes: number }) {
  const gates: (() => void)[] = [];
  let received = 0;
  const pipeline = {
    submit: async (image: Buffer) => {
      received++;
      await new Promise<void>((resolve) => gates.push(resolve));
      throw new OspreyError('OSP_ERR_IMAGE_DECODE', `not an image (${image.length} bytes)`);
    },
  } as unknown as Pipeline;
  const app = buildHttpServer({ pipeline, cameras: ['cam1'], logger: testLogger(), health: () => ({}) as never, ...limits });
  await app.listen({ host: '127.0.0.1', port: 0 });
  t.after(() => {
    gates.splice(0).forEach((g) => g());
    for (const req of open) req.destroy();
    open.clear();
    return app.close();
  });
  const port = (app.server.address() as AddressInfo).port;
  return {
    port,
    received: () => received,
    release: () => gates.splice(0).forEach((g) => g()),
  };
}

/** Starts a POST /inspect; the caller writes (or not) the body. Resolves the answer whenever it comes. */
function post(port: number, headers: Record<string, string | number>): { req: ClientRequest; answer: Promise<Answer> } {
  const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/inspect', headers: { 'content-type': 'image/jpeg', ...headers } });
  open.add(req);
  req.on('error', () => undefined); // the server may close while we still write: the answer is what counts
  const answer = new Promise<Answer>((resolve) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: JSON.parse(Buffer.concat(parts).toString() || '{}') as Answer['body'] }));
    });
  });
  req.flushHeaders();
  return { req, answer };
}

test('POST /inspect: a content-length over the limit is 413 from the header alone, and the connection is closed', { timeout: 10_000 }, async (t) => {
  const s = await serve(t, { bodyLimitBytes: 1 * MiB, maxInFlightBytes: 4 * MiB });
  // Headers only: an answer can only come if the server decides without the body.
  const { req, answer } = post(s.port, { 'content-length': 100 * MiB });
  const a = await answer;
  req.destroy();
  assert.equal(a.status, 413);
  assert.equal(a.body.error, 'OSP_ERR_IMAGE_TOO_LARGE');
  assert.equal(a.body.message, `request body of ${100 * MiB} bytes exceeds http.bodyLimitBytes (${MiB} bytes)`);
  assert.equal(a.headers.connection, 'close');
  assert.equal(s.received(), 0);
});

test('POST /inspect: bodies in flight are capped by http.maxInFlightBytes (declared and streamed); 503 before reading, room again once answered', { timeout: 10_000 }, async (t) => {
  const s = await serve(t, { bodyLimitBytes: 2 * MiB, maxInFlightBytes: 3 * MiB });
  const body = Buffer.alloc(1.5 * MiB);
  // Two bodies of 1.5 MB fill the 3 MB: both are read and held by the pipeline.
  const held = [post(s.port, { 'content-length': body.length }), post(s.port, { 'content-length': body.length })];
  for (const h of held) h.req.end(body);
  while (s.received() < 2) await new Promise((r) => setImmediate(r));

  // A third declared body is refused from its header: nothing is written and the answer comes.
  const third = post(s.port, { 'content-length': 100 * KiB });
  const refused = await third.answer;
  third.req.destroy();
  assert.equal(refused.status, 503);
  assert.equal(refused.body.error, 'OSP_ERR_QUEUE_FULL');
  assert.match(refused.body.message!, /http\.maxInFlightBytes \(3145728 bytes\)/);
  assert.equal(refused.headers['retry-after'], '1');

  // A streamed (chunked) body is refused at the chunk that would go over.
  const chunked = post(s.port, { 'transfer-encoding': 'chunked' });
  chunked.req.write(Buffer.alloc(100 * KiB));
  const refusedChunked = await chunked.answer;
  chunked.req.destroy();
  assert.equal(refusedChunked.status, 503);
  assert.equal(refusedChunked.body.error, 'OSP_ERR_QUEUE_FULL');

  // Answered requests give their bytes back: a new body fits again.
  s.release();
  for (const h of held) assert.equal((await h.answer).status, 422);
  const again = post(s.port, { 'content-length': body.length });
  again.req.end(body);
  while (s.received() < 3) await new Promise((r) => setImmediate(r));
  s.release();
  assert.equal((await again.answer).status, 422);
});

test('POST /inspect: a streamed body over http.bodyLimitBytes is 413 once it passes the limit', { timeout: 10_000 }, async (t) => {
  const s = await serve(t, { bodyLimitBytes: 1 * MiB, maxInFlightBytes: 8 * MiB });
  const { req, answer } = post(s.port, { 'transfer-encoding': 'chunked' });
  let answered = false;
  void answer.then(() => (answered = true));
  const chunk = Buffer.alloc(256 * KiB);
  for (let i = 0; i < 40 && !answered && !req.destroyed; i++) {
    if (!req.write(chunk)) await Promise.race([new Promise((r) => req.once('drain', r).once('close', r)), answer]);
  }
  const a = await answer;
  req.destroy();
  assert.equal(a.status, 413);
  assert.equal(a.body.error, 'OSP_ERR_IMAGE_TOO_LARGE');
  assert.equal(s.received(), 0);
});
