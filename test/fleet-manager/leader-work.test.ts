/**
 * Leader-only work (fleet-manager/leader-work.ts): parts start in order when leadership comes,
 * stop in reverse when it goes (and start again when it comes back); a follower refuses the HTTP
 * writes that drive leader work, and every answer says whether its instance leads.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import Fastify from 'fastify';
import { pino } from 'pino';
import { createLeaderWork } from '../../fleet-manager/leader-work.js';
import { routeLeaderWrites } from '../../fleet-manager/leader-forward.js';
import type { Leadership } from '../../fleet-manager/leadership.js';
import { httpStatusFor, isOspreyError } from '../../protocol/errors.js';

/** A leadership the test hands out and takes back. */
function manualLeadership(): Leadership & { set(v: boolean): Promise<void> } {
  const listeners = new Set<(v: boolean) => void | Promise<void>>();
  let leader = false;
  const set = async (v: boolean) => {
    if (v === leader) return;
    leader = v;
    for (const l of listeners) await l(v);
  };
  return {
    isLeader: () => leader,
    leader: () => null,
    onChange(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    start: async () => {},
    stop: () => set(false),
    set,
  };
}

test('leader parts start in order with leadership, stop in reverse without it, and start again', async () => {
  const leadership = manualLeadership();
  const log: string[] = [];
  const part = (name: string) => ({ name, start: () => void log.push(`start ${name}`), stop: async () => void log.push(`stop ${name}`) });
  const work = createLeaderWork({ leadership, parts: [part('rollouts'), part('alerts')], logger: pino({ level: 'silent' }) });
  await work.start();
  assert.equal(work.isLeader(), false);
  assert.deepEqual(log, [], 'a follower runs nothing');
  await leadership.set(true);
  assert.equal(work.isLeader(), true);
  await leadership.set(false);
  await leadership.set(true);
  await work.stop();
  assert.deepEqual(log, ['start rollouts', 'start alerts', 'stop alerts', 'stop rollouts', 'start rollouts', 'start alerts', 'stop alerts', 'stop rollouts']);
  assert.equal(work.isLeader(), false);
});

test('with failFast a part that cannot start stops those started and fails the change', async () => {
  const leadership = manualLeadership();
  const log: string[] = [];
  const work = createLeaderWork({
    leadership,
    failFast: true,
    logger: pino({ level: 'silent' }),
    parts: [
      { name: 'rollouts', start: () => void log.push('start rollouts'), stop: async () => void log.push('stop rollouts') },
      { name: 'alerts', start: () => Promise.reject(new Error('no database')), stop: async () => void log.push('stop alerts') },
    ],
  });
  await assert.rejects(leadership.set(true), /no database/);
  assert.deepEqual(log, ['start rollouts', 'stop rollouts']);
  assert.equal(work.isLeader(), false);
});

test('a follower answers the writes that drive leader work with 503 and says who leads; reads and other writes pass', async (t) => {
  let leader = false;
  const app = Fastify();
  t.after(() => app.close());
  app.setErrorHandler((err, _req, reply) => {
    if (isOspreyError(err)) return reply.code(httpStatusFor(err.code)).send({ code: err.code, message: err.message });
    return reply.code(500).send({ message: String(err) });
  });
  // No leader known: nothing to forward to, so a follower refuses (forwarding: leader-forward.test.ts).
  routeLeaderWrites(app, { isLeader: () => leader, leader: () => null, instance: 'me' });
  for (const url of ['/api/rollouts', '/api/rollouts/:id/:action', '/api/lines/:line/rollback', '/api/lines/:line/config', '/api/config', '/api/edges/:id/config', '/api/training-jobs', '/api/backbones/:name', '/api/models/:name/versions']) {
    app.route({ method: ['GET', 'POST', 'PUT', 'DELETE'], url, handler: async () => ({ ok: true }) });
  }
  const call = async (method: string, url: string) => {
    const res = await app.inject({ method: method as 'GET', url });
    return { status: res.statusCode, leaderHeader: res.headers['x-osprey-leader'], retryAfter: res.headers['retry-after'], body: res.json() as { code?: string } };
  };
  for (const [method, url] of [
    ['POST', '/api/rollouts'],
    ['POST', '/api/rollouts/r1/pause'],
    ['POST', '/api/lines/L1/rollback'],
    ['PUT', '/api/lines/L1/config'],
    ['PUT', '/api/config'],
    ['DELETE', '/api/edges/e1/config'],
    ['POST', '/api/training-jobs'],
    ['DELETE', '/api/backbones/b1'],
  ] as const) {
    const res = await call(method, url);
    assert.equal(res.status, 503, `${method} ${url} on a follower`);
    assert.equal(res.body.code, 'OSP_ERR_BUSY');
    assert.equal(res.retryAfter, '2');
    assert.equal(res.leaderHeader, 'false');
  }
  assert.equal((await call('GET', '/api/rollouts')).status, 200, 'reads are served by every instance');
  assert.equal((await call('POST', '/api/models/m/versions')).status, 200, 'registry uploads are served by every instance');
  leader = true;
  const led = await call('POST', '/api/rollouts');
  assert.equal(led.status, 200);
  assert.equal(led.leaderHeader, 'true');
});
