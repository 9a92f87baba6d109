/**
 * Store and forward across the real parts (issue 5): a fleet manager (embedded broker, SQLite)
 * and an edge agent with the built-in ONNX model, in one process.
 * - A wiped edge database is a new store whose seqs restart at 1: the fleet keeps both stores'
 *   results, none lost, none doubled, and the statistics count both.
 * - Defect images are kept at the edge, uploaded, and served with their result.
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { request } from 'undici';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { generatePartImage } from '../../models/fixtures.js';
import { useDemoModel } from '../edge-agent/demo-model.js';
import { tempDir } from '../edge-agent/fixtures.js';
import { waitFor } from '../helpers/wait-for.js';
import { openTestIdentity } from '../helpers/identity.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';

const modelDir = useDemoModel();
const silent = pino({ level: process.env.OSPREY_TEST_LOG ?? 'silent' });

async function startFleet(t: TestContext, dir: string) {
  const fleet = createFleetManager({
    dataDir: path.join(dir, 'fleet'),
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    logger: silent,
  });
  const urls = await fleet.start();
  t.after(() => fleet.close());
  const creds = openTestIdentity(t, path.join(dir, 'fleet', 'fleet.db'));
  // The edge's credential, through enrollment; people read the API with an admin token.
  const credentialFile = await enrolledCredentialFile(creds, 'press-1', path.join(dir, 'fleet.credential'));
  const headers = await creds.headers('admin');
  return { ...urls, credentialFile, headers };
}

function edgeAgent(dir: string, model: string, urls: { httpUrl: string; mqttUrl: string; credentialFile: string }, extra: Record<string, unknown> = {}): EdgeAgent {
  const config = parseEdgeConfig(
    {
      edgeId: 'press-1',
      line: 'line-A',
      dataDir: path.join(dir, 'edge'),
      http: { host: '127.0.0.1', port: 0 },
      model: { dir: model },
      fleet: { mqttUrl: urls.mqttUrl, httpUrl: urls.httpUrl, credentialFile: urls.credentialFile },
      sync: { batchSize: 4, intervalMs: 100, ackTimeoutMs: 2000 },
      telemetry: { intervalMs: 60_000 },
      images: { retryBaseMs: 20, retryMaxMs: 200, sampling: { uncertainBand: 0 } },
      ...extra,
    },
    'test',
    dir,
  );
  return createEdgeAgent(config, { logger: silent, reconnectPeriodMs: 100, finalSyncMs: 2000 });
}

async function inspect(httpUrl: string, seed: number, defect: boolean): Promise<{ seq: number; verdict: string; bytes: Buffer }> {
  const bytes = await generatePartImage({ seed, defect: defect ? 'scratch' : null, format: 'jpeg' });
  const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: bytes, headers: { 'content-type': 'image/jpeg' } });
  assert.equal(res.statusCode, 200);
  const body = (await res.body.json()) as { seq: number; verdict: string };
  return { ...body, bytes };
}

const getJson = async <T>(url: string, headers: Record<string, string>): Promise<T> => (await (await request(url, { headers })).body.json()) as T;

test('a wiped edge database becomes a new store: the fleet keeps both, nothing lost or doubled', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t);
  const urls = await startFleet(t, dir);
  const model = await modelDir;

  const first = edgeAgent(dir, model, urls);
  const { httpUrl } = await first.start();
  for (let i = 0; i < 5; i++) assert.equal((await inspect(httpUrl, 100 + i, i === 2)).seq, i + 1);
  await waitFor(() => first.health().ackedSeq === 5, 'first store synced');
  const oldStore = first.health().storeId;
  await first.close();

  // The disk is replaced: a new results.db, seqs start again at 1.
  for (const f of ['results.db', 'results.db-wal', 'results.db-shm']) await rm(path.join(dir, 'edge', f), { force: true });
  const second = edgeAgent(dir, model, urls);
  t.after(() => second.close());
  const again = await second.start();
  const newStore = second.health().storeId;
  assert.ok(newStore && oldStore && newStore !== oldStore);
  for (let i = 0; i < 3; i++) assert.equal((await inspect(again.httpUrl, 200 + i, i === 0)).seq, i + 1);
  await waitFor(() => second.health().ackedSeq === 3, 'second store synced (its own ack, not the old store\'s)');

  const page = await getJson<{ items: { seq: number; storeId?: string; verdict: string }[] }>(`${urls.httpUrl}/api/results?edge=press-1&limit=100`, urls.headers);
  const keys = page.items.map((r) => `${r.storeId}/${r.seq}`).sort();
  assert.deepEqual(keys, [...[1, 2, 3, 4, 5].map((s) => `${oldStore}/${s}`), ...[1, 2, 3].map((s) => `${newStore}/${s}`)].sort());
  const stats = await getJson<{ totals: { total: number; defect: number } }>(`${urls.httpUrl}/api/lines/line-A/stats?from=0&bucket=1d`, urls.headers);
  assert.equal(stats.totals.total, 8);
  assert.equal(stats.totals.defect, page.items.filter((r) => r.verdict === 'defect').length);
  const edges = await getJson<{ edges: { id: string; storeId: string; ackedSeq: number; lastSeq: number }[] }>(`${urls.httpUrl}/api/edges`, urls.headers);
  assert.deepEqual(
    edges.edges.map((e) => [e.id, e.storeId, e.ackedSeq]),
    [['press-1', newStore, 3]],
  );
});

test('defect images are kept at the edge, uploaded, and served with their result; good ones are not shipped', { timeout: 90_000 }, async (t) => {
  const dir = await tempDir(t);
  const urls = await startFleet(t, dir);
  const agent = edgeAgent(dir, await modelDir, urls);
  t.after(() => agent.close());
  const { httpUrl } = await agent.start();
  const frames = [];
  for (let i = 0; i < 6; i++) frames.push(await inspect(httpUrl, 300 + i, i % 3 === 1));
  const defects = frames.filter((f) => f.verdict === 'defect');
  assert.equal(defects.length, 2);
  await waitFor(() => agent.health().ackedSeq === 6, 'results synced');
  await waitFor(() => agent.health().storage?.imagesPending === 0 && agent.health().storage?.images === 2, 'images uploaded');

  const storeId = agent.health().storeId!;
  for (const f of defects) {
    const res = await request(`${urls.httpUrl}/api/results/press-1/${f.seq}/image?store=${storeId}`, { headers: urls.headers });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'image/jpeg');
    assert.deepEqual(Buffer.from(await res.body.arrayBuffer()), f.bytes, 'the bytes the camera sent');
  }
  const page = await getJson<{ items: { seq: number; hasImage: boolean }[] }>(`${urls.httpUrl}/api/results?edge=press-1`, urls.headers);
  assert.deepEqual(
    page.items.filter((r) => r.hasImage).map((r) => r.seq).sort(),
    defects.map((f) => f.seq).sort(),
  );
});
