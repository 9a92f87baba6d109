/**
 * Artifact downloads, the on-disk cache and the persisted model state, against a real HTTP server
 * on port 0 and real files.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdir, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { downloadArtifact } from '../../edge-agent/artifact-download.js';
import { freeBytes } from '../../edge-agent/disk-space.js';
import { openArtifactCache } from '../../edge-agent/artifact-cache.js';
import { MODEL_STATE_FILE, readModelState, writeModelState } from '../../edge-agent/model-state-file.js';
import { packArchive } from '../../models/package-archive.js';
import { isOspreyError } from '../../protocol/errors.js';
import { envelope } from '../../protocol/validator.js';
import { sha256Of, startArtifactServer } from './artifact-server.js';
import { tempDir, testLogger } from './fixtures.js';

const fast = { retryBaseMs: 2, retryMaxMs: 10, logger: testLogger() };

test('a partial file is resumed from its size; the whole is verified', async (t) => {
  const dir = await tempDir(t);
  const server = await startArtifactServer();
  t.after(() => server.close());
  const bytes = randomBytes(300_000);
  const url = server.add(bytes);
  const sha256 = sha256Of(bytes);
  const file = path.join(dir, 'a.part');
  await writeFile(file, bytes.subarray(0, 123_456)); // left by an earlier process
  const result = await downloadArtifact({ url, sha256, size: bytes.length, file, ...fast });
  assert.deepEqual(server.requests.map((r) => [r.range, r.status]), [['bytes=123456-', 206]]);
  assert.equal(result.resumed, 1);
  assert.deepEqual(await readFile(file), bytes);
});

test('a download that would take the disk below disk.minFreeBytes is refused before its first byte, naming the directory', async (t) => {
  const dir = await tempDir(t);
  const server = await startArtifactServer();
  t.after(() => server.close());
  const bytes = randomBytes(10_000);
  const url = server.add(bytes);
  assert.ok(freeBytes(dir)! > 0);
  const file = path.join(dir, 'a.part');
  await assert.rejects(
    downloadArtifact({ url, sha256: sha256Of(bytes), size: bytes.length, file, minFreeBytes: Number.MAX_SAFE_INTEGER, ...fast }),
    (err: unknown) =>
      isOspreyError(err, 'OSP_ERR_MODEL_DOWNLOAD') && err.message.includes(`not enough free space in ${dir}`) && err.message.includes('disk.minFreeBytes'),
  );
  assert.deepEqual(server.requests, [], 'nothing fetched');
  assert.deepEqual(await readdir(dir), [], 'no file created');
  // With room to spare it goes through.
  await downloadArtifact({ url, sha256: sha256Of(bytes), size: bytes.length, file, minFreeBytes: 1 << 20, ...fast });
  assert.deepEqual(await readFile(file), bytes);
});

test('a server that ignores Range gets the whole file written over the partial one', async (t) => {
  const dir = await tempDir(t);
  const bytes = randomBytes(50_000);
  const server = createServer((_req, res) => res.writeHead(200, { 'content-length': bytes.length }).end(bytes));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const file = path.join(dir, 'b.part');
  await writeFile(file, bytes.subarray(0, 10_000));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/x`;
  await downloadArtifact({ url, sha256: sha256Of(bytes), size: bytes.length, file, ...fast });
  assert.deepEqual(await readFile(file), bytes);
});

test('wrong bytes are refused after one fresh retry; a longer body is cut off; nothing is left behind', async (t) => {
  const dir = await tempDir(t);
  const server = await startArtifactServer();
  t.after(() => server.close());
  const bytes = randomBytes(20_000);
  const wrong = Buffer.from(bytes);
  wrong[7]! ^= 0xff;
  const sha256 = sha256Of(bytes);
  const url = server.add(wrong, sha256);
  const file = path.join(dir, 'c.part');
  await assert.rejects(downloadArtifact({ url, sha256, size: bytes.length, file, ...fast }), (err) => isOspreyError(err, 'OSP_ERR_ARTIFACT_CHECKSUM'));
  assert.equal(server.requestsFor(sha256).length, 2);
  await assert.rejects(stat(file), { code: 'ENOENT' });

  // The desired state says 1000 bytes; the server has more: never more than 1000 written.
  await assert.rejects(downloadArtifact({ url, sha256, size: 1000, file, ...fast }), (err) => isOspreyError(err, 'OSP_ERR_ARTIFACT_CHECKSUM'));
  await assert.rejects(stat(file), { code: 'ENOENT' });
});

test('transient failures back off exponentially with jitter, up to maxAttempts; an abort stops at once and keeps the partial file', async (t) => {
  const dir = await tempDir(t);
  const server = await startArtifactServer();
  t.after(() => server.close());
  const bytes = randomBytes(40_000);
  const sha256 = sha256Of(bytes);
  const url = server.add(bytes);
  server.failWith(sha256, 503, 10);
  const delays: number[] = [];
  await assert.rejects(
    downloadArtifact({
      url,
      sha256,
      size: bytes.length,
      file: path.join(dir, 'd.part'),
      retryBaseMs: 4,
      retryMaxMs: 20,
      maxAttempts: 5,
      random: () => 1,
      logger: testLogger(),
      onAttemptFailed: ({ delayMs }) => delays.push(delayMs),
    }),
    (err) => isOspreyError(err, 'OSP_ERR_MODEL_DOWNLOAD'),
  );
  assert.deepEqual(delays, [4, 8, 16, 20], 'doubling, capped (jitter at its top)');

  // A cut after 15 kB, then the backoff wait: aborted during the wait, at once.
  const other = randomBytes(40_000);
  const otherSha = sha256Of(other);
  const otherUrl = server.add(other);
  server.dropAfter(otherSha, 15_000);
  const abort = new AbortController();
  const file = path.join(dir, 'e.part');
  const t0 = performance.now();
  const p = downloadArtifact({
    url: otherUrl,
    sha256: otherSha,
    size: other.length,
    file,
    signal: abort.signal,
    retryBaseMs: 60_000,
    retryMaxMs: 60_000,
    logger: testLogger(),
    onAttemptFailed: () => abort.abort(),
  });
  await assert.rejects(p, { name: 'AbortError' });
  assert.ok(performance.now() - t0 < 10_000, 'did not sit out the backoff');
  assert.ok((await stat(file)).size > 0, 'the partial file stays for a later resume');
});

test('the cache keeps N packages, always the protected ones, and clears stale downloads', async (t) => {
  const dir = await tempDir(t);
  const cache = await openArtifactCache(path.join(dir, 'models'));
  const shas: string[] = [];
  for (let i = 0; i < 5; i++) {
    const archive = packArchive({ 'manifest.json': Buffer.from(`{"i":${i}}`) });
    const sha = sha256Of(archive);
    shas.push(sha);
    await writeFile(cache.partFile(sha), archive);
    assert.equal(await cache.install(sha), cache.packageDir(sha));
    assert.ok(await cache.has(sha));
    // Distinct, increasing use times (the filesystem's mtime may be coarse).
    const when = new Date(Date.now() - (10 - i) * 60_000);
    await utimes(cache.packageDir(sha), when, when);
  }
  await writeFile(cache.partFile('a'.repeat(64)), 'stale');
  await writeFile(cache.partFile('b'.repeat(64)), 'wanted');
  await mkdir(path.join(dir, 'models', `${shas[0]}.partial-1-2`));
  const removed = await cache.prune(3, new Set([shas[0]!, 'b'.repeat(64)]));
  // shas[0] is protected (the oldest); of the rest the two most recently used stay.
  assert.deepEqual(removed.sort(), [shas[1]!, shas[2]!].sort());
  const left = (await readdir(path.join(dir, 'models'))).filter((n) => n !== 'downloads').sort();
  assert.deepEqual(left, [shas[0]!, shas[3]!, shas[4]!].sort());
  assert.deepEqual(await readdir(path.join(dir, 'models', 'downloads')), [`${'b'.repeat(64)}.part`]);
});

test('the model state file round-trips, and a damaged one is ignored with a reason', async (t) => {
  const dir = await tempDir(t);
  const desired = envelope('desired', 'e1', { active: null, shadow: null, config: { thresholds: { default: 0.3 } }, configVersion: 3 });
  const state = { v: 1 as const, desired, active: null, activeProven: true, previous: 'local' as const, refused: [] };
  await writeModelState(dir, state);
  const reasons: string[] = [];
  assert.deepEqual(await readModelState(dir, (r) => reasons.push(r)), state);
  await writeFile(path.join(dir, MODEL_STATE_FILE), '{"v":1,"desired":');
  assert.equal(await readModelState(dir, (r) => reasons.push(r)), undefined);
  await writeFile(path.join(dir, MODEL_STATE_FILE), JSON.stringify({ ...state, desired: { ...desired, configVersion: -1 } }));
  assert.equal(await readModelState(dir, (r) => reasons.push(r)), undefined);
  assert.equal(reasons.length, 2);
  assert.match(reasons[1]!, /^desired: /);
});
