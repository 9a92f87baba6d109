/**
 * What a rollout stage counts (a real fleet manager, SQLite, an edge played by mqtt.js): exactly
 * the candidate's results stored after the stage opened, whichever store handle wrote them and
 * whatever row ids they got, never one stored before nor a redelivered duplicate; and a rollout
 * saved by a build that counted by row id (a watermark, no snapshot) carries on counting.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openSqliteStore } from '../../fleet-manager/store.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { waitFor } from '../helpers/wait-for.js';
import { register, startFleet, type TestFleet } from './control-helpers.js';
import { T0, result, tempDir } from './helpers.js';

const V1 = { name: 'inspect', version: '1' };
const V2 = 'inspect@2';
const silent = pino({ level: 'silent' });
const shadowOk = { model: V2, verdict: 'ok', label: 'good', score: 0.1, latencyMs: 3 } as const;

/** `n` results of the active model with the candidate's shadow outcome, as the sim edge sends them. */
function shadowed(n: number): Omit<ResultRecord, 'seq'>[] {
  return Array.from({ length: n }, () => ({ ts: Date.now(), camera: 'cam1', source: 'simulated' as const, model: 'inspect@1', verdict: 'ok' as const, label: 'good', score: 0.1, latencyMs: 5, shadow: shadowOk }));
}

/** The same with explicit seqs, for a store handle of the test's own. */
function shadowedFrom(from: number, n: number): ResultRecord[] {
  return Array.from({ length: n }, (_, i) => result(from + i, { model: 'inspect@1', shadow: shadowOk }));
}

const SHADOW_STAGE = { model: 'inspect', version: '2', target: { edges: ['e1'] }, stages: [{ name: 'shadow', mode: 'shadow', gates: { minFrames: 1_000_000 } }] };

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the rollout view, checked by the asserts
async function view(f: TestFleet, id: string): Promise<any> {
  return (await f.api('GET', `/api/rollouts/${id}`)).body;
}

/** Waits until the stage's edge has counted `frames`; gives up after `ms` and returns the view as it is. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- as above
async function countedAtLeast(f: TestFleet, id: string, frames: number, ms = 5000): Promise<any> {
  let last = await view(f, id);
  await waitFor(async () => ((last = await view(f, id)).stages[0].edges[0]?.frames >= frames ? last : undefined), `${frames} frames counted`, ms).catch(() => undefined);
  return last;
}

test('rollout counts: a stage counts the candidate results stored after it opened, whatever their row ids', { timeout: 30_000 }, async (t) => {
  // Ticks come from edge reports only (the timer would not fire within the test).
  const f = await startFleet(t, { rollouts: { tickMs: 60_000 } });
  await register(f.httpUrl, 'inspect', '1', f.admin);
  await register(f.httpUrl, 'inspect', '2', f.admin);
  const e1 = await connectSimEdge(f.mqttUrl, { id: 'e1', credential: await f.creds.enrollEdge('e1'), line: 'A', localModel: V1 });
  t.after(() => e1.close());
  await e1.waitDesired(() => true);
  // A second handle on the fleet's database: another writer beside the fleet's ingest. Its
  // results wake no evaluation; only the edge's own reports do.
  const other = openSqliteStore({ file: join(f.dataDir, 'fleet.db'), logger: silent });
  t.after(() => other.close());
  const db = new Database(join(f.dataDir, 'fleet.db'));
  t.after(() => db.close());

  // Before the rollout: results carrying the candidate's shadow outcome (an earlier run of it), through both writers.
  await e1.sendResults(shadowed(3));
  assert.equal((await other.ingestResults('e1', shadowedFrom(1001, 5), { receivedAt: T0 })).inserted, 5);

  const created = await f.api('POST', '/api/rollouts', SHADOW_STAGE);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id as string;
  await e1.waitDesired((x) => x.shadow?.version === '2');
  await waitFor(async () => (await view(f, id)).stages[0].edges[0]?.status === 'reporting', 'e1 reporting');

  // After it opened: 6 through the other writer, then given row ids below every row stored
  // before, as PostgreSQL can (ids are drawn when the insert runs, so a transaction begun
  // before the stage opened may commit after it with smaller ids than rows already counted).
  assert.equal((await other.ingestResults('e1', shadowedFrom(1006, 6), { receivedAt: T0 })).inserted, 6);
  assert.equal(db.prepare("UPDATE results SET id = -id WHERE edge_id = 'e1' AND seq BETWEEN 1006 AND 1011").run().changes, 6);
  // And 4 through the fleet's own ingest, which wakes the engine.
  await e1.sendResults(shadowed(4));
  const counted = await countedAtLeast(f, id, 10);
  assert.equal(counted.stages[0].edges[0].frames, 10, 'the 10 stored after the stage opened, none of the 8 before');
  assert.equal(counted.stages[0].metrics.agreement, 1);

  // Redelivered through both writers: stored once, counted once.
  assert.equal((await other.ingestResults('e1', shadowedFrom(1006, 6), { receivedAt: T0 })).inserted, 0);
  const before = (await view(f, id)).updatedAt as number;
  await e1.publishState();
  const again = await waitFor(async () => {
    const v = await view(f, id);
    return v.updatedAt > before ? v : undefined;
  }, 'another evaluation');
  assert.equal(again.stages[0].edges[0].frames, 10);
});

test('rollout counts: a rollout saved with a row-id watermark and no snapshot carries on counting after an upgrade', { timeout: 30_000 }, async (t) => {
  const dataDir = await tempDir(t);
  const first = await startFleet(t, { dataDir });
  await register(first.httpUrl, 'inspect', '1', first.admin);
  await register(first.httpUrl, 'inspect', '2', first.admin);
  const credential = await first.creds.enrollEdge('e1');
  let e1 = await connectSimEdge(first.mqttUrl, { id: 'e1', credential, line: 'A', localModel: V1 });
  const id = (await first.api('POST', '/api/rollouts', SHADOW_STAGE)).body.id as string;
  await e1.waitDesired((x) => x.shadow?.version === '2');
  await waitFor(async () => (await view(first, id)).stages[0].edges[0]?.status === 'reporting', 'e1 reporting');
  await e1.sendResults(shadowed(5));
  assert.equal((await countedAtLeast(first, id, 5)).stages[0].edges[0].frames, 5);
  const lastSeq = e1.lastSeq;
  await e1.close();
  await first.fm.close();

  // The stored document as the build before gate counters saved it: a row-id watermark per stage, no snapshots.
  const db = new Database(join(dataDir, 'fleet.db'));
  const maxId = db.prepare('SELECT max(id) FROM results').pluck().get() as number;
  const doc = JSON.parse(db.prepare('SELECT doc FROM rollouts WHERE id = ?').pluck().get(id) as string);
  for (const st of doc.stages) {
    Object.assign(st, { startRow: 0, watermark: maxId });
    for (const se of Object.values(st.edges) as Record<string, unknown>[]) {
      assert.ok('snapshot' in se);
      delete se.snapshot;
    }
  }
  db.prepare('UPDATE rollouts SET doc = ? WHERE id = ?').run(JSON.stringify(doc), id);
  db.close();

  const second = await startFleet(t, { dataDir });
  e1 = await connectSimEdge(second.mqttUrl, { id: 'e1', credential, line: 'A', localModel: V1, lastSeq });
  t.after(() => e1.close());
  await e1.waitDesired((x) => x.shadow?.version === '2');
  assert.equal((await view(second, id)).stages[0].edges[0].frames, 5);
  await e1.sendResults(shadowed(3));
  const counted = await countedAtLeast(second, id, 8);
  assert.equal(counted.stages[0].edges[0].frames, 8, 'the 5 counted before the upgrade and the 3 after');
  assert.equal(counted.status, 'running');
});
