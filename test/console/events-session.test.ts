import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { createEdgeFeed } from '../../fleet-manager/edge-feed.js';
import { envelope } from '../../protocol/validator.js';
import { openTestIdentity } from '../helpers/identity.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { openSse } from './sse-reader.js';

test('GET /api/events with a session: edges the feed names arrive; the stream ends once the session does', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  const store = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  t.after(() => store.close());
  const creds = openTestIdentity(t, file);
  await creds.token('viewer'); // the user test-viewer
  const feed = createEdgeFeed({ tickMs: 5 });
  t.after(() => feed.close());
  const app = await buildApp({ store, identity: creds.identity, logger: pino({ level: 'silent' }), events: { feed, heartbeatMs: 50 } });
  t.after(() => app.close());
  await app.listen({ host: '127.0.0.1', port: 0 });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

  const signIn = await fetch(`${base}/api/auth/sign-in`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'test-viewer', password: 'password of test-viewer' }) });
  assert.equal(signIn.status, 200);
  const { csrfToken } = (await signIn.json()) as { csrfToken: string };
  const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;

  const stream = await openSse(`${base}/api/events`, { cookie });
  t.after(() => stream.close());
  assert.equal(stream.status, 200);
  assert.deepEqual((await stream.next((e) => e.event === 'snapshot')).data.edges, []);

  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1' }), { receivedAt: Date.now(), replay: false });
  feed.notify('e1');
  const update = await stream.next((e) => e.event === 'edge');
  assert.equal(update.data.edge.id, 'e1');
  assert.equal(update.data.edge.line, 'L1');
  assert.equal(update.data.edge.online, true);

  // Signed out (elsewhere: another tab): the open stream ends at the next heartbeat.
  const signOut = await fetch(`${base}/api/auth/sign-out`, { method: 'POST', headers: { cookie, 'x-osprey-csrf': csrfToken } });
  assert.equal(signOut.status, 204);
  await stream.ended;
  assert.equal((await openSse(`${base}/api/events`, { cookie })).status, 401);
});
