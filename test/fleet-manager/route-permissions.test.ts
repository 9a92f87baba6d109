/**
 * Authorization, walked over every route of a fully built fleet manager (real HTTP, real
 * SQLite, real tokens): each route declares a known permission, anonymous callers are refused
 * every non-public route, a viewer every state-changing one, and each role can do its job and
 * no more (the roles of issue 14).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { pino } from 'pino';
import { PERMISSIONS, ROLES, isSafeMethod, type Role } from '../../fleet-manager/auth/roles.js';
import { installAuthorization } from '../../fleet-manager/auth/authorize.js';
import type { IdentityStore } from '../../fleet-manager/identity-store.js';
import { startFleet, type TestFleet } from './control-helpers.js';

/** A sample value for each route parameter, so any route pattern becomes a URL the router matches. */
const SAMPLE: Record<string, string> = {
  id: 'edge-1',
  edgeId: 'edge-1',
  line: 'L1',
  name: 'm',
  version: '1.0.0',
  sha256: 'a'.repeat(64),
  draft: 'd-0000000000000000',
  seq: '1',
  action: 'pause',
  username: 'somebody',
  file: 'main.js',
};

function urlOf(pattern: string): string {
  return pattern.replace(/:([A-Za-z0-9_]+)/g, (_m, name: string) => {
    const v = SAMPLE[name];
    if (v === undefined) throw new Error(`no sample value for :${name} in ${pattern}; add one to SAMPLE`);
    return v;
  }).replace(/\*$/, 'x');
}

async function send(f: TestFleet, method: string, path: string, headers: Record<string, string> = {}, body?: unknown): Promise<number> {
  const init: RequestInit = { method, headers: { ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { ...headers, 'content-type': 'application/json' };
  }
  const res = await fetch(`${f.httpUrl}${path}`, init);
  await res.arrayBuffer();
  return res.status;
}

/**
 * The routes anyone may call without a credential. The enrollment exchange (an edge trading its
 * one-time token for a credential) is public by design; nothing else may be.
 */
const PUBLIC = new Set(['/health', '/', '/assets/:file', '/api/fleet/public-key', '/api/auth/sign-in', '/api/auth/session']);
const isPublicByDesign = (url: string) => PUBLIC.has(url) || /enroll/.test(url);

/** State-changing routes a viewer may call: its own session and tokens, and signing in. */
const VIEWER_MAY = new Set(['POST /api/auth/sign-in', 'POST /api/auth/sign-out', 'POST /api/tokens', 'DELETE /api/tokens/:id']);

test('every route of a full fleet declares a known permission; a route without one cannot be registered', async (t) => {
  const f = await startFleet(t);
  const routes = f.fm.routes();
  assert.ok(routes.length >= 40, `${routes.length} routes`);
  const known = new Set<string>(PERMISSIONS);
  for (const r of routes) assert.ok(known.has(r.permission), `${r.method} ${r.url}: ${r.permission}`);
  const byRoute = new Map(routes.map((r) => [`${r.method} ${r.url}`, r.permission]));
  const publicRoutes = routes.filter((r) => r.permission === 'public').map((r) => `${r.method} ${r.url}`);
  assert.deepEqual(publicRoutes.filter((r) => !isPublicByDesign(r.split(' ')[1]!)), [], 'no route is public by accident');
  for (const url of PUBLIC) assert.equal(byRoute.get(`${url === '/api/auth/sign-in' ? 'POST' : 'GET'} ${url}`), 'public', url);
  // The attack surface, spelled out.
  assert.equal(byRoute.get('PUT /api/config'), 'config:write');
  assert.equal(byRoute.get('POST /api/models/:name/versions'), 'registry:write');
  assert.equal(byRoute.get('PUT /api/results/:edgeId/:seq/image'), 'images:upload');
  assert.equal(byRoute.get('GET /api/results'), 'results:read');
  assert.equal(byRoute.get('GET /api/audit'), 'audit:read');
  assert.equal(byRoute.get('POST /api/training-jobs'), 'training:write');
  assert.equal(byRoute.get('POST /api/training-jobs/:id/cancel'), 'training:write');
  assert.equal(byRoute.get('GET /api/training-jobs/:id/events'), 'fleet:read');
  assert.equal(byRoute.get('POST /api/backbones'), 'registry:write');
  assert.equal(byRoute.get('POST /api/models/propose'), 'registry:write');
  assert.equal(byRoute.get('POST /api/models/propose/:draft/smoke-test'), 'registry:write');
  assert.equal(byRoute.get('POST /api/models/propose/:draft/register'), 'registry:write');
  assert.equal(byRoute.get('GET /api/edges/:id/telemetry'), 'fleet:read');
  assert.equal(byRoute.get('POST /api/edges/:id/threshold-preview'), 'config:write');
  assert.equal(byRoute.get('PUT /api/results/:edgeId/:seq/review'), 'results:review');
  assert.equal(byRoute.get('DELETE /api/results/:edgeId/:seq/review'), 'results:review');
  assert.equal(byRoute.get('GET /api/review/queue'), 'results:read');
  assert.equal(byRoute.get('GET /api/lines/:line/accuracy'), 'results:read');
  assert.equal(byRoute.get('GET /api/datasets/export'), 'results:read');
  assert.equal(byRoute.get('GET /api/alerts'), 'fleet:read');
  assert.equal(byRoute.get('POST /api/alerts/:id/ack'), 'alerts:ack');
  for (const r of ['GET /api/webhooks', 'POST /api/webhooks', 'PATCH /api/webhooks/:id', 'DELETE /api/webhooks/:id', 'POST /api/webhooks/:id/test', 'GET /api/webhooks/:id/deliveries']) {
    assert.equal(byRoute.get(r), 'alerts:admin', r);
  }

  const bare = Fastify();
  installAuthorization(bare, { identity: {} as IdentityStore, logger: pino({ level: 'silent' }) });
  assert.throws(() => bare.get('/undeclared', async () => 'x'), /GET \/undeclared declares no permission/);
  assert.throws(() => bare.get('/unknown', { config: { permission: 'everything' as never } }, async () => 'x'), /declares no permission/);
  await bare.close();
});

test('anonymous callers get 401 on every non-public route, a viewer 403 on every state change it does not own', async (t) => {
  const f = await startFleet(t);
  const viewer = await f.creds.headers('viewer');
  const routes = f.fm.routes();
  const checked = { anonymous: 0, viewer: 0 };
  for (const r of routes) {
    const path = urlOf(r.url);
    if (r.permission !== 'public') {
      assert.equal(await send(f, r.method, path), 401, `anonymous ${r.method} ${r.url}`);
      // A malformed or made-up credential is no better than none.
      assert.equal(await send(f, r.method, path, { authorization: 'Bearer ospt_AAAAAAAAAAAA.' + 'A'.repeat(43) }), 401, `forged token ${r.method} ${r.url}`);
      checked.anonymous++;
    }
    if (!isSafeMethod(r.method) && r.permission !== 'public' && !VIEWER_MAY.has(`${r.method} ${r.url}`)) {
      assert.equal(await send(f, r.method, path, viewer), 403, `viewer ${r.method} ${r.url}`);
      checked.viewer++;
    }
  }
  // What a viewer may change is exactly its own session and tokens.
  const viewerMay = routes.filter((r) => !isSafeMethod(r.method) && r.permission === 'self').map((r) => `${r.method} ${r.url}`);
  assert.deepEqual(new Set([...viewerMay, 'POST /api/auth/sign-in']), VIEWER_MAY);
  t.diagnostic(`${checked.anonymous} routes refused to anonymous, ${checked.viewer} state changes refused to a viewer`);
  assert.ok(checked.viewer >= 16, "every state change of issue 14 is among them");
});

test('the attack: PUT /api/config {thresholds:{default:1e9}} (or 1) without a credential is refused and changes nothing', async (t) => {
  const f = await startFleet(t);
  for (const value of [1e9, 1]) {
    const res = await fetch(`${f.httpUrl}/api/config`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ thresholds: { default: value } }) });
    assert.equal(res.status, 401);
    assert.equal(((await res.json()) as { error: string }).error, 'OSP_ERR_UNAUTHENTICATED');
  }
  const viewer = await f.creds.headers('viewer');
  assert.equal(await send(f, 'PUT', '/api/config', viewer, { thresholds: { default: 1 } }), 403);
  // An edge's own credential does not make it a person either.
  const edge = { authorization: `Bearer ${await f.creds.enrollEdge('edge-1')}` };
  assert.equal(await send(f, 'PUT', '/api/config', edge, { thresholds: { default: 1 } }), 403);
  const config = await f.api('GET', '/api/config');
  assert.deepEqual([config.body.version, config.body.settings], [0, {}]);
});

type Who = Role | 'edge';
const PEOPLE = ROLES;
const ALL: readonly Who[] = [...PEOPLE, 'edge'];
const only = (...who: Who[]) => who;

/**
 * The roles of issue 14, one representative request per job: admin (users, tokens, keys),
 * release manager (registry, rollouts), operator (config and thresholds, pause/abort/rollback),
 * inspector (results), viewer (read-only). Allowed: authorized (any answer but 401/403).
 */
const MATRIX: { method: string; path: string; body?: unknown; allowed: readonly Who[] }[] = [
  { method: 'GET', path: '/api/edges', allowed: PEOPLE },
  { method: 'GET', path: '/api/lines/L1/stats', allowed: PEOPLE },
  { method: 'GET', path: '/api/lines/L1/series', allowed: PEOPLE },
  { method: 'GET', path: '/api/lines/L1/compare?version=a@1', allowed: PEOPLE },
  { method: 'GET', path: '/api/lines/L1/shifts', allowed: PEOPLE },
  { method: 'GET', path: '/api/rollouts', allowed: PEOPLE },
  { method: 'GET', path: '/api/models', allowed: PEOPLE },
  { method: 'GET', path: '/api/config', allowed: PEOPLE },
  { method: 'GET', path: '/api/auth/me', allowed: PEOPLE },
  { method: 'GET', path: '/api/results', allowed: only('admin', 'release-manager', 'operator', 'inspector') },
  { method: 'GET', path: '/api/results/edge-1/1/image', allowed: only('admin', 'release-manager', 'operator', 'inspector') },
  { method: 'GET', path: '/api/review/queue', allowed: only('admin', 'release-manager', 'operator', 'inspector') },
  { method: 'GET', path: '/api/lines/L1/accuracy', allowed: only('admin', 'release-manager', 'operator', 'inspector') },
  { method: 'GET', path: '/api/datasets/export?line=L1&format=coco', allowed: only('admin', 'release-manager', 'operator', 'inspector') },
  { method: 'PUT', path: '/api/results/edge-1/1/review', body: { review: 'confirmed' }, allowed: only('admin', 'inspector') },
  { method: 'DELETE', path: '/api/results/edge-1/1/review', allowed: only('admin', 'inspector') },
  { method: 'PUT', path: '/api/config', body: { thresholds: { default: 0.5 } }, allowed: only('admin', 'operator') },
  { method: 'PUT', path: '/api/lines/L1/config', body: { thresholds: { default: 0.5 } }, allowed: only('admin', 'operator') },
  { method: 'DELETE', path: '/api/edges/edge-1/config', allowed: only('admin', 'operator') },
  { method: 'GET', path: '/api/edges/edge-1/telemetry', allowed: PEOPLE },
  { method: 'POST', path: '/api/edges/edge-1/threshold-preview', body: { label: 'scratch', threshold: 0.5 }, allowed: only('admin', 'operator') },
  { method: 'POST', path: '/api/rollouts/ro-none/pause', allowed: only('admin', 'release-manager', 'operator') },
  { method: 'POST', path: '/api/rollouts/ro-none/abort', allowed: only('admin', 'release-manager', 'operator') },
  { method: 'POST', path: '/api/rollouts/ro-none/rollback', allowed: only('admin', 'release-manager', 'operator') },
  { method: 'POST', path: '/api/lines/L1/rollback', allowed: only('admin', 'release-manager', 'operator') },
  { method: 'POST', path: '/api/rollouts/ro-none/promote', allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/rollouts', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/models/m/versions', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/models/propose', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/models/propose/d-0000000000000000/smoke-test', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/models/propose/d-0000000000000000/register', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/training-jobs', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'POST', path: '/api/training-jobs/tj-none/cancel', allowed: only('admin', 'release-manager') },
  { method: 'GET', path: '/api/training-jobs', allowed: PEOPLE },
  { method: 'GET', path: '/api/training-jobs/tj-none/logs', allowed: PEOPLE },
  { method: 'GET', path: '/api/backbones', allowed: PEOPLE },
  { method: 'POST', path: '/api/backbones?name=b', body: {}, allowed: only('admin', 'release-manager') },
  { method: 'DELETE', path: '/api/backbones/b', allowed: only('admin', 'release-manager') },
  { method: 'GET', path: `/api/artifacts/${'a'.repeat(64)}`, allowed: only('admin', 'release-manager', 'edge') },
  { method: 'PUT', path: '/api/results/edge-1/1/image', allowed: only('edge') },
  { method: 'GET', path: '/api/alerts', allowed: PEOPLE },
  { method: 'POST', path: '/api/alerts/999/ack', allowed: only('admin', 'release-manager', 'operator', 'inspector') },
  { method: 'GET', path: '/api/webhooks', allowed: only('admin') },
  { method: 'POST', path: '/api/webhooks', body: { name: 'w', url: 'http://127.0.0.1:9/x' }, allowed: only('admin') },
  { method: 'POST', path: '/api/webhooks/999/test', allowed: only('admin') },
  { method: 'GET', path: '/api/users', allowed: only('admin') },
  { method: 'POST', path: '/api/users', body: {}, allowed: only('admin') },
  { method: 'PATCH', path: '/api/users/somebody', body: { role: 'viewer' }, allowed: only('admin') },
  { method: 'POST', path: '/api/enrollment-tokens', body: { edgeId: 'edge-9' }, allowed: only('admin') },
  { method: 'GET', path: '/api/edge-credentials', allowed: only('admin') },
  { method: 'GET', path: '/api/audit', allowed: only('admin') },
  { method: 'GET', path: '/health', allowed: ALL },
];

test('role matrix: each role can do its job and is refused (403) the rest', async (t) => {
  const f = await startFleet(t);
  const headers = new Map<Who, Record<string, string>>();
  for (const role of PEOPLE) headers.set(role, await f.creds.headers(role));
  headers.set('edge', { authorization: `Bearer ${await f.creds.enrollEdge('edge-1')}` });
  const failures: string[] = [];
  for (const row of MATRIX) {
    for (const who of ALL) {
      const status = await send(f, row.method, row.path, headers.get(who), row.body);
      const allowed = row.allowed.includes(who);
      if (allowed ? status === 401 || status === 403 : status !== 403) failures.push(`${who} ${row.method} ${row.path}: ${status}, expected ${allowed ? 'authorized' : '403'}`);
    }
  }
  assert.deepEqual(failures, []);
});
