/**
 * Webhook notifications on a real fleet: a real local receiver (HTTP on port 0) that first
 * refuses connections, then answers 503, while the fleet restarts on the same data directory;
 * once it is back it gets every alert change exactly once, in both formats, each signed with the
 * fleet key and carrying a stable delivery id. Only admins manage webhooks; their URLs (which
 * often hold a chat tool's token) never reach the log.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createPublicKey, verify } from 'node:crypto';
import { startFleet } from './control-helpers.js';
import { captureLogger } from './helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { waitFor } from '../helpers/wait-for.js';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { signedText } from '../../fleet-manager/webhook-sender.js';
import type { AlertNotification, DeliveryView, WebhookView } from '../../fleet-manager/alert-schemas.js';
import { testPublisherKey } from '../helpers/publisher.js';

interface Received {
  path: string;
  delivery: string;
  event: string;
  timestamp: string;
  signature: string;
  body: string;
}

/** A receiver that can be down (refusing: connections reset at once), failing (503) or up (200, recorded). */
async function startReceiver() {
  let mode: 'refuse' | '503' | 'up' = 'refuse';
  const received: Received[] = [];
  const attempts = { refused: 0, failed: 0 };
  const waiters: (() => void)[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (mode === '503') {
        attempts.failed++;
        res.writeHead(503).end('busy');
        for (const w of waiters.splice(0)) w();
        return;
      }
      received.push({
        path: req.url ?? '',
        delivery: String(req.headers['x-osprey-delivery']),
        event: String(req.headers['x-osprey-event']),
        timestamp: String(req.headers['x-osprey-timestamp']),
        signature: String(req.headers['x-osprey-signature']),
        body: Buffer.concat(chunks).toString('utf8'),
      });
      res.writeHead(200).end('ok');
      for (const w of waiters.splice(0)) w();
    });
  });
  server.on('connection', (socket) => {
    if (mode === 'refuse') {
      attempts.refused++;
      socket.destroy();
      for (const w of waiters.splice(0)) w();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    attempts,
    setMode(m: typeof mode) {
      mode = m;
    },
    /** Resolves once the receiver has seen something satisfying `done` (checked after every request). */
    until(done: () => boolean): Promise<void> {
      return new Promise((resolve) => {
        const check = () => (done() ? resolve() : waiters.push(check));
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

test('a webhook receiver that is down for a while, across a fleet restart, still gets every alert change exactly once, signed, in both formats', { timeout: 60_000 }, async (t) => {
  const receiver = await startReceiver();
  t.after(() => receiver.close());
  const log = captureLogger('debug');
  const settings = { webhooks: { retryBaseMs: 20, retryMaxMs: 200, timeoutMs: 2000 } };
  const f = await startFleet(t, { logger: log.logger, ...settings });
  const publicKey = createPublicKey(String((await f.api('GET', '/api/fleet/public-key')).body));

  // Only admins manage webhooks.
  const body = { name: 'ops json', url: `${receiver.url}/json/SECRET-TOKEN-123` };
  for (const role of ['viewer', 'operator', 'release-manager', 'inspector'] as const) {
    const h = { ...(await f.creds.headers(role)), 'content-type': 'application/json' };
    assert.equal((await fetch(`${f.httpUrl}/api/webhooks`, { method: 'POST', headers: h, body: JSON.stringify(body) })).status, 403, role);
    assert.equal((await fetch(`${f.httpUrl}/api/webhooks`, { headers: h })).status, 403, role);
  }
  // URLs are checked: http(s) only, no user:password.
  for (const [url, why] of [['ftp://example.com/x', /must be an http or https URL|body\/url/], ['http://user:pw@example.com/x', /user name or password/], ['https://', /body\/url/]] as const) {
    const bad = await f.api('POST', '/api/webhooks', { name: 'bad', url });
    assert.equal(bad.status, 400, url);
    assert.match(bad.body.message, why);
  }
  const json = (await f.api('POST', '/api/webhooks', body)).body as WebhookView;
  const chat = (await f.api('POST', '/api/webhooks', { name: 'chat', url: `${receiver.url}/chat/SECRET-TOKEN-456`, format: 'chat', types: ['image-blur', 'score-drift'], lines: ['L1'] })).body as WebhookView;
  const elsewhere = (await f.api('POST', '/api/webhooks', { name: 'other line', url: `${receiver.url}/other`, lines: ['L9'] })).body as WebhookView;
  assert.deepEqual([json.format, json.enabled, chat.format, chat.types, chat.lines], ['json', true, 'chat', ['image-blur', 'score-drift'], ['L1']]);

  // Alert changes while the receiver refuses connections: raised, acknowledged, resolved; raised.
  const edge = await connectSimEdge(f.mqttUrl, { id: 'press-1', credential: await f.creds.enrollEdge('press-1'), line: 'L1', localModel: { name: 'inspect', version: '1' } });
  t.after(() => edge.close());
  const send = (data: Record<string, unknown>) =>
    edge.client.publishAsync(edgeTopic('press-1', 'events'), encodeMessage(envelope('events', 'press-1', { kind: 'alert', level: 'warn', message: `alarm ${String(data.alarm)}`, data })), { qos: 1 });
  await send({ alarm: 'image-blur', sharpness: 2 });
  const blur = await log.waitFor((l) => l.msg === 'alert raised' && l.type === 'image-blur');
  assert.equal((await f.api('POST', `/api/alerts/${blur.alertId}/ack`)).status, 200);
  await send({ alarm: 'image-blur', cleared: true });
  await log.waitFor((l) => l.msg === 'alert resolved' && l.type === 'image-blur');
  await send({ alarm: 'camera-shift', shiftPx: 9 });
  const shift = await log.waitFor((l) => l.msg === 'alert raised' && l.type === 'camera-shift');
  await receiver.until(() => receiver.attempts.refused >= 4);
  const pending = (await f.api('GET', `/api/webhooks/${json.id}/deliveries`)).body.deliveries as DeliveryView[];
  assert.ok(pending.length === 4 && pending.every((d) => d.status === 'pending'), JSON.stringify(pending));
  assert.ok(pending.some((d) => d.attempts >= 1 && d.lastError !== null), 'failed attempts are recorded');
  assert.equal(((await f.api('GET', '/api/webhooks')).body.webhooks as WebhookView[]).find((w) => w.id === json.id)?.pending, 4);

  // Then it answers 503 for a while, and the fleet restarts meanwhile.
  receiver.setMode('503');
  await receiver.until(() => receiver.attempts.failed >= 2);
  await f.fm.close();
  assert.equal(receiver.received.length, 0);
  const log2 = captureLogger('debug');
  const fm2 = createFleetManager({ http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 }, logger: log2.logger, registry: { publisherKeys: [testPublisherKey()] }, dataDir: f.dataDir, ...settings });
  t.after(() => fm2.close());
  const { httpUrl } = await fm2.start();
  receiver.setMode('up');

  // json: 4 changes (raised, acknowledged, resolved of image-blur; raised of camera-shift); chat: the 3 of image-blur (its type filter); the other line: none.
  const expected = [
    ['/json/SECRET-TOKEN-123', blur.alertId, 'raised'],
    ['/json/SECRET-TOKEN-123', blur.alertId, 'acknowledged'],
    ['/json/SECRET-TOKEN-123', blur.alertId, 'resolved'],
    ['/json/SECRET-TOKEN-123', shift.alertId, 'raised'],
    ['/chat/SECRET-TOKEN-456', blur.alertId, 'raised'],
    ['/chat/SECRET-TOKEN-456', blur.alertId, 'acknowledged'],
    ['/chat/SECRET-TOKEN-456', blur.alertId, 'resolved'],
  ];
  await receiver.until(() => receiver.received.length >= expected.length);
  const admin = f.admin;
  await waitFor(async () => {
    const res = await fetch(`${httpUrl}/api/webhooks`, { headers: admin });
    return ((await res.json()) as { webhooks: WebhookView[] }).webhooks.every((w) => w.pending === 0);
  }, 'the outbox empty');

  // Exactly once: one 2xx per delivery id, one delivery per (webhook, alert, event); in order per webhook.
  assert.equal(new Set(receiver.received.map((r) => r.delivery)).size, receiver.received.length, 'no delivery id twice');
  const seen = receiver.received.map((r) => {
    if (r.path.startsWith('/json')) {
      const n = JSON.parse(r.body) as AlertNotification;
      assert.equal(n.event, r.event);
      return [r.path, n.alert.id, n.event];
    }
    const c = JSON.parse(r.body) as { text: string };
    assert.deepEqual(Object.keys(c), ['text']);
    assert.match(c.text, /^\[Osprey\] WARNING image-blur (raised|acknowledged by user:test-admin|resolved) \(edge press-1, line L1\): alarm image-blur #\d+$/);
    return [r.path, Number(/#(\d+)$/.exec(c.text)![1]), r.event];
  });
  assert.deepEqual(seen.filter((s) => String(s[0]).startsWith('/json')), expected.slice(0, 4));
  assert.deepEqual(seen.filter((s) => String(s[0]).startsWith('/chat')), expected.slice(4));
  // Signed: the fleet key's Ed25519 signature over delivery id, timestamp and body.
  for (const r of receiver.received) {
    const [scheme, sig] = r.signature.split('=', 2) as [string, string];
    assert.equal(scheme, 'ed25519');
    assert.ok(verify(null, Buffer.from(signedText(r.delivery, r.timestamp, r.body)), publicKey, Buffer.from(r.signature.slice('ed25519='.length), 'base64')), 'signature verifies');
    assert.ok(sig.length > 0);
    assert.equal(verify(null, Buffer.from(signedText(r.delivery, r.timestamp, `${r.body} `)), publicKey, Buffer.from(r.signature.slice('ed25519='.length), 'base64')), false, 'a changed body does not verify');
  }
  const history = (await (await fetch(`${httpUrl}/api/webhooks/${json.id}/deliveries`, { headers: admin })).json()) as { deliveries: DeliveryView[] };
  assert.deepEqual(history.deliveries.map((d) => [d.status, d.lastStatus]), Array(4).fill(['delivered', 200]));
  // One webhook's deliveries go in order: the oldest was retried while the receiver was down, the rest waited behind it.
  assert.ok(history.deliveries.at(-1)!.attempts >= 3, JSON.stringify(history.deliveries));
  assert.equal(((await (await fetch(`${httpUrl}/api/webhooks/${elsewhere.id}/deliveries`, { headers: admin })).json()) as { deliveries: unknown[] }).deliveries.length, 0);

  // A test notification: sent now, outside the queue, recorded.
  const tested = (await (await fetch(`${httpUrl}/api/webhooks/${chat.id}/test`, { method: 'POST', headers: admin })).json()) as DeliveryView;
  assert.deepEqual([tested.status, tested.lastStatus, tested.event, tested.attempts], ['delivered', 200, 'test', 1]);
  assert.match(JSON.parse(receiver.received.at(-1)!.body).text as string, /a test notification/);
  // Disabled, then deleted (its deliveries with it); the audit log keeps the origin, never the path.
  const off = await fetch(`${httpUrl}/api/webhooks/${chat.id}`, { method: 'PATCH', headers: { ...admin, 'content-type': 'application/json' }, body: JSON.stringify({ enabled: false }) });
  assert.equal(((await off.json()) as WebhookView).enabled, false);
  assert.equal((await fetch(`${httpUrl}/api/webhooks/${chat.id}`, { method: 'DELETE', headers: admin })).status, 200);
  assert.equal((await fetch(`${httpUrl}/api/webhooks/${chat.id}/deliveries`, { headers: admin })).status, 404);
  const audit = (await (await fetch(`${httpUrl}/api/audit?action=webhook.`, { headers: admin })).json()) as { entries: unknown[] };
  const auditText = JSON.stringify(audit.entries);
  assert.match(auditText, /webhook\.create/);
  assert.doesNotMatch(auditText, /SECRET-TOKEN/);
  const logs = JSON.stringify([...log.lines, ...log2.lines]);
  assert.match(logs, /webhook delivery failed; will retry/);
  assert.doesNotMatch(logs, /SECRET-TOKEN/, 'webhook URLs never reach the log');
});
