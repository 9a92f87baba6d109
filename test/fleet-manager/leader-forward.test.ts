/**
 * A follower forwards the writes that drive leader work to the leader (issue 18,
 * fleet-manager/leader-forward.ts). The leader is a real fleet manager (SQLite, authentication
 * on, real HTTP); the follower is a Fastify app with the real forwarding and authorization hooks
 * on its OWN identity store, and routes whose handlers must never run. So: what the caller gets
 * is the leader's answer, the leader alone authenticates (a token only the follower knows does
 * not get through), the leader audits the real caller and the follower audits nothing, uploads
 * arrive whole, and a loop or an unknown/unreachable leader is a 503 with retry-after, not a hang.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import Fastify, { type FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { request } from 'undici';
import { advertiseUrlOf, checkAdvertiseUrl, routeLeaderWrites, FORWARDED_HEADER, type LeaderLocation } from '../../fleet-manager/leader-forward.js';
import { resolveFleetConfig } from '../../fleet-manager/config.js';
import { installAuthorization } from '../../fleet-manager/auth/authorize.js';
import { httpStatusFor, isOspreyError } from '../../protocol/errors.js';
import { openTestIdentity, type TestIdentity } from '../helpers/identity.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { startFleet, type TestFleet } from './control-helpers.js';
import { tempDir } from './helpers.js';

interface Follower {
  url: string;
  /** Handlers of the follower that ran (must stay empty: the leader answers). */
  ran: string[];
  creds: TestIdentity;
  app: FastifyInstance;
}

/** A follower whose idea of the leader is `leader()`. */
async function startFollower(t: TestContext, leader: () => LeaderLocation | null): Promise<Follower> {
  const dir = await tempDir(t);
  const creds = openTestIdentity(t, join(dir, 'follower.db'));
  const app = Fastify();
  t.after(() => app.close());
  app.setErrorHandler((err, _req, reply) => {
    if (isOspreyError(err)) return reply.code(httpStatusFor(err.code)).send({ error: err.code, message: err.message });
    return reply.code(500).send({ message: String(err) });
  });
  routeLeaderWrites(app, { isLeader: () => false, leader, instance: 'follower-1' });
  installAuthorization(app, { identity: creds.identity, logger: pino({ level: 'silent' }) });
  const ran: string[] = [];
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => {
    ran.push('body parser');
    payload.resume();
    payload.on('end', () => done(null, undefined));
  });
  for (const [method, url, permission] of [
    ['PUT', '/api/config', 'config:write'],
    ['POST', '/api/backbones', 'registry:write'],
    ['GET', '/api/config', 'fleet:read'],
    ['GET', '/api/rollouts/:id/events', 'fleet:read'],
  ] as const) {
    app.route({ method, url, config: { permission }, handler: async () => (ran.push(`${method} ${url}`), { follower: true }) });
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  return { url: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`, ran, creds, app };
}

const at = (f: TestFleet): LeaderLocation => ({ url: f.httpUrl, instance: 'leader-1', since: Date.now() });

async function call(url: string, method: string, path: string, headers: Record<string, string> = {}, body?: unknown) {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { ...headers, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- checked by the asserts
  return { status: res.status, headers: res.headers, body: (await res.json()) as any };
}

test('PUT /api/config sent to a follower is carried out by the leader and answered with its answer; the leader audits the real caller, the follower nothing', async (t) => {
  const leader = await startFleet(t);
  const follower = await startFollower(t, () => at(leader));
  const operator = await leader.creds.headers('operator');

  const res = await call(follower.url, 'PUT', '/api/config?note=1', { ...operator, 'x-forwarded-for': '10.9.8.7' }, { thresholds: { default: 0.42 } });
  assert.equal(res.status, 200, JSON.stringify(res.body));
  assert.equal(res.headers.get('x-osprey-leader'), 'false', 'the answering instance says it does not lead');
  const onLeader = await leader.api('GET', '/api/config');
  assert.deepEqual(res.body, { ...onLeader.body, republished: [] }, "the caller gets the leader's answer to the PUT (the layer it stored, and whom it republished to)");
  assert.equal(onLeader.body.settings.thresholds.default, 0.42);
  assert.deepEqual(follower.ran, [], 'no handler or body parser ran on the follower');

  const rows = (await leader.api('GET', '/api/audit?action=config.')).body.entries as Record<string, unknown>[];
  assert.deepEqual(
    rows.map((r) => [r.action, r.actor, r.source]),
    [['config.put', 'user:test-operator', '127.0.0.1 via 127.0.0.1']],
    'the leader audits the caller (its own credential), and where the follower saw it come from',
  );
  assert.deepEqual(await follower.creds.identity.queryAudit({}), [], 'the follower writes no audit row of its own');

  // As curl sends a large body: "Expect: 100-continue", the body only after the interim answer.
  const body = JSON.stringify({ thresholds: { default: 0.43 } });
  const expecting = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const req = httpRequest(`${follower.url}/api/config`, { method: 'PUT', headers: { ...operator, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), expect: '100-continue' } });
    req.on('continue', () => req.end(body));
    req.on('response', (r) => {
      let text = '';
      r.setEncoding('utf8').on('data', (c: string) => (text += c)).on('end', () => resolve({ status: r.statusCode!, text }));
    });
    req.on('error', reject);
  });
  assert.equal(expecting.status, 200, expecting.text);
  assert.equal((await leader.api('GET', '/api/config')).body.settings.thresholds.default, 0.43);
});

test('the leader alone authorizes: no credential gets the leader 401, a viewer its 403, a token only the follower knows its 401', async (t) => {
  const leader = await startFleet(t);
  const follower = await startFollower(t, () => at(leader));
  const none = await call(follower.url, 'PUT', '/api/config', {}, { thresholds: { default: 0.1 } });
  assert.equal(none.status, 401);
  assert.equal(none.body.error, 'OSP_ERR_UNAUTHENTICATED');
  assert.equal(none.headers.get('www-authenticate'), 'Bearer realm="osprey"');
  const viewer = await call(follower.url, 'PUT', '/api/config', await leader.creds.headers('viewer'), { thresholds: { default: 0.1 } });
  assert.equal(viewer.status, 403);
  assert.match(viewer.body.message, /needs the permission config:write/);
  // An admin of the follower's own database: the follower would let it through; the leader does not know it.
  const foreign = await call(follower.url, 'PUT', '/api/config', await follower.creds.headers('admin'), { thresholds: { default: 0.1 } });
  assert.equal(foreign.status, 401);
  assert.match(foreign.body.message, /API token is unknown/);
  assert.equal((await leader.api('GET', '/api/config')).body.version, 0, 'nothing changed on the leader');
  assert.deepEqual(follower.ran, []);
});

test('a backbone upload through a follower is streamed to the leader and arrives whole', { skip: dataSkip('models/squeezenet-fp16') }, async (t) => {
  const leader = await startFleet(t);
  const follower = await startFollower(t, () => at(leader));
  const file = join(ospreyDataDir(), 'models', 'squeezenet-fp16', 'model.onnx');
  const bytes = await readFile(file);
  const res = await request(`${follower.url}/api/backbones?name=forwarded`, {
    method: 'POST',
    headers: { ...(await leader.creds.headers('admin')), 'content-type': 'application/octet-stream' },
    // A stream without a length: sent chunked, forwarded as it comes.
    body: createReadStream(file, { highWaterMark: 64 * 1024 }),
  });
  const body = (await res.body.json()) as { name: string; sha256: string; size: number };
  assert.equal(res.statusCode, 201, JSON.stringify(body));
  assert.equal(body.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.equal(body.size, bytes.length);
  const listed = (await leader.api('GET', '/api/backbones')).body.backbones as { name: string; sha256: string }[];
  assert.ok(listed.some((b) => b.name === 'forwarded' && b.sha256 === body.sha256), JSON.stringify(listed));
  assert.deepEqual(follower.ran, []);
});

test('a follower streams the body: the leader has the first chunk before the caller sends the rest', { timeout: 20_000 }, async (t) => {
  // A bare HTTP leader that counts what arrives and says when the first chunk came.
  let firstChunk!: () => void;
  const gotFirst = new Promise<void>((resolve) => (firstChunk = resolve));
  const leader = createHttpServer((req, res) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      firstChunk();
    });
    req.on('end', () => res.writeHead(201, { 'content-type': 'application/json', 'x-seen-forwarded': String(req.headers[FORWARDED_HEADER]) }).end(JSON.stringify({ bytes })));
  });
  leader.listen(0, '127.0.0.1');
  await once(leader, 'listening');
  t.after(() => new Promise<void>((resolve) => leader.close(() => resolve())));
  const follower = await startFollower(t, () => ({ url: `http://127.0.0.1:${(leader.address() as AddressInfo).port}`, instance: 'raw', since: 1 }));

  const req = httpRequest(`${follower.url}/api/backbones?name=x`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' } });
  const answer = once(req, 'response') as Promise<[IncomingMessage]>;
  req.write(Buffer.alloc(256 * 1024, 1));
  // Were the follower to collect the body first, this would never come: fail (not hang) after 5 s.
  let guard: NodeJS.Timeout | undefined;
  const streamed = await Promise.race([gotFirst.then(() => true), new Promise<false>((resolve) => (guard = setTimeout(() => resolve(false), 5000)))]);
  clearTimeout(guard);
  if (!streamed) {
    req.destroy();
    assert.fail('the leader got nothing while the caller was still sending: the follower holds the body');
  }
  req.end(Buffer.alloc(256 * 1024, 2));
  const [res] = await answer;
  let text = '';
  for await (const c of res) text += String(c);
  assert.equal(res.statusCode, 201);
  assert.deepEqual(JSON.parse(text), { bytes: 512 * 1024 });
  assert.equal(res.headers['x-seen-forwarded'], 'follower-1', 'the loop guard names the follower');
  assert.deepEqual(follower.ran, []);
});

test('a rollout event stream asked of a follower comes from the leader, event by event; the caller leaving ends the leader\'s stream', { timeout: 20_000 }, async (t) => {
  // A bare HTTP leader serving an event stream whose events the test writes one at a time.
  let stream: import('node:http').ServerResponse | undefined;
  let asked!: (path: string) => void;
  const wasAsked = new Promise<string>((resolve) => (asked = resolve));
  let leaderClosed!: () => void;
  const closedAtLeader = new Promise<void>((resolve) => (leaderClosed = resolve));
  const leader = createHttpServer((req, res) => {
    stream = res;
    res.on('close', () => leaderClosed());
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' });
    res.write('event: rollout\ndata: {"status":"running"}\n\n');
    asked(`${req.url} via ${String(req.headers[FORWARDED_HEADER])}`);
  });
  leader.listen(0, '127.0.0.1');
  await once(leader, 'listening');
  t.after(() => new Promise<void>((resolve) => (leader.closeAllConnections(), leader.close(() => resolve()))));
  const follower = await startFollower(t, () => ({ url: `http://127.0.0.1:${(leader.address() as AddressInfo).port}`, instance: 'raw', since: 1 }));

  const req = httpRequest(`${follower.url}/api/rollouts/r-1/events`, { headers: { accept: 'text/event-stream' } });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/event-stream/);
  assert.equal(await wasAsked, '/api/rollouts/r-1/events via follower-1');
  // Each event reaches the caller while the stream is still open: read them as they come.
  const seen: string[] = [];
  let next!: () => void;
  let arrived = new Promise<void>((resolve) => (next = resolve));
  res.on('data', (c: Buffer) => {
    seen.push(...String(c).split('\n').filter((l) => l.startsWith('data:')));
    next();
  });
  await arrived;
  assert.deepEqual(seen, ['data: {"status":"running"}']);
  arrived = new Promise<void>((resolve) => (next = resolve));
  stream!.write('event: rollout\ndata: {"status":"awaiting-promotion"}\n\n');
  await arrived;
  assert.deepEqual(seen, ['data: {"status":"running"}', 'data: {"status":"awaiting-promotion"}']);
  assert.deepEqual(follower.ran, [], 'the follower served nothing of its own');
  // The caller goes: the follower must not keep the leader's stream open.
  req.destroy();
  await closedAtLeader;
});

test('no leader known, the leader unreachable, a stale record naming this instance or a request forwarded twice: 503 OSP_ERR_BUSY with retry-after, at once', async (t) => {
  const leader = await startFleet(t);
  // A port that was free a moment ago and is closed now: connection refused.
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const closedPort = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));

  let where: LeaderLocation | null = null;
  const follower = await startFollower(t, () => where);
  const token = await leader.creds.headers('admin');
  const expectBusy = async (why: RegExp, headers: Record<string, string> = {}) => {
    const started = Date.now();
    const res = await call(follower.url, 'PUT', '/api/config', { ...token, ...headers }, { thresholds: { default: 0.2 } });
    assert.equal(res.status, 503, JSON.stringify(res.body));
    assert.equal(res.body.error, 'OSP_ERR_BUSY');
    assert.match(res.body.message, why);
    assert.equal(res.headers.get('retry-after'), '2');
    assert.ok(Date.now() - started < 4000, 'answered without waiting on a timeout');
  };
  await expectBusy(/no leader is known yet/);
  where = { url: `http://127.0.0.1:${closedPort}`, instance: 'gone', since: 1 };
  await expectBusy(/the fleet leader \(gone at http:\/\/127\.0\.0\.1:\d+\) cannot be reached/);
  where = { url: leader.httpUrl, instance: 'follower-1', since: 1 };
  await expectBusy(/no leader is known yet/);
  where = at(leader);
  await expectBusy(/forwarded here by follower-0, but this instance is no longer the fleet leader/, { [FORWARDED_HEADER]: 'follower-0' });
  // Other reads are served here, never forwarded.
  assert.deepEqual((await call(follower.url, 'GET', '/api/config', await follower.creds.headers('viewer'))).body, { follower: true });
  assert.equal((await leader.api('GET', '/api/config')).body.version, 0, 'nothing reached the leader');

  // Two followers that each name the other as leader: the second refuses what the first forwarded.
  const a = await startFollower(t, () => ({ url: b.url, instance: 'b', since: 1 }));
  const b: Follower = await startFollower(t, () => ({ url: a.url, instance: 'a', since: 1 }));
  const loop = await call(a.url, 'PUT', '/api/config', token, { thresholds: { default: 0.3 } });
  assert.equal(loop.status, 503);
  assert.match(loop.body.message, /forwarded here by follower-1, but this instance is no longer the fleet leader/);
});

test('instances.advertiseUrl: an http(s) base URL (a bad one names the field); required with several instances on a wildcard http.host; else the bound address', () => {
  assert.equal(resolveFleetConfig({ instances: { advertiseUrl: 'https://fleet-a.plant.local:8443/' } }).instances.advertiseUrl, 'https://fleet-a.plant.local:8443');
  assert.equal(resolveFleetConfig({}).instances.advertiseUrl, null);
  for (const bad of ['fleet-a:8080', 'ftp://fleet-a', 'http://fleet-a/api', 'http://']) {
    assert.throws(() => resolveFleetConfig({ instances: { advertiseUrl: bad } }), { code: 'OSP_ERR_CONFIG', message: /instances\/advertiseUrl/ }, bad);
  }
  const wildcard = resolveFleetConfig({ http: { host: '0.0.0.0', port: 8080 } });
  assert.throws(() => checkAdvertiseUrl(wildcard, true), { code: 'OSP_ERR_CONFIG', message: /^instances\.advertiseUrl is required with PostgreSQL storage when http\.host is 0\.0\.0\.0/ });
  assert.doesNotThrow(() => checkAdvertiseUrl(wildcard, false), 'one instance forwards nothing');
  assert.doesNotThrow(() => checkAdvertiseUrl(resolveFleetConfig({ http: { host: '::' }, instances: { advertiseUrl: 'http://b:1' } }), true));
  const concrete = resolveFleetConfig({ http: { host: '10.0.0.5', port: 0 } });
  assert.doesNotThrow(() => checkAdvertiseUrl(concrete, true));
  assert.equal(advertiseUrlOf(concrete, 'https', '10.0.0.5', 41234), 'https://10.0.0.5:41234');
  assert.equal(advertiseUrlOf(resolveFleetConfig({ instances: { advertiseUrl: 'http://b:1' } }), 'http', '10.0.0.5', 1), 'http://b:1');
});
