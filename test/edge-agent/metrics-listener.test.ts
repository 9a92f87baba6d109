/**
 * The edge's metrics-only listener over real HTTP: a bad token file stops start-up with one line
 * naming the field; with a token only the right bearer scrapes; nothing but GET/HEAD /metrics.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { writeFile } from 'node:fs/promises';
import { createMetricsListener } from '../../edge-agent/metrics-listener.js';
import { tempDir, testLogger } from './fixtures.js';

const scrape = async () => ({ contentType: 'text/plain; version=0.0.4; charset=utf-8', text: 'osprey_edge_up 1\n' });

test('a token file that is missing or too short is a config error naming metrics.tokenFile', async (t) => {
  const dir = await tempDir(t);
  const short = join(dir, 'short.token');
  await writeFile(short, 'abc\n');
  for (const [file, why] of [[short, /at least 16 characters/], [join(dir, 'none.token'), /cannot read .*ENOENT/]] as const) {
    const listener = createMetricsListener({ host: '127.0.0.1', port: 0, tokenFile: file, scrape, logger: testLogger() });
    await assert.rejects(listener.start(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'OSP_ERR_CONFIG');
      assert.match(err.message, /^config metrics\.tokenFile: /);
      assert.match(err.message, why);
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    await listener.close();
  }
});

test('with a token: only GET and HEAD /metrics with the right bearer; everything else refused', async (t) => {
  const dir = await tempDir(t);
  const tokenFile = join(dir, 'metrics.token');
  await writeFile(tokenFile, 'a-token-of-24-characters\n');
  const listener = createMetricsListener({ host: '127.0.0.1', port: 0, tokenFile, scrape, logger: testLogger() });
  t.after(() => listener.close());
  const url = await listener.start();
  const status = async (path: string, init: RequestInit = {}) => {
    const res = await fetch(url.replace(/\/metrics$/, path), init);
    await res.arrayBuffer();
    return res.status;
  };
  const auth = { authorization: 'Bearer a-token-of-24-characters' };
  assert.equal(await status('/metrics'), 401);
  assert.equal(await status('/metrics', { headers: { authorization: 'Bearer a-token-of-24-characterX' } }), 401);
  assert.equal(await status('/metrics', { headers: { authorization: 'Basic a-token-of-24-characters' } }), 401);
  assert.equal(await status('/metrics', { headers: auth }), 200);
  assert.equal(await status('/metrics?x=1', { headers: auth, method: 'HEAD' }), 200);
  assert.equal(await status('/metrics', { headers: auth, method: 'POST', body: 'x' }), 405);
  assert.equal(await status('/health', { headers: auth }), 404);
  assert.equal(await status('/inspect', { headers: auth, method: 'POST', body: 'x' }), 404);
  const res = await fetch(url, { headers: auth });
  assert.equal(await res.text(), 'osprey_edge_up 1\n');
});
