import assert from 'node:assert/strict';
import { mkdir, readdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { request } from 'undici';
import { startOsprey } from '../helpers/osprey-process.js';
import { loadEdgeConfig } from '../../edge-agent/config.js';
import { createEdgeAgent } from '../../edge-agent/edge-agent.js';
import { generatePartImage } from '../../models/fixtures.js';
import { waitFor } from '../helpers/wait-for.js';
import { useDemoModel } from './demo-model.js';
import { tempDir, testLogger } from './fixtures.js';

const modelDir = useDemoModel();

test('an edge with no fleet inspects from both inputs and stores; a restart continues the seqs', async (t) => {
  const dir = await tempDir(t);
  const inbox = path.join(dir, 'inbox');
  await mkdir(inbox);
  const configFile = path.join(dir, 'edge.json');
  // Relative paths: resolved against the config file's directory.
  await writeFile(
    configFile,
    JSON.stringify({
      edgeId: 'solo-1',
      line: 'line-S',
      dataDir: './data',
      inputDir: './inbox',
      hotFolder: { settleMs: 20, rescanMs: 100 },
      http: { port: 0 },
      model: { dir: path.relative(dir, await modelDir) },
    }),
  );
  const good = await generatePartImage({ seed: 31, format: 'jpeg' });
  await writeFile(path.join(inbox, 'waiting.jpg'), good); // present before start

  const config = await loadEdgeConfig(configFile);
  const agent = createEdgeAgent(config, { logger: testLogger() });
  const { httpUrl } = await agent.start();
  await agent.start(); // a second start is the same start
  const res = await request(`${httpUrl}/inspect`, { method: 'POST', body: good, headers: { 'content-type': 'image/jpeg' } });
  assert.equal(res.statusCode, 200);
  await res.body.dump();
  await writeFile(path.join(inbox, '.next.jpg.part'), good);
  await rename(path.join(inbox, '.next.jpg.part'), path.join(inbox, 'next.jpg'));
  // The hot folder is another component's state with no event exposed by the agent: poll.
  await waitFor(async () => (await readdir(path.join(inbox, 'done'))).length === 2, 'two files done', 10_000);
  const health = agent.health();
  assert.equal(health.lastSeq, 3);
  assert.equal(health.ackedSeq, 0);
  assert.equal(health.pendingResults, 3, 'unsynced results are kept');
  assert.deepEqual(health.fleet, { configured: false, connected: false, messagesDropped: 0, acksRejected: 0 });
  await agent.close();
  await agent.close();
  await assert.rejects(request(`${httpUrl}/health`), 'HTTP is closed');

  const again = createEdgeAgent(config, { logger: testLogger() });
  t.after(() => again.close());
  const second = await again.start();
  const res2 = await request(`${second.httpUrl}/inspect`, { method: 'POST', body: good, headers: { 'content-type': 'image/jpeg' } });
  assert.equal(((await res2.body.json()) as { seq: number }).seq, 4);
});

test('a model directory that does not load stops start-up with a coded error and leaves nothing open', async (t) => {
  const dir = await tempDir(t);
  const config = await loadEdgeConfig(
    await (async () => {
      const f = path.join(dir, 'edge.json');
      await writeFile(f, JSON.stringify({ edgeId: 'e1', line: 'l', dataDir: 'data', http: { port: 0 }, model: { dir: 'no-such-model' } }));
      return f;
    })(),
  );
  const agent = createEdgeAgent(config, { logger: testLogger() });
  await assert.rejects(agent.start(), (err: Error & { code?: string }) => {
    assert.match(String(err.code), /^OSP_ERR_MODEL/);
    return true;
  });
  await agent.close();
});

test('osprey edge start serves until SIGTERM, then closes cleanly and exits 0', async (t) => {
  const dir = await tempDir(t);
  const configFile = path.join(dir, 'edge.json');
  await writeFile(
    configFile,
    JSON.stringify({ edgeId: 'proc-1', line: 'line-P', dataDir: 'data', http: { port: 0 }, model: { dir: await modelDir } }),
  );
  const proc = startOsprey(['edge', 'start', '--config', configFile]);
  t.after(() => proc.stop('SIGKILL'));
  const { httpUrl } = (await proc.waitForLine((l) => l.msg === 'edge agent started')) as { httpUrl: string };
  const res = await request(`${httpUrl}/health`);
  assert.equal(((await res.body.json()) as { edgeId: string }).edgeId, 'proc-1');
  assert.equal(await proc.stop('SIGTERM'), 0);
  assert.ok(proc.lines.some((l) => l.msg === 'edge agent stopped'));
});
