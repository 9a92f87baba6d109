/**
 * The OpenAPI documents, checked against the routes: every route the fleet (and the edge)
 * registers is in its document with its method and permission, every operation declares the
 * answer it gives on success, and the checked-in docs/openapi.json and docs/openapi-edge.json
 * equal what the code generates (`npm run openapi` rewrites them). Then the reader, in headless
 * Chromium under the console's CSP, signed in as a viewer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CONSOLE_CSP } from '../../fleet-manager/routes/console.js';
import { API_DOCS_CSP, API_DOCS_PREFIX } from '../../fleet-manager/openapi.js';
import { EDGE_OPENAPI_FILE, FLEET_OPENAPI_FILE, documentText, edgeOpenApi, fleetOpenApi, type OpenApiDocument } from '../docs/openapi-documents.js';
import { chromiumSkip, launchChromium, watchedPage } from '../console/browser.js';
import { startFleet } from './control-helpers.js';
import { tempDir } from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const REGENERATE = 'run "npm run openapi" and commit the result';

/** `/api/edges/:id` → `/api/edges/{id}`, as the document writes a path. */
const documentPath = (url: string) => url.replace(/:([A-Za-z0-9_]+)/g, '{$1}').replace(/\*$/, '{*}');

/** Every route (but HEAD and the reader's own files) as `METHOD /path` missing from the document. */
function missingRoutes(doc: OpenApiDocument, routes: readonly { method: string; url: string }[]): string[] {
  return routes
    .filter((r) => r.method !== 'HEAD' && !r.url.startsWith(API_DOCS_PREFIX))
    .filter((r) => doc.paths[documentPath(r.url)]?.[r.method.toLowerCase()] === undefined)
    .map((r) => `${r.method} ${r.url}`);
}

/** Operations that declare no 2xx or 3xx answer. */
function withoutSuccessSchema(doc: OpenApiDocument): string[] {
  const out: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      if (!Object.keys(op.responses ?? {}).some((code) => /^[23]/.test(code))) out.push(`${method.toUpperCase()} ${path}`);
    }
  }
  return out;
}

test('the fleet document lists every route with its permission and answers, and equals docs/openapi.json', { timeout: 60_000 }, async () => {
  const { doc, routes } = await fleetOpenApi();
  assert.equal(doc.openapi, '3.0.3');
  assert.ok(routes.length >= 100, `${routes.length} routes`);
  assert.deepEqual(missingRoutes(doc, routes), [], 'routes missing from the document');
  assert.deepEqual(withoutSuccessSchema(doc), [], 'operations without a success answer');
  for (const r of routes) {
    if (r.method === 'HEAD' || r.url.startsWith(API_DOCS_PREFIX)) continue;
    const op = doc.paths[documentPath(r.url)]![r.method.toLowerCase()]!;
    assert.equal(op['x-osprey-permission'], r.permission, `${r.method} ${r.url}`);
    // Public operations need nothing; every other one a bearer token or a session.
    assert.deepEqual(op.security, r.permission === 'public' ? [] : [{ bearer: [] }, ['GET', 'HEAD'].includes(r.method) ? { session: [] } : { session: [], csrf: [] }], `${r.method} ${r.url}`);
  }
  assert.deepEqual(Object.keys(doc.components?.securitySchemes ?? {}).sort(), ['bearer', 'csrf', 'session']);
  assert.equal(await readFile(`${ROOT}${FLEET_OPENAPI_FILE}`, 'utf8'), documentText(doc), `${FLEET_OPENAPI_FILE} is not what the code generates: ${REGENERATE}`);
});

test('the edge document lists every edge route with its answers, and equals docs/openapi-edge.json', async () => {
  const { doc, routes } = await edgeOpenApi();
  assert.deepEqual(
    routes.filter((r) => r.method !== 'HEAD').map((r) => `${r.method} ${r.url}`).sort(),
    ['GET /health', 'GET /metrics', 'GET /openapi.json', 'POST /golden-set/run', 'POST /inspect', 'POST /monitor/reference'],
  );
  assert.deepEqual(missingRoutes(doc, routes), []);
  assert.deepEqual(withoutSuccessSchema(doc), []);
  assert.equal(await readFile(`${ROOT}${EDGE_OPENAPI_FILE}`, 'utf8'), documentText(doc), `${EDGE_OPENAPI_FILE} is not what the code generates: ${REGENERATE}`);
});

test('the reader: fleet:read, served under the console CSP, and it renders the document in Chromium without a violation', { timeout: 90_000, skip: chromiumSkip() }, async (t) => {
  const f = await startFleet(t);
  for (const path of ['/api/openapi.json', API_DOCS_PREFIX, `${API_DOCS_PREFIX}/json`, `${API_DOCS_PREFIX}/static/swagger-ui-bundle.js`]) {
    const anonymous = await fetch(`${f.httpUrl}${path}`);
    await anonymous.arrayBuffer();
    assert.equal(anonymous.status, 401, `anonymous ${path}`);
  }
  const edge = await fetch(`${f.httpUrl}/api/openapi.json`, { headers: { authorization: `Bearer ${await f.creds.enrollEdge('edge-docs')}` } });
  await edge.arrayBuffer();
  assert.equal(edge.status, 403, 'an edge credential does not read the API document');
  const docRes = await fetch(`${f.httpUrl}/api/openapi.json`, { headers: await f.creds.headers('viewer') });
  const doc = (await docRes.json()) as OpenApiDocument;
  const inDocument = Object.values(doc.paths).reduce((n, ops) => n + Object.keys(ops).length, 0);
  const viewer = await fetch(`${f.httpUrl}${API_DOCS_PREFIX}`, { headers: await f.creds.headers('viewer') });
  assert.equal(viewer.status, 200);
  // The console's policy, one style hash added for swagger-ui's inserted <style>.
  assert.equal(viewer.headers.get('content-security-policy'), API_DOCS_CSP);
  assert.equal(API_DOCS_CSP.replace(/ 'sha256-[A-Za-z0-9+/=]+'/, ''), CONSOLE_CSP);
  assert.match(await viewer.text(), /swagger-ui-bundle\.js/);

  const browser = await launchChromium(t);
  const w = await watchedPage(browser);
  await f.creds.token('viewer'); // makes the user test-viewer
  // Signed in as a person is (the session cookie), not with a token: the reader is for people.
  const signIn = await w.page.request.post(`${f.httpUrl}/api/auth/sign-in`, { data: { username: 'test-viewer', password: 'password of test-viewer' } });
  assert.equal(signIn.status(), 200);
  await w.page.goto(`${f.httpUrl}${API_DOCS_PREFIX}`);
  // The operations of the document, rendered: one block per operation, the metrics route among them.
  await w.page.locator('.opblock').first().waitFor({ timeout: 30_000 });
  const operations = await w.page.locator('.opblock').count();
  assert.equal(operations, inDocument, 'every operation of the document shown');
  assert.ok(await w.page.locator('.opblock-summary-path[data-path="/metrics"]').count() >= 1, 'GET /metrics shown');
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  await w.page.screenshot({ path: join(shots, 'api-docs.png') });
  assert.deepEqual(await w.violations(), [], 'CSP violations');
  assert.deepEqual(w.errors, [], 'console errors');
});
