/**
 * Training as fleet jobs (issue 15): a real fleet manager, real HTTP, the real `osprey train` in
 * a child process, real MTD and NEU images from ../shared/data (small subsets, so a job takes
 * seconds). Progress is awaited as server-sent events, never polled.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { getPriority } from 'node:os';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { header, extractArchive } from '../../models/package-archive.js';
import { loadModelPackage } from '../../models/runtime.js';
import { openSqliteTrainingStore, type TrainingJob, type TrainingStore } from '../../fleet-manager/training-store.js';
import { TRAINING_PG_MIGRATIONS, pgTrainingStore } from '../../fleet-manager/pg/training-store-pg.js';
import { createTrainingRunner, RESTART_ERROR } from '../../fleet-manager/training-runner.js';
import { pino } from 'pino';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends } from '../helpers/store-backends.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { startFleet, type TestFleet } from './control-helpers.js';
import { captureLogger, connectEdge, results } from './helpers.js';

const run = promisify(execFile);
const skip = dataSkip('magnetic-tile') || dataSkip('neu-det');
const data = ospreyDataDir();
const squeezenet = join(data, 'models', 'squeezenet-fp16');

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- job views are checked field by field
type Job = Record<string, any>;

/** A fleet whose default backbone is the shared SqueezeNet (registered at start, copied into its data dir). */
const fleet = (t: TestContext) => startFleet(t, { training: { defaultBackbone: squeezenet } });

async function pick(dir: string, every: number, count: number): Promise<string[]> {
  const names = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
  return names.filter((_, i) => i % every === 0).slice(0, count).map((f) => join(dir, f));
}

/** A tar (GNU tar, links followed) of folders of MTD images: good/ and optionally defects/<class>/. */
async function tileArchive(t: TestContext, goodCount: number, defectsPerClass = 0): Promise<Buffer> {
  const tmp = await makeTempDir(t, 'osprey-tj-');
  const stage = join(tmp, 'stage');
  await mkdir(join(stage, 'good'), { recursive: true });
  for (const f of await pick(join(data, 'magnetic-tile', 'train', 'good'), 7, goodCount)) await symlink(f, join(stage, 'good', f.split('/').pop()!));
  if (defectsPerClass > 0) {
    for (const cls of ['blowhole', 'crack']) {
      await mkdir(join(stage, 'defects', cls), { recursive: true });
      for (const f of await pick(join(data, 'magnetic-tile', 'dev', cls), 5, defectsPerClass)) await symlink(f, join(stage, 'defects', cls, f.split('/').pop()!));
    }
  }
  const file = join(tmp, 'images.tar');
  await run('tar', ['-chf', file, '-C', stage, '.']);
  return readFile(file);
}

async function postArchive(f: TestFleet, query: string, body: Buffer, auth: { authorization: string } = f.admin): Promise<{ status: number; body: Job }> {
  const res = await fetch(`${f.httpUrl}/api/training-jobs?${query}`, { method: 'POST', body, headers: { ...auth, 'content-type': 'application/x-tar' } });
  return { status: res.status, body: (await res.json()) as Job };
}

/**
 * Reads the job's server-sent events until the stream ends (the job finished); `onEvent` sees
 * each as it arrives (while the trainer still runs).
 */
async function events(f: TestFleet, id: string, onEvent: (job: Job) => void | Promise<void> = () => {}): Promise<Job[]> {
  const res = await fetch(`${f.httpUrl}/api/training-jobs/${id}/events`, { headers: f.admin });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const seen: Job[] = [];
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buf += decoder.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      // Field lines in any order; a `retry:` hint may lead the first block.
      const lines = block.split('\n');
      const dataLine = lines.find((l) => l.startsWith('data: '));
      assert.ok(lines.includes('event: job') && dataLine, block);
      const job = JSON.parse(dataLine.slice(6)) as Job;
      seen.push(job);
      await onEvent(job);
    }
  }
  return seen;
}

const STATE_ORDER = ['queued', 'running', 'succeeded', 'failed', 'cancelled'];

/** Events arrive in order: states never go back, progress never decreases. */
function assertInOrder(seen: Job[]): void {
  for (let i = 1; i < seen.length; i++) {
    const a = seen[i - 1]!;
    const b = seen[i]!;
    assert.ok(Math.min(STATE_ORDER.indexOf(b.state), 2) >= Math.min(STATE_ORDER.indexOf(a.state), 2), `${a.state} then ${b.state}`);
    assert.ok(b.progress >= a.progress, `progress ${a.progress} then ${b.progress}`);
  }
}

const gone = (pid: number) => {
  try {
    process.kill(pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
};

test('a job from an uploaded archive (anomaly): progress events in order, child at nice 19, version registered with its card, the package runs', { skip, timeout: 180_000 }, async (t) => {
  const f = await fleet(t);
  const rm = await f.creds.headers('release-manager');
  const backbones = await f.api('GET', '/api/backbones');
  assert.deepEqual(backbones.body.backbones.map((b: Job) => [b.name, b.default, b.uploadedBy]), [['squeezenet-fp16', true, 'fleet']]);

  const posted = await postArchive(f, 'kind=anomaly&model=tiles&operatingPoint=balanced', await tileArchive(t, 20, 3), rm);
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  const job = posted.body;
  assert.deepEqual([job.state, job.counts, job.createdBy, job.backbone, job.source.type], ['queued', { good: 20, defects: 6 }, 'user:test-release-manager', 'squeezenet-fp16', 'archive']);

  const priorities: number[] = [];
  const seen = await events(f, job.id, (j) => {
    // While the trainer runs: its priority, read from the kernel.
    if (j.state === 'running' && j.pid !== null && priorities.length === 0) priorities.push(getPriority(j.pid));
  });
  assertInOrder(seen);
  const last = seen.at(-1)!;
  assert.equal(last.state, 'succeeded', JSON.stringify(last));
  assert.deepEqual(priorities, [19]);
  t.diagnostic(`anomaly job (20 good + 6 defect images): ${(last.finishedAt - last.startedAt) / 1000} s from start to registered, ${seen.length} events`);
  const phases = seen.map((j) => j.phase);
  assert.ok(phases.includes('training') || phases.includes('features'), phases.join());
  assert.ok(phases.includes('registering'), phases.join());
  assert.equal(last.progress, 1);
  assert.equal(last.resultVersion, '1.0.0');
  assert.equal(last.modelCard.createdBy, 'user:test-release-manager');
  assert.equal(last.modelCard.data.goodImages, 20);
  assert.equal(last.modelCard.validation.defectImages, 6);
  assert.equal(last.pid, null);

  // A normal registered version, the fleet's own artifact, with its provenance.
  const version = await f.api('GET', '/api/models/tiles/versions/1.0.0');
  assert.equal(version.status, 200);
  assert.deepEqual([version.body.keyId, version.body.trainedBy, version.body.uploadedBy, version.body.sha256], ['fleet', `training-job:${job.id}`, 'user:test-release-manager', last.resultSha256]);

  // Edges download it like any other, and it runs.
  const edge = { authorization: `Bearer ${await f.creds.enrollEdge('edge-dl')}` };
  const artifact = await fetch(`${f.httpUrl}/api/artifacts/${last.resultSha256}`, { headers: edge });
  assert.equal(artifact.status, 200);
  const pkg = join(await makeTempDir(t, 'osprey-tj-pkg-'), 'pkg');
  await extractArchive(new Uint8Array(await artifact.arrayBuffer()), pkg);
  assert.equal(JSON.parse(await readFile(join(pkg, 'model-card.json'), 'utf8')).createdBy, 'user:test-release-manager');
  const runner = await loadModelPackage(pkg);
  t.after(() => runner.close());
  const [crack] = await pick(join(data, 'magnetic-tile', 'dev', 'break'), 3, 1);
  const inspected = await runner.inspect(await readFile(crack!));
  assert.ok(Number.isFinite(inspected.score), JSON.stringify(inspected));

  const logs = await f.api('GET', `/api/training-jobs/${job.id}/logs`);
  assert.equal(logs.status, 200);
  assert.ok(logs.body.lines.some((l: Job) => /^features of 20 images/.test(l.line)), JSON.stringify(logs.body.lines));
  await assert.rejects(stat(join(f.dataDir, 'training', job.id)), { code: 'ENOENT' });

  // The next job of the model without a version: the next patch version.
  const second = await postArchive(f, 'kind=anomaly&model=tiles', await tileArchive(t, 5));
  assert.equal(second.status, 201);
  const end = (await events(f, second.body.id)).at(-1)!;
  assert.deepEqual([end.state, end.resultVersion], ['succeeded', '1.0.1'], JSON.stringify(end));
  // An explicit version that exists: refused before anything runs.
  const taken = await postArchive(f, 'kind=anomaly&model=tiles&version=1.0.0', await tileArchive(t, 5));
  assert.equal(taken.status, 409);
});

test('a job from images already in the fleet (classify): kept frames by line and model, labelled by the model, registered', { skip, timeout: 180_000 }, async (t) => {
  const f = await fleet(t);
  const edgeId = 'cam-e1';
  const credential = await f.creds.enrollEdge(edgeId);
  const edge = await connectEdge(t, f.mqttUrl, edgeId, credential);
  const classes = ['crazing', 'inclusion', 'scratches'];
  const files: { file: string; label: string }[] = [];
  for (const c of classes) for (const file of await pick(join(data, 'neu-det', c), 11, 4)) files.push({ file, label: c });
  // Results 1..12: NEU frames on line L1 by neu@1; 13..14: another model's frames (left out by the filter); 15: no image.
  const batch = [
    ...files.map((x, i) => results(i + 1, i + 1, { verdict: 'defect', label: x.label, model: 'neu@1' })[0]!),
    ...results(13, 14, { verdict: 'defect', label: 'crazing', model: 'other@1' }),
    ...results(15, 15, { verdict: 'defect', label: 'crazing', model: 'neu@1' }),
  ];
  await edge.publishState({ line: 'L1', lastSeq: batch.length, ackedSeq: 0 });
  await edge.publishResults(batch);
  assert.equal(await edge.nextAck(), batch.length);
  const auth = { authorization: `Bearer ${credential}` };
  for (const [i, x] of [...files, files[0]!, files[1]!].entries()) {
    const res = await fetch(`${f.httpUrl}/api/results/${edgeId}/${i + 1}/image`, { method: 'PUT', body: await readFile(x.file), headers: { ...auth, 'content-type': 'image/jpeg' } });
    assert.equal(res.status, 201, await res.text());
  }

  const posted = await f.api('POST', '/api/training-jobs', { kind: 'classify', model: 'neu-fleet', valFraction: 0.25, source: { type: 'fleet', line: 'L1', model: 'neu@1' } });
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  assert.deepEqual(posted.body.counts, { crazing: 4, inclusion: 4, scratches: 4 });
  const seen = await events(f, posted.body.id);
  assertInOrder(seen);
  const last = seen.at(-1)!;
  assert.equal(last.state, 'succeeded', JSON.stringify(last));
  assert.deepEqual(last.modelCard.labels.labels, classes);
  t.diagnostic(`classify job (12 fleet images, 3 labels): ${(last.finishedAt - last.startedAt) / 1000} s from start to registered`);
  assert.equal(last.modelCard.createdBy, 'user:test-admin');
  const version = await f.api('GET', `/api/models/neu-fleet/versions/${last.resultVersion}`);
  assert.deepEqual([version.status, version.body.task, version.body.trainedBy], [200, 'classification', `training-job:${posted.body.id}`]);
  // Ready for a shadow stage, like any registered version.
  const rollout = await f.api('POST', '/api/rollouts', {
    model: 'neu-fleet',
    version: last.resultVersion,
    target: { edges: [edgeId] },
    stages: [{ name: 'shadow', mode: 'shadow', gates: { minFrames: 10 } }, { name: 'live', mode: 'live', soakSeconds: 0 }],
  });
  assert.equal(rollout.status, 201, JSON.stringify(rollout.body));
  assert.deepEqual([rollout.body.status, rollout.body.stages[0].mode, rollout.body.stages[0].edges.map((e: Job) => e.edgeId)], ['running', 'shadow', [edgeId]]);

  // No kept frame matches: too few images, a clear 400.
  const none = await f.api('POST', '/api/training-jobs', { kind: 'classify', model: 'neu-fleet', source: { type: 'fleet', line: 'L2' } });
  assert.equal(none.status, 400);
  assert.match(none.body.message, /^too few labels: classify training needs one folder per label, at least 2, found 0/);
});

test('cancel kills the trainer (its process group), the job is cancelled, nothing is registered, its folder is gone; jobs run one at a time', { skip, timeout: 180_000 }, async (t) => {
  const f = await fleet(t);
  const first = await postArchive(f, 'kind=anomaly&model=cancelled', await tileArchive(t, 60));
  const second = await postArchive(f, 'kind=anomaly&model=waiting', await tileArchive(t, 5));
  assert.deepEqual([first.status, second.status], [201, 201]);
  let pid = 0;
  let secondWhileFirstRan: string | undefined;
  let cancelled: Job | undefined;
  const seen = await events(f, first.body.id, async (j) => {
    if (j.state !== 'running' || pid !== 0 || j.pid === null) return;
    pid = j.pid;
    secondWhileFirstRan = (await f.api('GET', `/api/training-jobs/${second.body.id}`)).body.state;
    const res = await f.api('POST', `/api/training-jobs/${first.body.id}/cancel`);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    cancelled = res.body;
    // Answered once the child is gone.
    assert.ok(gone(pid), `pid ${pid} still exists after the cancel answered`);
  });
  assert.ok(pid > 0);
  assert.equal(secondWhileFirstRan, 'queued');
  assert.deepEqual([cancelled?.state, seen.at(-1)!.state, seen.at(-1)!.error], ['cancelled', 'cancelled', 'cancelled']);
  assert.equal((await f.api('GET', '/api/models/cancelled/versions')).status, 404);
  await assert.rejects(stat(join(f.dataDir, 'training', first.body.id)), { code: 'ENOENT' });
  const again = await f.api('POST', `/api/training-jobs/${first.body.id}/cancel`);
  assert.deepEqual([again.status, again.body.message], [409, `training job ${first.body.id} has already been cancelled`]);

  // The queued one ran after it.
  const end = (await events(f, second.body.id)).at(-1)!;
  assert.equal(end.state, 'succeeded', JSON.stringify(end));
  const list = await f.api('GET', '/api/training-jobs');
  assert.deepEqual(list.body.jobs.map((j: Job) => j.state), ['succeeded', 'cancelled']);
});

/** A ustar archive of (name, bytes) entries, names written as given (no checks): for hostile archives. */
function rawTar(entries: [string, Buffer][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, bytes] of entries) {
    parts.push(header(name, bytes.length, 0), bytes, Buffer.alloc((512 - (bytes.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

test('bad requests get one clear line: bad archive, path traversal, unknown backbone, too few images, wrong options; roles', { skip, timeout: 120_000 }, async (t) => {
  const f = await fleet(t);
  const jpg = await readFile((await pick(join(data, 'magnetic-tile', 'train', 'good'), 1, 1))[0]!);
  const cases: [string, Buffer, number, RegExp][] = [
    ['kind=anomaly&model=m', Buffer.from('this is not a tar file at all'.repeat(40)), 400, /^not a valid training archive: not a tar file/],
    ['kind=anomaly&model=m', rawTar([['good/../../evil.jpg', jpg]]), 400, /^training archive entry "good\/\.\.\/\.\.\/evil\.jpg" climbs out of the archive/],
    ['kind=anomaly&model=m', rawTar([['/etc/evil.jpg', jpg]]), 400, /is an absolute or non-portable path/],
    ['kind=anomaly&model=m', rawTar([['good/a.jpg', jpg], ['good/b.jpg', jpg]]), 400, /^too few images: anomaly training needs at least 3 good images, found 2/],
    ['kind=anomaly&model=m', rawTar([['other/a.jpg', jpg]]), 400, /folder "other" is neither good\/ nor defects\//],
    ['kind=anomaly&model=m&backbone=resnet-nowhere', rawTar([['good/a.jpg', jpg]]), 400, /^backbone: unknown backbone resnet-nowhere/],
    ['kind=anomaly&model=m&goodLabel=ok', rawTar([['good/a.jpg', jpg]]), 400, /^valFraction and goodLabel are classify options$/],
    ['kind=sideways&model=m', rawTar([['good/a.jpg', jpg]]), 400, /^querystring\/kind must be equal to one of the allowed values/],
  ];
  for (const [query, body, status, message] of cases) {
    const res = await postArchive(f, query, body);
    assert.equal(res.status, status, `${query}: ${JSON.stringify(res.body)}`);
    assert.match(res.body.message, message);
    assert.ok(!res.body.message.includes('\n'));
  }
  // Nothing was created, and no folder or upload is left behind.
  assert.deepEqual((await f.api('GET', '/api/training-jobs')).body.jobs, []);
  assert.deepEqual(await readdir(join(f.dataDir, 'training')), []);
  assert.deepEqual(await readdir(join(f.dataDir, 'training-uploads')), []);
  // A JSON body shaped like a received upload is not one: the file it names is neither read nor deleted.
  const bait = join(await makeTempDir(t, 'osprey-tj-bait-'), 'keep.tar');
  await writeFile(bait, rawTar([['good/a.jpg', jpg], ['good/b.jpg', jpg], ['good/c.jpg', jpg]]));
  const forged = await f.api('POST', '/api/training-jobs?kind=anomaly&model=m', { archive: { file: bait, bytes: 1, sha256: 'x' } });
  assert.equal(forged.status, 400);
  const forgedBackbone = await f.api('POST', '/api/backbones?name=forged', { file: bait, bytes: 1, sha256: 'x' });
  assert.equal(forgedBackbone.status, 415);
  assert.ok((await stat(bait)).size > 0, 'the named file is still there');
  const missingSource = await f.api('POST', '/api/training-jobs', { kind: 'classify', model: 'm' });
  assert.deepEqual([missingSource.status, missingSource.body.message], [400, "body/ must have required property 'source'"]);

  // Who may start one: release managers and admins; a viewer, an operator and an inspector may not; nobody anonymous.
  const good = rawTar([['good/a.jpg', jpg], ['good/b.jpg', jpg], ['good/c.jpg', jpg]]);
  for (const role of ['viewer', 'operator', 'inspector'] as const) {
    const res = await postArchive(f, 'kind=anomaly&model=m', good, await f.creds.headers(role));
    assert.equal(res.status, 403, role);
  }
  const anonymous = await fetch(`${f.httpUrl}/api/training-jobs?kind=anomaly&model=m`, { method: 'POST', body: good, headers: { 'content-type': 'application/x-tar' } });
  assert.equal(anonymous.status, 401);
  const viewer = await f.creds.headers('viewer');
  assert.equal((await fetch(`${f.httpUrl}/api/training-jobs`, { headers: viewer })).status, 200);
});

test('backbones: an ONNX upload is kept by sha256 and listed, a non-ONNX file is refused in one line, delete', { skip, timeout: 60_000 }, async (t) => {
  const f = await fleet(t);
  const rm = await f.creds.headers('release-manager');
  const upload = (name: string, body: Buffer, auth = rm) =>
    fetch(`${f.httpUrl}/api/backbones?name=${name}`, { method: 'POST', body, headers: { ...auth, 'content-type': 'application/octet-stream' } });
  const bad = await upload('junk', Buffer.from('not onnx at all, just words'));
  assert.equal(bad.status, 422);
  const badBody = (await bad.json()) as Job;
  assert.equal(badBody.error, 'OSP_ERR_MODEL_LOAD');
  assert.match(badBody.message, /^backbone junk: not an ONNX model/);
  assert.ok(!badBody.message.includes('\n'));
  const onnx = await readFile(join(squeezenet, 'model.onnx'));
  assert.equal((await upload('squeeze-copy', onnx, await f.creds.headers('operator'))).status, 403);
  const ok = await upload('squeeze-copy', onnx);
  assert.equal(ok.status, 201);
  const rec = (await ok.json()) as Job;
  assert.deepEqual([rec.name, rec.size, rec.uploadedBy, rec.default], ['squeeze-copy', onnx.length, 'user:test-release-manager', false]);
  // The same bytes as the default: one blob on disk.
  const shaDir = join(f.dataDir, 'backbones', rec.sha256.slice(0, 2));
  assert.deepEqual(await readdir(shaDir), [rec.sha256]);
  const list = await f.api('GET', '/api/backbones');
  assert.deepEqual(list.body.backbones.map((b: Job) => b.name), ['squeezenet-fp16', 'squeeze-copy']);
  assert.equal((await upload('squeeze-copy', Buffer.concat([onnx, Buffer.from([0x08, 0x01])]))).status, 409);
  const del = await fetch(`${f.httpUrl}/api/backbones/squeeze-copy`, { method: 'DELETE', headers: rm });
  assert.equal(del.status, 200);
  // The other name still uses the file.
  assert.deepEqual(await readdir(shaDir), [rec.sha256]);
  assert.equal((await fetch(`${f.httpUrl}/api/backbones/squeeze-copy`, { method: 'DELETE', headers: rm })).status, 404);
});

test('a fleet restart fails the jobs it interrupted and removes their folders', { timeout: 60_000 }, async (t) => {
  const dataDir = await makeTempDir(t, 'osprey-tj-restart-');
  const store = openSqliteTrainingStore({ file: join(dataDir, 'fleet.db'), logger: pino({ level: 'silent' }) });
  const base: TrainingJob = {
    id: 'tj-running', kind: 'anomaly', model: 'm', requestedVersion: null, version: '1.0.0', backbone: 'nowhere', options: {}, source: { type: 'archive' },
    state: 'running', phase: 'training', progress: 0.3, counts: { good: 3 }, error: null, createdBy: 'user:x', createdAt: 1, startedAt: 2, finishedAt: null,
    resultVersion: null, resultSha256: null, modelCard: null, workDir: join(dataDir, 'training', 'tj-running'), pid: 99999999, droppedLogLines: 0,
  };
  await mkdir(join(base.workDir!, 'data', 'good'), { recursive: true });
  await writeFile(join(base.workDir!, 'data', 'good', 'a.jpg'), 'x');
  await store.insertJob(base);
  await store.close();

  const f = await startFleet(t, { dataDir });
  const job = await f.api('GET', '/api/training-jobs/tj-running');
  assert.deepEqual([job.body.state, job.body.error, job.body.pid], ['failed', 'interrupted by a fleet restart', null]);
  await assert.rejects(stat(base.workDir!), { code: 'ENOENT' });
});

testBackends("a running job's lease is renewed while its trainer runs; cancelled on another instance, its trainer is killed at the next renewal and nothing overwrites the cancel", async (t, backend) => {
  const log = captureLogger('info');
  const root = await makeTempDir(t, 'osprey-tj-lease-');
  let store: TrainingStore;
  if (backend === 'postgres') store = pgTrainingStore(await pgTestPool(t, TRAINING_PG_MIGRATIONS), { logger: log.logger });
  else {
    store = openSqliteTrainingStore({ file: join(root, 'fleet.db'), logger: log.logger });
    t.after(() => store.close());
  }
  const leaseMs = 200;
  const runner = (instanceId: string) =>
    createTrainingRunner({
      store,
      instanceId,
      leaseMs,
      workRoot: join(root, instanceId),
      logger: log.logger,
      timeoutMs: 120_000,
      maxRssBytes: 4e9,
      registry: { addTrainedVersion: async () => assert.fail('a cancelled job registers nothing') },
      control: { listVersions: async () => [], getVersion: async () => null },
      backbones: { resolve: async () => ({ record: {} as never, file: join(squeezenet, 'model.onnx') }) },
    });
  const a = runner('inst-a');
  const b = runner('inst-b');
  t.after(() => Promise.all([a.stop(), b.stop()]));
  await a.start();
  // As the HTTP route does: the images in the job's folder, then the job submitted.
  const workDir = a.workDirFor('tj-lease');
  await mkdir(join(workDir, 'data', 'good'), { recursive: true });
  for (const f of await pick(join(data, 'magnetic-tile', 'train', 'good'), 7, 60)) await symlink(f, join(workDir, 'data', 'good', f.split('/').pop()!));
  const base: TrainingJob = {
    id: 'tj-lease', kind: 'anomaly', model: 'lease', requestedVersion: '1.0.0', version: null, backbone: 'squeezenet', options: {}, source: { type: 'archive' },
    state: 'queued', phase: 'queued', progress: 0, counts: { good: 60 }, error: null, createdBy: 'user:x', createdAt: Date.now(), startedAt: null, finishedAt: null,
    resultVersion: null, resultSha256: null, modelCard: null, workDir, pid: null, droppedLogLines: 0,
  };

  let pid = 0;
  let sweptWhileRunning: string[] | undefined;
  let cancelled: TrainingJob | undefined;
  const ended = new Promise<TrainingJob>((resolve, reject) => {
    a.subscribe('tj-lease', (j) => {
      if (j.state === 'cancelled' || j.state === 'failed' || j.state === 'succeeded') resolve(j);
      // The trainer reads features for seconds: then another instance sweeps and cancels.
      if (j.phase !== 'features' || j.pid === null || pid) return;
      pid = j.pid;
      void (async () => {
        // Three leases pass (time itself is what is tested: no event marks it); renewals keep the job held.
        await new Promise((r) => setTimeout(r, 3 * leaseMs));
        sweptWhileRunning = (await store.failRunning(RESTART_ERROR, Date.now(), null)).map((x) => x.id);
        cancelled = await b.cancel('tj-lease');
      })().catch(reject);
    }, () => {});
  });
  await a.submit(base);
  const last = await ended;
  assert.deepEqual(sweptWhileRunning, [], 'the lease was renewed: nothing to sweep');
  assert.deepEqual([cancelled?.state, last.state], ['cancelled', 'cancelled']);
  assert.ok(log.lines.some((l) => l.jobId === 'tj-lease' && /trainer killed/.test(l.msg)), 'killed at a renewal, not run to its end');
  assert.ok(pid > 0 && gone(pid), `trainer ${pid} gone`);
  await assert.rejects(stat(workDir), { code: 'ENOENT' });
  const stored = (await store.getJob('tj-lease'))!;
  assert.deepEqual([stored.state, stored.error, stored.resultVersion], ['cancelled', 'cancelled', null]);
}, { skip, timeout: 120_000 });
