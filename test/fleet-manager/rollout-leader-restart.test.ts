/**
 * A rollout engine that leads again (fleet-manager/leader-work.ts restarts it after another
 * instance led for a while) takes the rollouts from their stored documents, not from what it held
 * when it stopped: another leader may have moved them on meanwhile.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { openSqliteControlStore } from '../../fleet-manager/control-store.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { createRolloutEngine } from '../../fleet-manager/rollout-engine.js';
import type { DesiredPublisher } from '../../fleet-manager/desired-state.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { register, startFleet } from './control-helpers.js';

const silent = pino({ level: 'silent' });
/** Desired states are not what this test is about: nothing is published. */
const publisher = {
  refresh: async () => ({ published: [], delivered: Promise.resolve() }),
  refreshAll: async () => ({ published: [], delivered: Promise.resolve() }),
} as unknown as DesiredPublisher;

test('an engine started again loads the rollouts as another leader left them', { timeout: 30_000 }, async (t) => {
  // A running rollout, made through a whole fleet on SQLite, then that fleet is gone.
  const fleet = await startFleet(t);
  await register(fleet.httpUrl, 'inspect', '2', fleet.admin);
  const edge = await connectSimEdge(fleet.mqttUrl, { id: 'a1', credential: await fleet.creds.enrollEdge('a1'), line: 'A', localModel: { name: 'inspect', version: '1' } });
  const created = await fleet.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { edges: ['a1'] }, stages: [{ name: 'all', mode: 'live', promotion: 'manual', soakSeconds: 3600 }] });
  // An hour's soak keeps it running however slow the machine: the stage cannot pass during the test.
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id as string;
  await edge.close();
  await fleet.fm.close();

  // Two instances' engines on the one database: first leads, then second, then first again.
  const file = join(fleet.dataDir, 'fleet.db');
  const engines = ['first', 'second'].map((name) => {
    const control = openSqliteControlStore({ file, logger: silent });
    const store = openSqliteStore({ file, logger: silent });
    t.after(async () => {
      await control.close();
      await store.close();
    });
    return createRolloutEngine({ control, fleet: store, publisher, logger: silent.child({ name }), tickMs: 60_000 });
  });
  const [first, second] = engines as [(typeof engines)[0], (typeof engines)[0]];
  await first.start();
  assert.equal((await first.get(id))?.status, 'running');
  await first.stop();

  await second.start();
  assert.equal((await second.act(id, 'abort', 'user:test')).status, 'aborted');
  await second.stop();

  await first.start();
  t.after(() => first.stop());
  assert.equal((await first.get(id))?.status, 'aborted', 'the stored document, not the one held before');
  assert.deepEqual((await first.list()).filter((r) => r.status === 'running').map((r) => r.id), []);
  await first.tick();
  assert.equal((await first.get(id))?.status, 'aborted', 'a tick does not write the old document back');
});
