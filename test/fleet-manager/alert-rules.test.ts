/**
 * The alert rules that need a rollout or a convergence entry, on a real alert store (SQLite in a
 * temp dir, and PostgreSQL) and a real rollout feed, with an injected clock: a rollout failed by its gates, paused
 * then resumed, or rolled back (final: resolved when acknowledged); an edge that keeps differing
 * from its desired state; the stored alerts bounded; the feed hears every change.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { tempDir } from './helpers.js';
import { openSqliteAlertStore } from '../../fleet-manager/alert-store.js';
import { ALERT_PG_MIGRATIONS, pgAlertStore } from '../../fleet-manager/pg/alert-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { createAlerts, type AlertChange } from '../../fleet-manager/alerts.js';
import { createEdgeFeed } from '../../fleet-manager/edge-feed.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import type { EdgeConvergence } from '../../fleet-manager/convergence.js';
import type { RolloutDoc } from '../../fleet-manager/rollout-spec.js';
import { envelope } from '../../protocol/validator.js';

const SETTINGS = { offlineAfterMs: 60_000, backlogWindowMs: 60_000, backlogMinGrowth: 10, mismatchAfterMs: 120_000, checkMs: 60_000 };

/** A rollout document with just what the rule reads. */
function rollout(id: string, status: RolloutDoc['status'], stageStatus: string, reason: string | null): RolloutDoc {
  return {
    id,
    model: 'inspect',
    version: '2',
    status,
    reason,
    stageIndex: 0,
    spec: { target: { lines: ['L1'] } },
    stages: [{ status: stageStatus }],
  } as unknown as RolloutDoc;
}

async function setup(t: import('node:test').TestContext, backend: StoreBackend, maxAlerts = 1000) {
  const dir = await tempDir(t);
  const file = join(dir, 'fleet.db');
  const fleet = openSqliteStore({ file, logger: pino({ level: 'silent' }) });
  t.after(() => fleet.close());
  const store = backend === 'sqlite' ? openSqliteAlertStore({ file, maxAlerts }) : pgAlertStore(await pgTestPool(t, ALERT_PG_MIGRATIONS), { maxAlerts });
  t.after(() => store.close());
  const feed = createEdgeFeed({ tickMs: 1 });
  t.after(() => feed.close());
  const docs = new Map<string, RolloutDoc>();
  const views = new Map<string, EdgeConvergence>();
  let clock = 1_000_000;
  const alerts = createAlerts({
    store,
    fleet,
    settings: SETTINGS,
    logger: pino({ level: 'silent' }),
    convergence: { view: (id) => views.get(id) ?? null },
    rollouts: { get: async (id) => docs.get(id) ?? null, changes: feed },
    now: () => clock,
  });
  const changes: AlertChange[] = [];
  alerts.onChange((c) => changes.push(c));
  await alerts.start();
  t.after(() => alerts.stop());
  return {
    fleet,
    store,
    alerts,
    docs,
    views,
    changes,
    feed,
    advance: (ms: number) => (clock += ms),
    /** Tells the rules a rollout changed and waits until they judged it. */
    async rolloutChanged(id: string) {
      const heard = new Promise<void>((resolve) => {
        const off = feed.subscribe(() => {
          off();
          resolve();
        });
      });
      feed.notify(id);
      await heard;
      await alerts.idle();
    },
  };
}

testBackends('a rollout failed by its gates raises rollout-failed; resumed, it resolves; rolled back by its gates, acknowledging resolves it', async (t, backend) => {
  const s = await setup(t, backend);
  s.docs.set('ro-1', rollout('ro-1', 'paused', 'failed', 'stage canary: defect rate 0.2 above 0.05'));
  await s.rolloutChanged('ro-1');
  const [raised] = await s.store.list({ limit: 10 });
  assert.deepEqual(
    [raised?.type, raised?.rolloutId, raised?.line, raised?.severity, raised?.state, raised?.edgeId],
    ['rollout-failed', 'ro-1', 'L1', 'critical', 'open', null],
  );
  assert.match(raised!.message, /rollout of inspect@2 paused: stage canary: defect rate/);
  // Judged again while still failed: not duplicated.
  await s.rolloutChanged('ro-1');
  assert.equal((await s.store.list({ limit: 10 })).length, 1);
  s.docs.set('ro-1', rollout('ro-1', 'running', 'running', null));
  await s.rolloutChanged('ro-1');
  assert.equal((await s.store.get(raised!.id))?.state, 'resolved');
  // Paused by a person is not a failure.
  s.docs.set('ro-2', rollout('ro-2', 'paused', 'running', 'paused by a person'));
  await s.rolloutChanged('ro-2');
  assert.equal((await s.store.list({ limit: 10, type: 'rollout-failed', state: 'active' })).length, 0);

  // Rolled back by its gates: final; it stays until someone acknowledges it.
  s.docs.set('ro-3', rollout('ro-3', 'rolled-back', 'failed', 'stage all: error rate 0.3 above 0.01'));
  await s.rolloutChanged('ro-3');
  const [final] = await s.store.list({ limit: 1, state: 'open' });
  assert.equal(final?.rolloutId, 'ro-3');
  await s.rolloutChanged('ro-3');
  assert.equal((await s.store.get(final!.id))?.state, 'open');
  const acked = await s.alerts.acknowledge(final!.id, 'user:carol');
  assert.deepEqual([acked?.alert.state, acked?.alert.acknowledgedBy], ['resolved', 'user:carol']);
  assert.deepEqual(
    s.changes.map((c) => `${c.event} ${c.alert.rolloutId}`),
    ['raised ro-1', 'resolved ro-1', 'raised ro-3', 'acknowledged ro-3', 'resolved ro-3'],
  );
});

testBackends('an edge that keeps differing from its desired state raises desired-state-mismatch after mismatchAfterMs; converged, it resolves', async (t, backend) => {
  const s = await setup(t, backend);
  const state = envelope('state', 'press-1', { online: true, line: 'L1' });
  await s.fleet.recordState('press-1', state, { receivedAt: Date.now() });
  s.views.set('press-1', { converged: false, mismatchSince: 1_000_000, republished: 1, alert: true, reason: 'config version 1, desired 2' });
  s.advance(60_000);
  await s.alerts.check();
  assert.equal((await s.store.list({ limit: 10 })).length, 0, 'not before mismatchAfterMs');
  s.advance(60_000);
  await s.alerts.check();
  const [raised] = await s.store.list({ limit: 10 });
  assert.deepEqual([raised?.type, raised?.edgeId, raised?.line, raised?.data?.reason], ['desired-state-mismatch', 'press-1', 'L1', 'config version 1, desired 2']);
  await s.alerts.check();
  assert.equal((await s.store.get(raised!.id))?.count, 1, 'a lasting condition is not raised again');
  s.views.set('press-1', { converged: true, mismatchSince: null, republished: 0, alert: false, reason: null });
  await s.alerts.check();
  assert.equal((await s.store.get(raised!.id))?.state, 'resolved');
});

testBackends('stored alerts are bounded: the oldest resolved ones go, open ones stay', async (t, backend) => {
  const s = await setup(t, backend, 100);
  const input = (i: number) => ({ type: 'disk-low', source: 'edge' as const, subject: `e${i}`, edgeId: `e${i}`, line: null, severity: 'warning' as const, message: 'm', data: null });
  await s.store.raise({ ...input(0), subject: 'keep', edgeId: 'keep' }, 1);
  for (let i = 0; i < 150; i++) {
    await s.store.raise(input(i), 10 + i);
    await s.store.resolve('disk-low', `e${i}`, 20 + i);
  }
  const all = await s.store.list({ limit: 500 });
  assert.equal(all.length, 101);
  assert.equal(all.filter((a) => a.state === 'resolved').length, 100);
  assert.ok(all.some((a) => a.subject === 'keep' && a.state === 'open'));
  assert.ok(!all.some((a) => a.subject === 'e0'), 'the oldest resolved alert was deleted');
  assert.deepEqual(await s.store.openAlertsByType(), { 'disk-low': 1 });
});
