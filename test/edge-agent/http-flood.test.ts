/**
 * A real edge process under a flood of large POST /inspect bodies: 75 concurrent 30 MB bodies,
 * declared and then streamed (chunked). Each sender streams from one shared 1 MiB buffer and
 * stops at the answer, so the growth measured (peak RSS from /proc) is the agent's.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import path from 'node:path';
import { writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { startOsprey } from '../helpers/osprey-process.js';
import { memoryOf } from '../helpers/mqtt-flood.js';
import { useDemoModel } from './demo-model.js';
import { tempDir } from './fixtures.js';

const MiB = 1024 * 1024;
const modelDir = useDemoModel();

/** Sends one body of `bytes` (declared or chunked); resolves with the status, or -1 when the agent closed before its answer was read. */
function sendBody(url: URL, bytes: number, chunked: boolean, chunk: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'image/jpeg', ...(chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': bytes }) };
    const req = httpRequest({ host: url.hostname, port: url.port, method: 'POST', path: '/inspect', headers, agent: false });
    let status = 0;
    req.on('response', (res) => {
      status = res.statusCode!;
      res.resume();
      res.on('end', () => {
        req.destroy();
        resolve(status);
      });
    });
    // The agent answers a refusal at once and closes: a sender still writing may see the close first.
    req.on('error', (err: NodeJS.ErrnoException) => (status ? resolve(status) : err.code === 'EPIPE' || err.code === 'ECONNRESET' ? resolve(-1) : reject(err)));
    let sent = 0;
    const pump = () => {
      while (sent < bytes && status === 0 && !req.destroyed) {
        const n = Math.min(chunk.length, bytes - sent);
        sent += n;
        if (!req.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void req.once('drain', pump);
      }
      if (sent >= bytes && status === 0) req.end();
    };
    pump();
  });
}

test('edge process: 75 concurrent 30 MB bodies (declared, then chunked) keep its memory bounded; it answers afterwards', { timeout: 120_000 }, async (t) => {
  const dir = await tempDir(t);
  const configFile = path.join(dir, 'edge.json');
  await writeFile(configFile, JSON.stringify({ edgeId: 'flood-1', line: 'L', dataDir: 'data', http: { port: 0 }, model: { dir: await modelDir } }));
  const proc = startOsprey(['edge', 'start', '--config', configFile]);
  t.after(() => proc.stop('SIGKILL'));
  const { httpUrl } = (await proc.waitForLine((l) => l.msg === 'edge agent started')) as { httpUrl: string };
  const url = new URL(httpUrl);
  const before = memoryOf(proc.child.pid!);
  const chunk = Buffer.alloc(MiB, 0xff);

  for (const chunked of [false, true]) {
    const statuses = await Promise.all(Array.from({ length: 75 }, () => sendBody(url, 30 * MiB, chunked, chunk)));
    const count = (s: number) => statuses.filter((x) => x === s).length;
    t.diagnostic(`${chunked ? 'chunked' : 'declared'}: ${count(503)} refused 503, ${count(-1)} closed while sending, ${count(422)} read and answered 422, others ${statuses.filter((x) => x !== 503 && x !== 422 && x !== -1).join(',') || 'none'}`);
    assert.ok(count(503) > 0, 'some bodies were refused');
    assert.equal(count(503) + count(-1) + count(422), 75);
    assert.ok(count(422) > 0, 'some bodies were read (and found not to be images)');
  }
  const after = memoryOf(proc.child.pid!);
  const growth = after.peak - before.rss;
  t.diagnostic(`edge RSS ${Math.round(before.rss / MiB)} MB before, peak ${Math.round(after.peak / MiB)} MB during the floods`);
  // 128 MiB of bodies in flight (the default cap), held once, plus decode attempts and overhead.
  assert.ok(growth < 450 * MiB, `edge peak RSS grew ${Math.round(growth / MiB)} MB`);
  const health = await fetch(`${httpUrl}/health`);
  assert.equal(health.status, 200);
});
