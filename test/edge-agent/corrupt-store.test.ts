/**
 * A damaged results.db must not become a restart loop (issue 13). Each case damages a real
 * database the way disks and power cuts do, then starts a whole edge agent on it (real broker,
 * fake fleet): it starts, inspects, stores under a new storeId, and for a damaged file the file
 * is moved aside (with its -wal/-shm) and an alert reaches the fleet naming the file.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, open, readdir, stat, truncate } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import { generatePartImage } from '../../models/fixtures.js';
import { useDemoModel } from './demo-model.js';
import { startFakeFleet } from './fake-fleet.js';
import { edgeConfig, goodResult, startBroker, tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();
const frame = generatePartImage({ seed: 901, defect: null, format: 'jpeg' });

const row = (i: number) => goodResult(i, { frame: `frame-${i}-${'x'.repeat(100)}` });

/** A real store with `rows` results, closed (checkpointed: everything is in results.db). */
function filledStore(dataDir: string, rows: number): string {
  const s = openResultStore(dataDir);
  s.batch(() => {
    for (let i = 1; i <= rows; i++) s.append(row(i));
  });
  const id = s.storeId!;
  s.close();
  return id;
}

interface Outcome {
  storeId: string | undefined;
  seq: number;
  alert: Record<string, unknown>;
  alarms: string[];
  aside: string[];
}

/** Starts an agent on `dir`, inspects one frame, waits for the recovery alert when one is expected. */
async function startAndInspect(t: TestContext, dir: string, expectAlert: 'error' | 'warn'): Promise<Outcome> {
  const broker = await startBroker();
  const fleet = await startFakeFleet(broker.url);
  const agent = createEdgeAgent(edgeConfig(dir, await modelDir, { fleet: { mqttUrl: broker.url } }), {
    logger: testLogger(),
    reconnectPeriodMs: 100,
    finalSyncMs: 300,
  });
  t.after(async () => {
    await agent.close();
    await fleet.close();
    await broker.close();
  });
  await agent.start();
  const answer = await agent.inspect(await frame, { camera: 'cam1', source: 'http' });
  const alert = (await fleet.next('events', (m) => m.msg.kind === 'alert' && m.msg.data?.alarm === 'result-store-replaced')).msg;
  assert.equal(alert.level, expectAlert);
  const h = agent.health();
  const aside = (await readdir(path.join(dir, 'data'))).filter((n) => n.includes('.corrupt-')).sort();
  return {
    storeId: h.storeId ?? undefined,
    seq: answer.record.seq,
    alert: { message: alert.message, ...alert.data },
    alarms: h.alarms ?? [],
    aside,
  };
}

function assertMovedAside(o: Outcome, dataDir: string, oldId: string): void {
  assert.equal(o.seq, 1, 'the new store starts at seq 1 and the frame was stored');
  assert.ok(o.storeId && o.storeId !== oldId, 'a new storeId');
  assert.ok(o.aside.some((n) => /^results\.db\.corrupt-[0-9TZ-]+$/.test(n)), `moved aside: ${o.aside.join(', ')}`);
  const file = path.join(dataDir, 'results.db');
  assert.equal(o.alert.file, file);
  assert.ok(String(o.alert.message).includes(file), 'the message names the file');
  assert.ok(String(o.alert.movedTo).startsWith(`${file}.corrupt-`));
  assert.ok(existsSync(String(o.alert.movedTo)));
  assert.ok(o.alarms.includes('result-store-replaced'));
}

test('a results.db with a bad header is moved aside; the edge starts a new store and inspects', async (t) => {
  const dir = await tempDir(t);
  const dataDir = path.join(dir, 'data');
  const oldId = filledStore(dataDir, 50);
  const fh = await open(path.join(dataDir, 'results.db'), 'r+');
  await fh.write(Buffer.from('this is not sqlite at all'), 0, 16, 0);
  await fh.close();
  const o = await startAndInspect(t, dir, 'error');
  assertMovedAside(o, dataDir, oldId);
});

test('a results.db with a garbage page in the middle is moved aside with its -wal and -shm', async (t) => {
  const dir = await tempDir(t);
  const dataDir = path.join(dir, 'data');
  // A crash leaves a WAL holding the last commits beside the database: copy the three files
  // while the store is still open.
  const live = path.join(dir, 'live');
  const s = openResultStore(live);
  const oldId = s.storeId!;
  s.batch(() => {
    for (let i = 1; i <= 3000; i++) s.append(row(i));
  });
  const other = new Database(s.file);
  other.pragma('wal_checkpoint(TRUNCATE)');
  other.close();
  for (let i = 3001; i <= 3005; i++) s.append(row(i));
  await mkdir(dataDir);
  for (const suffix of ['', '-wal', '-shm']) await copyFile(s.file + suffix, path.join(dataDir, `results.db${suffix}`));
  s.close();
  const file = path.join(dataDir, 'results.db');
  assert.ok((await stat(`${file}-wal`)).size > 0, 'a WAL with commits');
  const db = new Database(file, { readonly: true });
  const pageSize = Number(db.pragma('page_size', { simple: true }));
  db.close();
  const pages = (await stat(file)).size / pageSize;
  assert.ok(pages > 20, `${pages} pages`);
  const middle = Math.floor(pages / 2);
  const fh = await open(file, 'r+');
  await fh.write(Buffer.alloc(pageSize, 0xa5), 0, pageSize, (middle - 1) * pageSize);
  await fh.close();
  const o = await startAndInspect(t, dir, 'error');
  assertMovedAside(o, dataDir, oldId);
  const base = o.aside.find((n) => /^results\.db\.corrupt-[0-9TZ-]+$/.test(n))!;
  assert.ok(o.aside.includes(`${base}-wal`) && o.aside.includes(`${base}-shm`), `with its -wal and -shm: ${o.aside.join(', ')}`);
  assert.ok((await stat(path.join(dataDir, `${base}-wal`))).size > 0, 'the WAL went aside as it was');
});

test('a truncated results.db is moved aside; the edge starts a new store and inspects', async (t) => {
  const dir = await tempDir(t);
  const dataDir = path.join(dir, 'data');
  const oldId = filledStore(dataDir, 3000);
  const file = path.join(dataDir, 'results.db');
  await truncate(file, Math.floor((await stat(file)).size / 2));
  const o = await startAndInspect(t, dir, 'error');
  assertMovedAside(o, dataDir, oldId);
});

test('a zero-length results.db is replaced by a new store on purpose: reported as empty, nothing moved aside', async (t) => {
  const dir = await tempDir(t);
  const dataDir = path.join(dir, 'data');
  filledStore(dataDir, 1);
  await truncate(path.join(dataDir, 'results.db'), 0);
  const store = openResultStore(dataDir);
  assert.deepEqual(store.recovery, { kind: 'empty', file: path.join(dataDir, 'results.db'), reason: 'results.db was 0 bytes: a new store was created' });
  assert.ok(store.storeId, 'a new store has an id');
  store.close();
  // And through the agent: it starts, inspects, tells the fleet (a warning), and raises no damage alarm.
  await truncate(path.join(dataDir, 'results.db'), 0);
  const o = await startAndInspect(t, dir, 'warn');
  assert.equal(o.seq, 1);
  assert.equal(o.alert.kind, 'empty');
  assert.ok(String(o.alert.message).includes(path.join(dataDir, 'results.db')));
  assert.deepEqual(o.aside, []);
  assert.ok(!o.alarms.includes('result-store-replaced'));
});
