/** Training jobs' storage (issue 15, 18): bounded logs, the queue order, restart recovery. Real SQLite in a temp dir, and PostgreSQL. */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { pino } from 'pino';
import { MAX_LOG_LINE, MAX_LOG_LINES, openSqliteTrainingStore, type TrainingJob, type TrainingStore } from '../../fleet-manager/training-store.js';
import { TRAINING_PG_MIGRATIONS, pgTrainingStore } from '../../fleet-manager/pg/training-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { nextPatchVersion } from '../../fleet-manager/training-runner.js';
import { makeTempDir } from '../helpers/temp-dir.js';

const job = (id: string, createdAt: number, state: TrainingJob['state'] = 'queued'): TrainingJob => ({
  id, kind: 'anomaly', model: 'm', requestedVersion: null, version: null, backbone: 'b', options: {}, source: { type: 'archive' },
  state, phase: state, progress: 0, counts: { good: 3 }, error: null, createdBy: 'user:x', createdAt, startedAt: null, finishedAt: null,
  resultVersion: null, resultSha256: null, modelCard: null, workDir: `/tmp/${id}`, pid: null, droppedLogLines: 0,
});

async function open(t: TestContext, backend: StoreBackend): Promise<TrainingStore> {
  const logger = pino({ level: 'silent' });
  if (backend === 'postgres') return pgTrainingStore(await pgTestPool(t, TRAINING_PG_MIGRATIONS), { logger });
  const dir = await makeTempDir(t, 'osprey-training-store-');
  const store = openSqliteTrainingStore({ file: join(dir, 'fleet.db'), logger });
  t.after(() => store.close());
  return store;
}

testBackends('logs are bounded per job (lines kept, the rest counted; long lines cut); queued jobs run oldest first; a restart fails running ones', async (t, backend) => {
  const store = await open(t, backend);
  await store.insertJob(job('b', 2));
  await store.insertJob(job('a', 1));
  await store.insertJob(job('r', 0, 'running'));
  assert.equal((await store.nextQueued())?.id, 'a');

  const lines = Array.from({ length: MAX_LOG_LINES + 5 }, (_, i) => ({ ts: i, line: i === 0 ? 'x'.repeat(MAX_LOG_LINE * 3) : `line ${i}` }));
  await store.appendLog('a', lines.slice(0, 10));
  await store.appendLog('a', lines.slice(10));
  const all = await store.logs('a', 5000);
  assert.equal(all.length, MAX_LOG_LINES);
  assert.equal(all[0]!.line.length, MAX_LOG_LINE);
  assert.equal(all.at(-1)!.line, `line ${MAX_LOG_LINES - 1}`);
  assert.deepEqual((await store.logs('a', 2)).map((l) => l.line), [`line ${MAX_LOG_LINES - 2}`, `line ${MAX_LOG_LINES - 1}`]);
  assert.equal((await store.getJob('a'))?.droppedLogLines, 5);

  const failed = await store.failRunning('interrupted by a fleet restart', 99);
  assert.deepEqual(failed.map((j) => [j.id, j.workDir]), [['r', '/tmp/r']]);
  assert.deepEqual((await store.listJobs(10)).map((j) => [j.id, j.state, j.error]), [['b', 'queued', null], ['a', 'queued', null], ['r', 'failed', 'interrupted by a fleet restart']]);
});

testBackends('jobs: read back whole, patched, counted by state; an unknown job is null; logs of one job only, the latest ones', async (t, backend) => {
  const store = await open(t, backend);
  assert.equal(await store.nextQueued(), null);
  assert.deepEqual(await store.countByState(), {});
  const a = { ...job('a', 1), options: { valFraction: 0.2 }, source: { type: 'fleet', line: 'L1' } };
  await store.insertJob(a);
  await store.insertJob(job('b', 2));
  assert.deepEqual(await store.getJob('a'), a);
  assert.equal(await store.getJob('nope'), null);
  assert.equal(await store.updateJob('nope', { state: 'running' }), null);
  const card = { metrics: { auroc: 0.97 } };
  const done = await store.updateJob('a', { state: 'succeeded', phase: 'done', progress: 1, resultVersion: '1.0.1', modelCard: card, finishedAt: 50, pid: null });
  assert.deepEqual(done, { ...a, state: 'succeeded', phase: 'done', progress: 1, resultVersion: '1.0.1', modelCard: card, finishedAt: 50, pid: null });
  assert.deepEqual(await store.getJob('a'), done);
  assert.equal((await store.nextQueued())?.id, 'b');
  assert.deepEqual(await store.countByState(), { succeeded: 1, queued: 1 });
  assert.deepEqual((await store.listJobs(1)).map((j) => j.id), ['b']);
  await store.appendLog('a', [{ ts: 1, line: 'one' }, { ts: 2, line: 'two' }]);
  await store.appendLog('b', [{ ts: 3, line: 'bee' }]);
  await store.appendLog('a', []);
  await store.appendLog('a', [{ ts: 4, line: 'three' }]);
  assert.deepEqual(await store.logs('a', 10), [{ ts: 1, line: 'one' }, { ts: 2, line: 'two' }, { ts: 4, line: 'three' }]);
  assert.deepEqual(await store.logs('a', 2), [{ ts: 2, line: 'two' }, { ts: 4, line: 'three' }]);
  assert.deepEqual(await store.logs('b', 10), [{ ts: 3, line: 'bee' }]);
  assert.deepEqual(await store.logs('nope', 10), []);
  assert.deepEqual(await store.failRunning('restart', 99), [], 'nothing running');
});

test('the next version of a model: the next patch of its highest x.y.z, or 1.0.0', () => {
  assert.equal(nextPatchVersion([]), '1.0.0');
  assert.equal(nextPatchVersion(['1.0.0', '1.2.9', '1.10.0', 'beta']), '1.10.1');
  assert.equal(nextPatchVersion(['2', 'x']), '1.0.0');
});
