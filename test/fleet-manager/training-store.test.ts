/**
 * Training jobs' storage (issue 15, 18): bounded logs, the queue order, restart recovery, claims
 * and leases (several fleet instances on one queue). Real SQLite in a temp dir, and PostgreSQL;
 * on PostgreSQL also two instances (two pools) claiming at once, and two runners on one queue.
 */
import assert from 'node:assert/strict';
import Database from 'better-sqlite3';
import { mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { pino } from 'pino';
import { MAX_LOG_LINE, MAX_LOG_LINES, openSqliteTrainingStore, type TrainingJob, type TrainingStore } from '../../fleet-manager/training-store.js';
import { TRAINING_PG_MIGRATIONS, pgTrainingStore } from '../../fleet-manager/pg/training-store-pg.js';
import { migratePg, openPgPool } from '../../fleet-manager/pg/pg-db.js';
import { OspreyError } from '../../protocol/errors.js';
import { pgDatabaseUrl, pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { createTrainingRunner, isTerminal, nextPatchVersion, RESTART_ERROR, type TrainingRunner } from '../../fleet-manager/training-runner.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { waitFor } from '../helpers/wait-for.js';

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

testBackends('logs are bounded per job (lines kept, the rest counted; long lines cut); queued jobs are claimed oldest first; a restart fails running ones without a lease', async (t, backend) => {
  const store = await open(t, backend);
  await store.insertJob(job('b', 2));
  await store.insertJob(job('a', 1));
  await store.insertJob(job('r', 0, 'running'));
  const claimed = await store.claimNext('inst-a', 0, 1000);
  assert.deepEqual([claimed?.id, claimed?.state, claimed?.phase], ['a', 'running', 'preparing']);

  const lines = Array.from({ length: MAX_LOG_LINES + 5 }, (_, i) => ({ ts: i, line: i === 0 ? 'x'.repeat(MAX_LOG_LINE * 3) : `line ${i}` }));
  await store.appendLog('a', lines.slice(0, 10));
  await store.appendLog('a', lines.slice(10));
  const all = await store.logs('a', 5000);
  assert.equal(all.length, MAX_LOG_LINES);
  assert.equal(all[0]!.line.length, MAX_LOG_LINE);
  assert.equal(all.at(-1)!.line, `line ${MAX_LOG_LINES - 1}`);
  assert.deepEqual((await store.logs('a', 2)).map((l) => l.line), [`line ${MAX_LOG_LINES - 2}`, `line ${MAX_LOG_LINES - 1}`]);
  assert.equal((await store.getJob('a'))?.droppedLogLines, 5);

  // 'r' (a row from before leases) has no lease: failed; 'a' is held until 1000.
  const failed = await store.failRunning('interrupted by a fleet restart', 99, 'inst-b');
  assert.deepEqual(failed.map((j) => [j.id, j.workDir]), [['r', '/tmp/r']]);
  assert.deepEqual((await store.listJobs(10)).map((j) => [j.id, j.state, j.error]), [['b', 'queued', null], ['a', 'running', null], ['r', 'failed', 'interrupted by a fleet restart']]);
});

testBackends('jobs: read back whole, patched, counted by state; an unknown job is null; logs of one job only, the latest ones', async (t, backend) => {
  const store = await open(t, backend);
  assert.equal(await store.claimNext('inst-a', 0, 1000), null);
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
  assert.deepEqual(await store.countByState(), { succeeded: 1, queued: 1 });
  assert.equal((await store.claimNext('inst-a', 60, 1000))?.id, 'b');
  assert.deepEqual(await store.countByState(), { succeeded: 1, running: 1 });
  assert.deepEqual((await store.listJobs(1)).map((j) => j.id), ['b']);
  await store.appendLog('a', [{ ts: 1, line: 'one' }, { ts: 2, line: 'two' }]);
  await store.appendLog('b', [{ ts: 3, line: 'bee' }]);
  await store.appendLog('a', []);
  await store.appendLog('a', [{ ts: 4, line: 'three' }]);
  assert.deepEqual(await store.logs('a', 10), [{ ts: 1, line: 'one' }, { ts: 2, line: 'two' }, { ts: 4, line: 'three' }]);
  assert.deepEqual(await store.logs('a', 2), [{ ts: 2, line: 'two' }, { ts: 4, line: 'three' }]);
  assert.deepEqual(await store.logs('b', 10), [{ ts: 3, line: 'bee' }]);
  assert.deepEqual(await store.logs('nope', 10), []);
  assert.deepEqual(await store.failRunning('restart', 99, null), [], "nothing abandoned: b's lease runs to 1060");
});

test('the next version of a model: the next patch of its highest x.y.z, or 1.0.0', () => {
  assert.equal(nextPatchVersion([]), '1.0.0');
  assert.equal(nextPatchVersion(['1.0.0', '1.2.9', '1.10.0', 'beta']), '1.10.1');
  assert.equal(nextPatchVersion(['2', 'x']), '1.0.0');
});

testBackends('claims and leases: one claimer per job; only the owner renews and writes; a sweep fails expired leases (and the restarted owner\'s) and leaves live ones alone', async (t, backend) => {
  const store = await open(t, backend);
  await store.insertJob(job('q1', 1));
  await store.insertJob(job('q2', 2));
  assert.equal((await store.claimNext('inst-a', 1000, 500))?.id, 'q1');
  assert.equal((await store.claimNext('inst-b', 1000, 500))?.id, 'q2');
  assert.equal(await store.claimNext('inst-b', 1000, 500), null, 'nothing left queued');

  // Only the owner renews, and writes under its guard.
  assert.equal(await store.renewLease('q1', 'inst-b', 1200, 500), false);
  assert.equal(await store.renewLease('q1', 'inst-a', 1200, 500), true, 'held until 1700');
  assert.equal(await store.updateJob('q1', { progress: 0.5 }, { owner: 'inst-b' }), null);
  assert.equal((await store.getJob('q1'))?.progress, 0);
  assert.equal((await store.updateJob('q1', { progress: 0.5 }, { owner: 'inst-a' }))?.progress, 0.5);
  assert.equal(await store.renewLease('nope', 'inst-a', 1200, 500), false);

  // inst-b restarts at 1600: its own job (q2) is failed, inst-a's live one (q1) is left alone.
  const swept = await store.failRunning(RESTART_ERROR, 1600, 'inst-b');
  assert.deepEqual(swept.map((j) => j.id), ['q2']);
  assert.deepEqual([(await store.getJob('q1'))?.state, (await store.getJob('q2'))?.state], ['running', 'failed']);
  assert.equal(await store.renewLease('q2', 'inst-b', 1600, 500), false, 'a failed job is held by nobody');
  // inst-a stalls past its lease (1700): any instance's sweep fails q1 …
  assert.deepEqual((await store.failRunning(RESTART_ERROR, 1699, null)).map((j) => j.id), [], 'still held at 1699');
  assert.deepEqual((await store.failRunning(RESTART_ERROR, 1700, null)).map((j) => j.id), ['q1']);
  // … and the stale owner's finish is refused: the job stays failed.
  assert.equal(await store.updateJob('q1', { state: 'succeeded', phase: 'done', progress: 1, resultVersion: '1.0.0' }, { owner: 'inst-a' }), null);
  assert.equal(await store.renewLease('q1', 'inst-a', 1710, 500), false);
  assert.deepEqual([(await store.getJob('q1'))?.state, (await store.getJob('q1'))?.error, (await store.getJob('q1'))?.resultVersion], ['failed', RESTART_ERROR, null]);
  // A guard on states: a cancel refused on a finished job.
  assert.equal(await store.updateJob('q1', { state: 'cancelled' }, { states: ['queued', 'running'] }), null);
  assert.deepEqual(await store.countByState(), { failed: 2 });
});

/** A runner whose jobs never reach a trainer: its backbone is unknown (resolve answers who asked, then refuses). */
function fakeRunner(
  store: TrainingStore,
  instanceId: string,
  workRoot: string,
  onResolve: (backbone: string) => void | Promise<void> = () => {},
  refuse = true,
): TrainingRunner {
  return createTrainingRunner({
    store,
    instanceId,
    workRoot,
    logger: pino({ level: 'silent' }),
    timeoutMs: 60_000,
    maxRssBytes: 1e9,
    registry: { addTrainedVersion: async () => assert.fail('nothing is registered') },
    control: { listVersions: async () => [], getVersion: async () => null },
    backbones: {
      resolve: async (name) => {
        await onResolve(name);
        if (refuse) throw new OspreyError('OSP_ERR_NOT_FOUND', `no backbone ${name}`);
        return { record: {} as never, file: join(workRoot, 'no-such-backbone.onnx') };
      },
    },
  });
}

testBackends("a runner's start fails only jobs whose lease ran out (and their folders); a job another instance runs keeps its lease and its folder", async (t, backend) => {
  const store = await open(t, backend);
  const workRoot = await makeTempDir(t, 'osprey-training-work-');
  for (const [id, at] of [['live', 1], ['dead', 2], ['stray', 3]] as const) {
    await mkdir(join(workRoot, id, 'data'), { recursive: true });
    if (id !== 'stray') await store.insertJob({ ...job(id, at), workDir: join(workRoot, id) });
  }
  // 'live': inst-a runs it under a live lease; 'dead': its instance stopped renewing a minute ago.
  assert.equal((await store.claimNext('inst-a', Date.now(), 60_000))?.id, 'live');
  assert.equal((await store.claimNext('inst-gone', Date.now() - 120_000, 60_000))?.id, 'dead');

  const runner = fakeRunner(store, 'inst-b', workRoot);
  t.after(() => runner.stop());
  await runner.start();
  assert.deepEqual((await store.listJobs(10)).map((j) => [j.id, j.state, j.error]), [['dead', 'failed', RESTART_ERROR], ['live', 'running', null]]);
  assert.deepEqual((await readdir(workRoot)).sort(), ['live'], "the dead job's folder and the stray one removed, the live job's kept");
  assert.equal(await store.renewLease('live', 'inst-a', Date.now(), 60_000), true, 'inst-a still holds its job');
});

test('PostgreSQL: two fleet instances claiming at once claim each queued job exactly once', { skip: postgresSkip() }, async (t) => {
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 6 }), openPgPool(url, { max: 6 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, TRAINING_PG_MIGRATIONS);
  const stores = pools.map((p) => pgTrainingStore(p, { logger: pino({ level: 'silent' }) }));
  const ids = Array.from({ length: 24 }, (_, i) => `j${String(i).padStart(2, '0')}`);
  for (const [i, id] of ids.entries()) await stores[0]!.insertJob(job(id, i));
  const owners = new Map<string, string[]>();
  for (let round = 0; round < 4; round++) {
    // Six claims per instance, both instances at once: twelve claims racing for the oldest rows.
    const claims = await Promise.all(Array.from({ length: 12 }, (_, i) => stores[i % 2]!.claimNext(`inst-${i % 2}`, 1000, 60_000).then((j) => [j?.id, `inst-${i % 2}`] as const)));
    for (const [id, owner] of claims) if (id) owners.set(id, [...(owners.get(id) ?? []), owner]);
  }
  assert.deepEqual([...owners].filter(([, who]) => who.length > 1), [], 'a job claimed twice');
  assert.deepEqual([...owners.keys()].sort(), ids);
  assert.deepEqual(await stores[1]!.countByState(), { running: ids.length });
});

test("PostgreSQL: two fleet instances' runners on one queue run each job exactly once", { skip: postgresSkip(), timeout: 60_000 }, async (t) => {
  const url = await pgDatabaseUrl();
  const pools = [openPgPool(url, { max: 4 }), openPgPool(url, { max: 4 })];
  t.after(() => Promise.all(pools.map((p) => p.end())));
  await migratePg(pools[0]!, TRAINING_PG_MIGRATIONS);
  const stores = pools.map((p) => pgTrainingStore(p, { logger: pino({ level: 'silent' }) }));
  const ids = Array.from({ length: 16 }, (_, i) => `j${String(i).padStart(2, '0')}`);
  // Each job's backbone is its id: the runner that starts a job asks for it.
  for (const [i, id] of ids.entries()) await stores[0]!.insertJob({ ...job(id, i), backbone: id });
  const runs = new Map<string, string[]>();
  const workRoot = await makeTempDir(t, 'osprey-training-work-');
  const runners = stores.map((store, i) => fakeRunner(store, `inst-${i}`, join(workRoot, `inst-${i}`), (id) => void runs.set(id, [...(runs.get(id) ?? []), `inst-${i}`])));
  const ended = new Set<string>();
  const allEnded = new Promise<void>((resolve) => {
    for (const r of runners) {
      for (const id of ids) {
        r.subscribe(id, (j) => {
          if (isTerminal(j)) ended.add(j.id);
          if (ended.size === ids.length) resolve();
        }, () => {});
      }
    }
  });
  await Promise.all(runners.map((r) => r.start()));
  await allEnded;
  await Promise.all(runners.map((r) => r.stop()));
  assert.deepEqual([...runs].filter(([, who]) => who.length !== 1), [], 'a job started by two instances');
  assert.deepEqual([...runs.keys()].sort(), ids);
  const jobs = await stores[1]!.listJobs(100);
  assert.deepEqual(jobs.map((j) => [j.id, j.state, j.error]).sort(), ids.map((id) => [id, 'failed', `no backbone ${id}`]));
});

testBackends('a database made before leases gains the owner and lease columns; its running jobs (no lease) are failed, its queued ones claimed', async (t, backend) => {
  const logger = pino({ level: 'silent' });
  const rows = [job('old-run', 1, 'running'), job('old-queued', 2)];
  const oldTable = 'CREATE TABLE training_jobs (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, state TEXT NOT NULL, doc TEXT NOT NULL)';
  let store: TrainingStore;
  if (backend === 'postgres') {
    const pool = openPgPool(await pgDatabaseUrl());
    t.after(() => pool.end());
    await migratePg(pool, TRAINING_PG_MIGRATIONS.slice(0, 1));
    for (const j of rows) await pool.query('INSERT INTO training_jobs (id, created_at, state, doc) VALUES ($1, $2, $3, $4)', [j.id, j.createdAt, j.state, JSON.stringify(j)]);
    assert.deepEqual(await migratePg(pool, TRAINING_PG_MIGRATIONS), ['training-2']);
    store = pgTrainingStore(pool, { logger });
  } else {
    const file = join(await makeTempDir(t, 'osprey-training-store-'), 'fleet.db');
    const db = new Database(file);
    db.exec(oldTable);
    for (const j of rows) db.prepare('INSERT INTO training_jobs (id, created_at, state, doc) VALUES (?, ?, ?, ?)').run(j.id, j.createdAt, j.state, JSON.stringify(j));
    db.close();
    store = openSqliteTrainingStore({ file, logger });
    t.after(() => store.close());
  }
  assert.deepEqual((await store.failRunning(RESTART_ERROR, 10, 'inst-a')).map((j) => j.id), ['old-run']);
  assert.equal((await store.claimNext('inst-a', 10, 1000))?.id, 'old-queued');
  assert.equal(await store.renewLease('old-queued', 'inst-a', 20, 1000), true);
});

testBackends('a job cancelled on another instance between its claim and its start: no trainer started, its folder removed, it stays cancelled', async (t, backend) => {
  const store = await open(t, backend);
  const root = await makeTempDir(t, 'osprey-training-work-');
  const b = fakeRunner(store, 'inst-b', join(root, 'b'));
  let cancelled: TrainingJob | undefined;
  // inst-a claimed the job and looks up its backbone when inst-b's cancel arrives.
  const a = fakeRunner(store, 'inst-a', join(root, 'a'), async () => void (cancelled = await b.cancel('j')), false);
  t.after(() => Promise.all([a.stop(), b.stop()]));
  await a.start();
  const workDir = a.workDirFor('j');
  await mkdir(join(workDir, 'data', 'good'), { recursive: true });
  const seen: string[] = [];
  const ended = new Promise<TrainingJob>((resolve) => a.subscribe('j', (j) => (seen.push(`${j.state}/${j.phase}`), isTerminal(j) && resolve(j)), () => {}));
  await a.submit({ ...job('j', 1), workDir });
  const last = await ended;
  assert.deepEqual(seen, ['queued/queued', 'running/preparing', 'cancelled/done'], 'never started (no training phase)');
  assert.deepEqual([cancelled?.state, last.state, last.pid, last.startedAt], ['cancelled', 'cancelled', null, null]);
  assert.deepEqual(await readdir(join(root, 'a')), [], 'its folder removed');
  assert.equal((await store.getJob('j'))?.state, 'cancelled');
}, { timeout: 20_000 });

test('a job cancelled while its trainer starts: the cancel returns once the trainer is gone, even when it died before the runner got to listen', { timeout: 60_000 }, async (t) => {
  const store = await open(t, 'sqlite');
  const workRoot = await makeTempDir(t, 'osprey-training-race-');
  await store.insertJob({ ...job('race', 1), workDir: join(workRoot, 'race') });
  await mkdir(join(workRoot, 'race', 'data'), { recursive: true });
  // The write right after the trainer is spawned (phase "training", with its pid) is held until
  // the test lets it go: meanwhile the trainer is cancelled and dies.
  let pid: number | undefined;
  let reached!: () => void;
  const atStart = new Promise<void>((resolve) => (reached = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const gated: TrainingStore = {
    ...store,
    async updateJob(id, patch, guard) {
      if (patch.phase === 'training' && typeof patch.pid === 'number') {
        pid = patch.pid;
        reached();
        await released;
      }
      return store.updateJob(id, patch, guard);
    },
  };
  const runner = fakeRunner(gated, 'inst-a', workRoot, () => {}, false);
  t.after(() => runner.stop());
  await runner.start();
  await atStart;
  const cancelling = runner.cancel('race');
  const alive = (p: number) => {
    try {
      process.kill(p, 0);
      return true;
    } catch {
      return false;
    }
  };
  await waitFor(() => (pid !== undefined && !alive(pid)) || undefined, 'the cancelled trainer to be gone');
  release();
  let timer: NodeJS.Timeout | undefined;
  const outcome = await Promise.race([
    cancelling.then((j) => j.state),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve('cancel still waiting after 15 s'), 15_000))),
  ]);
  clearTimeout(timer);
  assert.equal(outcome, 'cancelled');
});
