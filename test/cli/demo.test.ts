/** `osprey demo` as a user runs it: per-line statistics through the API within 15 s of start. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startOsprey } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';

test('osprey demo serves per-line statistics within 15 s and stops cleanly on Ctrl-C', { timeout: 60_000 }, async (t) => {
  const data = await mkdtemp(join(tmpdir(), 'osprey-demo-'));
  t.after(() => rm(data, { recursive: true, force: true }));
  const startedAt = Date.now();
  const demo = startOsprey(['demo', '--port', '0', '--edges', '3', '--data', data]);
  t.after(() => demo.stop('SIGKILL'));

  const line = await demo.waitForLine((l) => typeof l.text === 'string' && l.text.includes('console http'), 15_000);
  const url = String(line.text).match(/(http:\/\/\S+?)\/?$/)![1]!;
  // Secure by default: the demo made an admin and printed its password once; nothing is open.
  const signInLine = await demo.waitForLine((l) => typeof l.text === 'string' && l.text.includes('sign in as'), 5_000);
  const [, username, password] = /sign in as (\S+) with password (\S+) /.exec(String(signInLine.text))!;
  const anonymous = await request(`${url}/api/lines/line-A/stats?bucket=1m`);
  assert.equal(anonymous.statusCode, 401);
  await anonymous.body.dump();
  const signIn = await request(`${url}/api/auth/sign-in`, { method: 'POST', body: JSON.stringify({ username, password }), headers: { 'content-type': 'application/json' } });
  assert.equal(signIn.statusCode, 200);
  await signIn.body.dump();
  const cookie = String(signIn.headers['set-cookie']).split(';')[0]!;

  const stats = await waitFor(
    async () => {
      const res = await request(`${url}/api/lines/line-A/stats?bucket=1m`, { headers: { cookie } });
      const body = (await res.body.json()) as { totals: { total: number; defect: number; defectRate: number } };
      return body.totals.total > 0 ? body : undefined;
    },
    'line-A statistics',
    Math.max(1, 15_000 - (Date.now() - startedAt)),
    200,
  );
  assert.ok(stats.totals.total > 0);
  assert.ok(stats.totals.defectRate >= 0 && stats.totals.defectRate <= 1);
  // Every edge enrolled for its own credential: the fleet lists them online.
  const edges = (await (await request(`${url}/api/edges`, { headers: { cookie } })).body.json()) as { edges: { id: string; online: boolean }[] };
  assert.deepEqual(edges.edges.map((e) => e.id).sort(), ['edge-1', 'edge-2', 'edge-3']);
  const credentials = (await (await request(`${url}/api/edge-credentials`, { headers: { cookie } })).body.json()) as { credentials: { edgeId: string; revokedAt: number | null }[] };
  assert.deepEqual(credentials.credentials.filter((c) => c.revokedAt === null).map((c) => c.edgeId).sort(), ['edge-1', 'edge-2', 'edge-3']);

  // The console at the printed URL, as npm install built it.
  const page = await request(`${url}/`);
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(await page.body.text(), /<script type="module" src="\/assets\/main-[A-Z0-9]+\.js">/);

  assert.equal(await demo.stop('SIGINT'), 0);
  assert.ok(demo.lines.some((l) => typeof l.text === 'string' && l.text.includes('stopping')));
});
