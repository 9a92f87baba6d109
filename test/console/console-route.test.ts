import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { openTestIdentity } from '../helpers/identity.js';
import { tempDir } from '../fleet-manager/helpers.js';

async function build(t: TestContext, consoleDir?: string) {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  const creds = openTestIdentity(t, file);
  const app = await buildApp({ store, identity: creds.identity, logger: pino({ level: 'silent' }), ...(consoleDir && { console: { dir: consoleDir } }) });
  t.after(async () => {
    await app.close();
    await store.close();
  });
  return { app, creds };
}

test('GET / serves the console shell under a strict CSP; its hashed assets are cached for good, the shell never', async (t) => {
  const { app } = await build(t);
  const res = await app.inject('/');
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(res.headers['cache-control'], 'no-cache');
  assert.equal(res.headers['x-content-type-options'], 'nosniff');
  const csp = res.headers['content-security-policy'] as string;
  assert.match(csp, /^default-src 'self'; script-src 'self'; style-src 'self';/);
  assert.doesNotMatch(csp, /unsafe|https?:|\*/);
  assert.match(csp, /frame-ancestors 'none'/);
  // No inline code: every script and style sheet is a file of this origin.
  assert.doesNotMatch(res.body, /<script(?![^>]*\bsrc=)[^>]*>|<style|\son\w+=|https?:\/\//);
  const js = /<script type="module" src="(\/assets\/main-[A-Z0-9]{8}\.js)"><\/script>/.exec(res.body)?.[1];
  const css = /<link rel="stylesheet" href="(\/assets\/main-[A-Z0-9]{8}\.css)">/.exec(res.body)?.[1];
  assert.ok(js && css, res.body);
  for (const [path, type] of [[js, 'text/javascript; charset=utf-8'], [css, 'text/css; charset=utf-8']] as const) {
    const asset = await app.inject(path);
    assert.equal(asset.statusCode, 200, path);
    assert.equal(asset.headers['content-type'], type);
    assert.equal(asset.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(asset.headers['x-content-type-options'], 'nosniff');
    assert.ok(asset.body.length > 1000);
    assert.equal(asset.headers['content-encoding'], undefined, 'no Accept-Encoding: the plain file');
    // Compressed once at build time; what the browser accepts, brotli first, unpacking to the same bytes.
    for (const [accept, encoding, unpack] of [
      ['gzip, deflate, br', 'br', brotliDecompressSync],
      ['gzip', 'gzip', gunzipSync],
      ['br;q=0, gzip;q=0.5', 'gzip', gunzipSync],
    ] as const) {
      const packed = await app.inject({ url: path, headers: { 'accept-encoding': accept } });
      assert.equal(packed.headers['content-encoding'], encoding, accept);
      assert.equal(packed.headers.vary, 'accept-encoding');
      assert.ok(packed.rawPayload.length < asset.rawPayload.length / 2, `${path} ${encoding}: ${packed.rawPayload.length} of ${asset.rawPayload.length} bytes`);
      assert.ok(unpack(packed.rawPayload).equals(asset.rawPayload), `${path} ${encoding} unpacks to the file`);
    }
    const identity = await app.inject({ url: path, headers: { 'accept-encoding': 'identity' } });
    assert.equal(identity.headers['content-encoding'], undefined);
  }
  // Only the files the build made; a name is never a path.
  for (const path of ['/assets/nothing.js', '/assets/..%2Findex.html', '/assets/%2E%2E%2F%2E%2E%2Fpackage.json']) {
    const missing = await app.inject(path);
    assert.equal(missing.statusCode, 404, path);
    assert.equal(missing.json().error, 'OSP_ERR_NOT_FOUND');
  }
});

test('GET / without a built console answers 503 saying how to build it', async (t) => {
  const { app } = await build(t, await tempDir(t));
  const res = await app.inject('/');
  assert.equal(res.statusCode, 503);
  assert.deepEqual(res.json(), { error: 'OSP_ERR_INTERNAL', message: 'the console is not built: run "npm run build"' });
});

test('GET /api/auth/me names the permissions of the role, so the console shows only what it may do', async (t) => {
  const { app, creds } = await build(t);
  const viewer = await app.inject({ url: '/api/auth/me', headers: await creds.headers('viewer') });
  assert.equal(viewer.statusCode, 200);
  assert.deepEqual(viewer.json().permissions, ['fleet:read', 'metrics:read', 'self']);
  const operator = await app.inject({ url: '/api/auth/me', headers: await creds.headers('operator') });
  assert.deepEqual(operator.json().permissions, ['alerts:ack', 'config:write', 'fleet:read', 'metrics:read', 'results:read', 'rollouts:control', 'self']);
});

test("GET /api/auth/session answers 200 with the browser's session, or null without one", async (t) => {
  const { app, creds } = await build(t);
  await creds.token('viewer'); // the user test-viewer
  assert.deepEqual((await app.inject('/api/auth/session')).json(), { session: null });
  assert.deepEqual((await app.inject({ url: '/api/auth/session', headers: { cookie: 'osprey_session=osps_nothing.nothing' } })).json(), { session: null });
  const signIn = await app.inject({ method: 'POST', url: '/api/auth/sign-in', payload: { username: 'test-viewer', password: 'password of test-viewer' } });
  assert.equal(signIn.statusCode, 200);
  const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;
  const res = await app.inject({ url: '/api/auth/session', headers: { cookie } });
  assert.equal(res.statusCode, 200);
  const { session } = res.json();
  assert.equal(session.user.username, 'test-viewer');
  assert.equal(session.role, 'viewer');
  assert.equal(session.via, 'session');
  assert.equal(session.csrfToken, signIn.json().csrfToken);
  assert.deepEqual(session.permissions, ['fleet:read', 'metrics:read', 'self']);
});
