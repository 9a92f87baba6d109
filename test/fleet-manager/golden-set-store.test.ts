/**
 * The golden-set report store on its own, the same cases on a real SQLite file and a real
 * PostgreSQL database: the latest run per (edge, model) is kept whatever order reports arrive in.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { openSqliteGoldenSetStore, type GoldenSetStore } from '../../fleet-manager/golden-set-store.js';
import { GOLDEN_SET_PG_MIGRATIONS, pgGoldenSetStore } from '../../fleet-manager/pg/golden-set-store-pg.js';
import type { GoldenSetEventData } from '../../protocol/monitoring.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { tempDir } from './helpers.js';

async function openSqlite(t: TestContext): Promise<GoldenSetStore> {
  const store = openSqliteGoldenSetStore({ file: join(await tempDir(t), 'fleet.db') });
  t.after(() => store.close());
  return store;
}

async function openPostgres(t: TestContext): Promise<GoldenSetStore> {
  const store = pgGoldenSetStore(await pgTestPool(t, GOLDEN_SET_PG_MIGRATIONS));
  t.after(() => store.close());
  return store;
}

const T = 1_765_000_000_000;

function event(model: string, ranAt: number, passed: boolean): GoldenSetEventData {
  return {
    model,
    sha256: 'a'.repeat(64),
    role: 'shadow',
    trigger: 'activation',
    ranAt,
    durationMs: 812.5,
    passed,
    accuracy: passed ? 1 : 0.5,
    expectedAccuracy: 1,
    images: 2,
    mismatches: passed ? 0 : 1,
    outcomes: [
      { file: 'good-1.png', truth: 'ok', expected: { verdict: 'ok', label: 'ok', score: 0.1 }, got: { verdict: 'ok', label: 'ok', score: 0.11 }, match: true, correct: true },
      {
        file: 'scratch-1.png',
        truth: 'defect',
        expected: { verdict: 'defect', label: 'scratch', score: 0.9 },
        got: passed ? { verdict: 'defect', label: 'scratch', score: 0.88 } : null,
        match: passed,
        correct: passed,
        ...(passed ? {} : { error: 'inference failed' }),
      },
    ],
  };
}

for (const backend of ['sqlite', 'postgres'] as const) {
  const skip = backend === 'postgres' ? postgresSkip() : false;
  const open = backend === 'sqlite' ? openSqlite : openPostgres;

  test(`golden-set store (${backend}): the latest run per edge and model is kept, a late older report is ignored`, { skip }, async (t) => {
    const store = await open(t);
    await store.record('e1', event('m@1', T + 100, false), T + 150);
    await store.record('e1', event('m@1', T + 50, true), T + 200);
    await store.record('e1', event('m@2', T + 300, true), T + 310);
    await store.record('e2', event('m@1', T + 10, true), T + 20);

    const e1 = await store.forEdge('e1', 10);
    assert.deepEqual(e1.map((r) => [r.model, r.ranAt, r.passed]), [['m@2', T + 300, true], ['m@1', T + 100, false]]);
    const { outcomes, ...report } = event('m@1', T + 100, false);
    assert.deepEqual(e1[1], { ...report, edgeId: 'e1', receivedAt: T + 150, outcomes });
    assert.deepEqual((await store.forEdge('e1', 1)).map((r) => r.model), ['m@2']);
    assert.deepEqual(await store.forEdge('e9', 10), []);

    // A rerun at a later time replaces the report.
    await store.record('e1', event('m@1', T + 400, true), T + 410);
    const latest = await store.latestFor(['e2', 'e1', 'e9'], 'm@1');
    assert.deepEqual([...latest.keys()], ['e2', 'e1']);
    assert.deepEqual(latest.get('e1'), (({ outcomes: _, ...r }) => r)(event('m@1', T + 400, true)));
    assert.equal((await store.latestFor([], 'm@1')).size, 0);
  });
}
