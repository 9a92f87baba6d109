/**
 * Review by inspectors (issue 16) over real HTTP on a real SQLite fleet database and real image
 * blobs (the review and image stores on SQLite and on PostgreSQL): the review queue, reviews and who may give them, the line's accuracy arithmetic, the
 * dataset export (the tar read back by GNU tar; YOLO and COCO boxes checked against the
 * results'), one-line refusals, and reviewed labels feeding the training source.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { pino } from 'pino';
import sharp from 'sharp';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../fleet-manager/app.js';
import { openSqliteImageStore, type FleetImageStore } from '../../fleet-manager/image-store.js';
import { openSqliteStore, type FleetStore } from '../../fleet-manager/store.js';
import { openSqliteReviewStore, type ReviewStore } from '../../fleet-manager/review-store.js';
import { IMAGE_PG_MIGRATIONS, pgImageStore } from '../../fleet-manager/pg/image-store-pg.js';
import { REVIEW_PG_MIGRATIONS, pgReviewStore } from '../../fleet-manager/pg/review-store-pg.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';
import { materialiseFleetImages } from '../../fleet-manager/training-sources.js';
import { envelope } from '../../protocol/validator.js';
import type { ResultRecord } from '../../protocol/messages.js';
import { openTestIdentity } from '../helpers/identity.js';
import { connectEdge, result, tempDir } from './helpers.js';
import { startFleet } from './control-helpers.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';

const run = promisify(execFile);
const STORE = 'storeAAAAAAAAAAA';
const BOX: [number, number, number, number] = [20, 10, 60, 50];

interface Rig {
  app: FastifyInstance;
  dir: string;
  store: FleetStore;
  images: FleetImageStore;
  reviews: ReviewStore;
  admin: Record<string, string>;
  inspector: Record<string, string>;
  viewer: Record<string, string>;
  operator: Record<string, string>;
}

/**
 * Line L1, edge e1: 1, 2 defect calls (scratch, boxed), 3 an uncertain ok (0.45), 4 a sure ok
 * (not queued), 5 a defect without an image (not queued), 6 another model's defect (dent, boxed),
 * 7 an uncertain ok (0.52). Every one but 5 has a 200×100 PNG.
 */
const FRAMES: ResultRecord[] = [
  result(1, { verdict: 'defect', label: 'scratch', score: 0.9, detections: [{ label: 'scratch', score: 0.9, box: BOX }] }),
  result(2, { verdict: 'defect', label: 'scratch', score: 0.8, detections: [{ label: 'scratch', score: 0.8, box: [100, 0, 200, 100] }] }),
  result(3, { verdict: 'ok', label: 'good', score: 0.45 }),
  result(4, { verdict: 'ok', label: 'good', score: 0.1 }),
  result(5, { verdict: 'defect', label: 'scratch', score: 0.95 }),
  result(6, { verdict: 'defect', label: 'dent', score: 0.7, model: 'other@2', detections: [{ label: 'dent', score: 0.7, box: [0, 0, 50, 25] }] }),
  result(7, { verdict: 'ok', label: 'good', score: 0.52 }),
];

async function build(t: TestContext, backend: StoreBackend): Promise<Rig> {
  const dir = await tempDir(t);
  const logger = pino({ level: 'silent' });
  const file = join(dir, 'fleet.db');
  const store = openSqliteStore({ file, logger });
  const pool = backend === 'postgres' ? await pgTestPool(t, [...IMAGE_PG_MIGRATIONS, ...REVIEW_PG_MIGRATIONS]) : undefined;
  const images = pool ? pgImageStore(pool, { dir: join(dir, 'images'), logger }) : openSqliteImageStore({ file, dir: join(dir, 'images'), logger });
  const reviews = pool ? pgReviewStore(pool) : openSqliteReviewStore({ file });
  const creds = openTestIdentity(t, file);
  const app = await buildApp({ store, identity: creds.identity, logger, images: { images, maxImageBytes: 1 << 20 }, reviews });
  t.after(async () => {
    await app.close();
    await reviews.close();
    await images.close();
    await store.close();
  });
  const meta = { receivedAt: Date.now() };
  await store.recordState('e1', envelope('state', 'e1', { online: true, line: 'L1', storeId: STORE }), meta);
  await store.ingestResults('e1', FRAMES, meta, STORE);
  for (const r of FRAMES) {
    if (r.seq === 5) continue;
    const png = await sharp({ create: { width: 200, height: 100, channels: 3, background: { r: r.seq * 30, g: 90, b: 90 } } }).png().toBuffer();
    await images.put({ edgeId: 'e1', storeId: STORE, seq: r.seq }, png, 'image/png');
  }
  return {
    app,
    dir,
    store,
    images,
    reviews,
    admin: await creds.headers('admin'),
    inspector: await creds.headers('inspector'),
    viewer: await creds.headers('viewer'),
    operator: await creds.headers('operator'),
  };
}

const get = (r: Rig, url: string, auth = r.inspector) => r.app.inject({ url, headers: auth });
const review = (r: Rig, seq: number, body: unknown, auth = r.inspector, method: 'PUT' | 'DELETE' = 'PUT') =>
  r.app.inject({ method, url: `/api/results/e1/${seq}/review?store=${STORE}`, headers: auth, ...(method === 'PUT' && { payload: body as object }) });
const queueSeqs = async (r: Rig, query = '') => ((await get(r, `/api/review/queue?line=L1${query}`)).json() as { items: { seq: number }[] }).items.map((i) => i.seq);

testBackends('the queue: kept, unreviewed defect or uncertain frames, newest or most uncertain first; reviewed frames leave it', async (t, backend) => {
  const r = await build(t, backend);
  const res = await get(r, '/api/review/queue?line=L1');
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.deepEqual(body.items.map((i: { seq: number }) => i.seq), [7, 6, 3, 2, 1]);
  const first = body.items[4];
  assert.deepEqual(
    [first.edgeId, first.storeId, first.verdict, first.label, first.score, first.threshold, first.uncertain, first.image, first.detections],
    ['e1', STORE, 'defect', 'scratch', 0.9, 0.5, false, `/api/results/e1/1/image?store=${STORE}`, [{ label: 'scratch', score: 0.9, box: BOX }]],
  );
  assert.equal(body.items[0].uncertain, true);
  // The image the queue names is served.
  const img = await get(r, first.image);
  assert.deepEqual([img.statusCode, img.headers['content-type']], [200, 'image/png']);

  assert.deepEqual(await queueSeqs(r, '&order=uncertain'), [7, 3, 6, 2, 1]);
  assert.deepEqual(await queueSeqs(r, '&limit=2'), [7, 6]);
  assert.deepEqual(await queueSeqs(r, '&band=0.01'), [6, 2, 1], 'a narrower band: only defect calls');
  assert.deepEqual(await queueSeqs(r, '&edge=e2'), []);
  assert.equal((await review(r, 7, { review: 'confirmed' })).statusCode, 200);
  assert.deepEqual(await queueSeqs(r), [6, 3, 2, 1]);
});

testBackends('reviews: an inspector gives, changes (audited) and removes one; a viewer and an operator are refused; the verdict and label follow the review', async (t, backend) => {
  const r = await build(t, backend);
  assert.equal((await review(r, 2, { review: 'false-call' }, r.viewer)).statusCode, 403);
  assert.equal((await review(r, 2, { review: 'false-call' }, r.operator)).statusCode, 403);
  assert.equal((await get(r, '/api/review/queue', r.viewer)).statusCode, 403);
  assert.equal((await get(r, '/api/review/queue', r.operator)).statusCode, 200);

  const given = await review(r, 2, { review: 'false-call' });
  assert.equal(given.statusCode, 200, given.body);
  assert.deepEqual(
    (({ reviewedAt: _at, ...rest }) => rest)(given.json()),
    { edgeId: 'e1', storeId: STORE, seq: 2, line: 'L1', model: 'builtin-anomaly@1', modelVerdict: 'defect', modelLabel: 'scratch', ts: FRAMES[1]!.ts, review: 'false-call', verdict: 'ok', label: 'good', reviewer: 'user:test-inspector' },
  );
  const missed = (await review(r, 3, { review: 'missed-defect', label: 'scratch' })).json();
  assert.deepEqual([missed.verdict, missed.label], ['defect', 'scratch']);
  const relabelled = (await review(r, 6, { review: 'relabelled', label: 'scratch' })).json();
  assert.deepEqual([relabelled.verdict, relabelled.label], ['defect', 'scratch']);

  // Changed: one current review, the audit log keeps before and after.
  const changed = await review(r, 2, { review: 'confirmed' });
  assert.deepEqual([changed.statusCode, changed.json().verdict, changed.json().label], [200, 'defect', 'scratch']);
  assert.equal((await get(r, `/api/results/e1/2/review?store=${STORE}`)).json().review, 'confirmed');
  const audit = (await get(r, '/api/audit?limit=20', r.admin)).json() as { entries: { action: string; target: string; actor: string; before: unknown; after: unknown }[] };
  const rows = audit.entries.filter((e) => e.action === 'result.review' && e.target === `result:e1/${STORE}/2`);
  assert.deepEqual(
    rows.map((e) => [e.before && (e.before as { review: string }).review, (e.after as { review: string }).review]).sort(),
    [['false-call', 'confirmed'], [null, 'false-call']].sort(),
    JSON.stringify(audit.entries.slice(0, 3)),
  );

  const removed = await review(r, 2, undefined, r.inspector, 'DELETE');
  assert.deepEqual([removed.statusCode, removed.json().review], [200, 'confirmed']);
  const again = await review(r, 2, undefined, r.inspector, 'DELETE');
  assert.deepEqual([again.statusCode, again.json().message], [404, `result e1/2 (store ${STORE}) has no review`]);
});

testBackends('bad input: one line naming what is wrong', async (t, backend) => {
  const r = await build(t, backend);
  const cases: [string, unknown, number, RegExp][] = [
    [`/api/results/e1/4/review?store=${STORE}`, { review: 'false-call' }, 400, /^review: false-call applies to a defect call; this frame was called ok$/],
    [`/api/results/e1/1/review?store=${STORE}`, { review: 'missed-defect' }, 400, /^review: missed-defect applies to an ok call/],
    [`/api/results/e1/1/review?store=${STORE}`, { review: 'relabelled' }, 400, /^label: required for review "relabelled"$/],
    [`/api/results/e1/1/review?store=${STORE}`, { review: 'relabelled', label: 'scratch' }, 400, /^label: scratch is the model's own label/],
    [`/api/results/e1/1/review?store=${STORE}`, { review: 'confirmed', label: 'dent' }, 400, /^label: a confirmed call keeps the model's label scratch/],
    [`/api/results/e1/1/review?store=${STORE}`, { review: 'great' }, 400, /^body\/review must be equal to constant/],
    [`/api/results/e1/1/review?store=${STORE}`, { review: 'confirmed', extra: 1 }, 400, /additional properties \(extra\)/],
    [`/api/results/e1/99/review?store=${STORE}`, { review: 'confirmed' }, 404, /^no result e1\/99 \(store storeAAAAAAAAAAA\)$/],
    ['/api/results/e1/1/review', { review: 'confirmed' }, 404, /^no result e1\/1; add \?store= for an edge with a result store id$/],
  ];
  for (const [url, body, status, message] of cases) {
    const res = await r.app.inject({ method: 'PUT', url, headers: r.inspector, payload: body as object });
    assert.equal(res.statusCode, status, `${url} ${JSON.stringify(body)}: ${res.body}`);
    assert.match(res.json().message, message);
    assert.ok(!res.json().message.includes('\n'));
  }
  for (const [url, message] of [
    ['/api/lines/L1/accuracy?from=yesterday', /^querystring\/from must be an ISO 8601 date or epoch milliseconds$/],
    ['/api/lines/L1/accuracy?from=2000&to=1000', /^querystring\/from must be before querystring\/to$/],
    ['/api/review/queue?band=2', /^querystring\/band must be <= 1$/],
    ['/api/review/queue?order=oldest', /^querystring\/order must be equal to constant/],
    ['/api/datasets/export?line=L1&format=voc', /^querystring\/format must be equal to constant/],
    ['/api/datasets/export?format=coco', /^querystring must have required property 'line'$/],
  ] as const) {
    const res = await get(r, url);
    assert.equal(res.statusCode, 400, `${url}: ${res.body}`);
    assert.match(res.json().message, message);
  }
});

testBackends('accuracy per line and model version: false-call rate = false calls / reviewed defect calls, confirmed defect rate, missed defects', async (t, backend) => {
  const r = await build(t, backend);
  const empty = (await get(r, '/api/lines/L1/accuracy')).json();
  assert.deepEqual([empty.total.reviewed, empty.total.falseCallRate, empty.versions], [0, null, []]);
  for (const [seq, body] of [
    [1, { review: 'confirmed' }],
    [2, { review: 'false-call' }],
    [3, { review: 'missed-defect', label: 'scratch' }],
    [6, { review: 'relabelled', label: 'scratch' }],
    [7, { review: 'confirmed' }],
  ] as const) assert.equal((await review(r, seq, body)).statusCode, 200);
  const acc = (await get(r, '/api/lines/L1/accuracy')).json();
  const pick = (f: Record<string, unknown>) => [f.model, f.reviewed, f.defectCalls, f.okCalls, f.confirmed, f.confirmedDefects, f.falseCalls, f.relabelled, f.missedDefects, f.falseCallRate, f.confirmedDefectRate];
  assert.deepEqual(acc.versions.map(pick), [
    ['builtin-anomaly@1', 4, 2, 2, 2, 1, 1, 0, 1, 0.5, 0.5],
    ['other@2', 1, 1, 0, 0, 0, 0, 1, 0, 0, 0],
  ]);
  assert.deepEqual(pick(acc.total), ['all', 5, 3, 2, 2, 1, 1, 1, 1, 1 / 3, 1 / 3]);
  // A time range over the results' times; another line has none.
  assert.equal((await get(r, `/api/lines/L1/accuracy?from=${FRAMES[2]!.ts}`)).json().total.reviewed, 3);
  assert.equal((await get(r, '/api/lines/L2/accuracy')).json().total.reviewed, 0);
  assert.equal((await get(r, '/api/lines/L1/accuracy', r.viewer)).statusCode, 403);

  // The export's walk over a line's reviews: oldest result first, paged by keyset.
  const seqs: number[] = [];
  for (let after, page; (page = await r.reviews.list({ line: 'L1', limit: 2, ...(after && { after }) })).length > 0; after = page[page.length - 1]) seqs.push(...page.map((x) => x.seq));
  assert.deepEqual(seqs, [1, 2, 3, 6, 7]);
});

/** Reviews 1, 2, 3, 6, 7 as in the accuracy test, then exports and unpacks with GNU tar. */
async function exported(t: TestContext, r: Rig, format: string, line = 'L1'): Promise<{ dir: string; files: string[]; headers: Record<string, unknown> }> {
  const res = await get(r, `/api/datasets/export?line=${line}&format=${format}`);
  assert.equal(res.statusCode, 200, res.body);
  const dir = await tempDir(t);
  const tar = join(dir, 'x.tar');
  await import('node:fs/promises').then((fs) => fs.writeFile(tar, res.rawPayload));
  await run('tar', ['-xf', tar, '-C', dir]);
  const files = (await run('tar', ['-tf', tar])).stdout.trim().split('\n').sort();
  return { dir, files, headers: res.headers };
}

testBackends('dataset export: ImageFolder, YOLO and COCO tars of the reviewed images with the labels given in review', async (t, backend) => {
  const r = await build(t, backend);
  for (const [seq, body] of [
    [1, { review: 'confirmed' }],
    [2, { review: 'false-call' }],
    [3, { review: 'missed-defect', label: 'scratch' }],
    [6, { review: 'relabelled', label: 'scratch' }],
    [7, { review: 'confirmed' }],
  ] as const) assert.equal((await review(r, seq, body)).statusCode, 200);
  const n = (seq: number) => `e1_storeAAAAAAA_${seq}.png`;

  const folder = await exported(t, r, 'imagefolder');
  assert.equal(folder.headers['content-type'], 'application/x-tar');
  assert.equal(folder.headers['x-osprey-frames'], '5');
  assert.deepEqual(folder.files, [`good/${n(2)}`, `good/${n(7)}`, `scratch/${n(1)}`, `scratch/${n(3)}`, `scratch/${n(6)}`]);
  // The image bytes are the stored ones.
  const stored = await r.images.get({ edgeId: 'e1', storeId: STORE, seq: 3 });
  assert.deepEqual(await readFile(join(folder.dir, 'scratch', n(3))), await readFile(stored!.file));

  const yolo = await exported(t, r, 'yolo');
  // 3 was a missed defect: no box to label it with, left out.
  assert.deepEqual(yolo.files, ['data.yaml', ...[1, 2, 6, 7].map((s) => `images/${n(s)}`), ...[1, 2, 6, 7].map((s) => `labels/e1_storeAAAAAAA_${s}.txt`)].sort());
  assert.equal(await readFile(join(yolo.dir, 'data.yaml'), 'utf8'), 'path: .\ntrain: images\nval: images\nnc: 1\nnames:\n  0: "scratch"\n');
  const label = (s: number) => readFile(join(yolo.dir, 'labels', `e1_storeAAAAAAA_${s}.txt`), 'utf8');
  // BOX [20,10,60,50] on 200×100: centre (40, 30) → 0.2 0.3, size 40×40 → 0.2 0.4.
  assert.equal(await label(1), '0 0.2 0.3 0.2 0.4\n');
  assert.equal(await label(2), '', 'a false call is a background image');
  // 6: the dent box [0,0,50,25], relabelled scratch.
  assert.equal(await label(6), '0 0.125 0.125 0.25 0.25\n');
  assert.equal(await label(7), '');

  const coco = await exported(t, r, 'coco');
  assert.deepEqual(coco.files, ['annotations.json', ...[1, 2, 3, 6, 7].map((s) => `images/${n(s)}`)].sort());
  const ann = JSON.parse(await readFile(join(coco.dir, 'annotations.json'), 'utf8'));
  assert.deepEqual(ann.categories, [{ id: 1, name: 'good' }, { id: 2, name: 'scratch' }]);
  assert.deepEqual(ann.images.map((i: Record<string, unknown>) => [i.file_name, i.width, i.height, i.label]), [
    [n(1), 200, 100, 'scratch'],
    [n(2), 200, 100, 'good'],
    [n(3), 200, 100, 'scratch'],
    [n(6), 200, 100, 'scratch'],
    [n(7), 200, 100, 'good'],
  ]);
  const imageId = (s: number) => ann.images.find((i: { file_name: string }) => i.file_name === n(s)).id;
  assert.deepEqual(ann.annotations.map((a: Record<string, unknown>) => [a.image_id, a.category_id, a.bbox, a.area]), [
    [imageId(1), 2, [20, 10, 40, 40], 1600],
    [imageId(6), 2, [0, 0, 50, 25], 1250],
  ]);

  // A line with no reviews: an empty archive, still valid.
  const none = await get(r, '/api/datasets/export?line=L2&format=coco');
  assert.equal(none.statusCode, 200);
  assert.equal(none.headers['x-osprey-frames'], '0');
  assert.equal((await get(r, '/api/datasets/export?line=L1&format=coco', r.viewer)).statusCode, 403);
});

testBackends('a long edge id and store id still fit the archive (ustar prefix)', async (t, backend) => {
  const r = await build(t, backend);
  const edge = `e${'x'.repeat(63)}`;
  const store = `s${'y'.repeat(63)}`;
  await r.store.recordState(edge, envelope('state', edge, { online: true, line: 'L9', storeId: store }), { receivedAt: Date.now() });
  await r.store.ingestResults(edge, [result(1, { verdict: 'defect', label: `${'l'.repeat(60)}` })], { receivedAt: Date.now() }, store);
  const png = await sharp({ create: { width: 640, height: 480, channels: 3, background: '#777', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).png().toBuffer();
  await r.images.put({ edgeId: edge, storeId: store, seq: 1 }, png, 'image/png');
  assert.equal((await r.app.inject({ method: 'PUT', url: `/api/results/${edge}/1/review?store=${store}`, headers: r.inspector, payload: { review: 'relabelled', label: 'z'.repeat(100) } })).statusCode, 200);
  const out = await exported(t, r, 'imagefolder', 'L9');
  assert.equal(out.files.length, 1);
  assert.ok(out.files[0]!.length > 100, JSON.stringify(out.files));
  assert.equal((await stat(join(out.dir, out.files[0]!))).size, png.length);
});

testBackends('reviewed labels feed the training source (reviewOf from the review store)', async (t, backend) => {
  const r = await build(t, backend);
  await review(r, 1, { review: 'confirmed' });
  await review(r, 2, { review: 'false-call' });
  await review(r, 3, { review: 'missed-defect', label: 'scratch' });
  await review(r, 6, { review: 'relabelled', label: 'pit' });
  const layout = async (withReviews: boolean) => {
    const dir = await tempDir(t);
    const counts = await materialiseFleetImages(
      { results: r.store, images: r.images, ...(withReviews && { reviewOf: (k) => r.reviews.get(k) }) },
      'classify',
      { line: 'L1' },
      dir,
      { maxImages: 100, maxScannedResults: 100 },
    );
    const folders: Record<string, string[]> = {};
    for (const f of (await readdir(dir)).sort()) folders[f] = (await readdir(join(dir, f))).sort();
    return { counts, folders };
  };
  const model = await layout(false);
  assert.deepEqual(model.counts, { good: 3, scratch: 2, dent: 1 });
  const reviewed = await layout(true);
  assert.deepEqual(reviewed.counts, { good: 3, scratch: 2, pit: 1 });
  assert.deepEqual(reviewed.folders, {
    good: ['e1_storeAAAAAAAAAAA_2.png', 'e1_storeAAAAAAAAAAA_4.png', 'e1_storeAAAAAAAAAAA_7.png'],
    pit: ['e1_storeAAAAAAAAAAA_6.png'],
    scratch: ['e1_storeAAAAAAAAAAA_1.png', 'e1_storeAAAAAAAAAAA_3.png'],
  });
});

test('a fleet-sourced training job takes the labels given in review (the fleet wires its review store into training)', { skip: dataSkip('models/squeezenet-fp16'), timeout: 120_000 }, async (t) => {
  const f = await startFleet(t, { training: { defaultBackbone: join(ospreyDataDir(), 'models', 'squeezenet-fp16') } });
  const credential = await f.creds.enrollEdge('cam-r');
  const edge = await connectEdge(t, f.mqttUrl, 'cam-r', credential);
  // 1..3 called scratch, 4..6 called dent by the model; the inspector relabels 3 as dent and calls 5 and 6 false calls.
  const batch = [1, 2, 3, 4, 5, 6].map((seq) => result(seq, { verdict: 'defect', label: seq <= 3 ? 'scratch' : 'dent', model: 'cls@1', ts: Date.now() + seq }));
  await edge.publishState({ line: 'LR', lastSeq: batch.length, ackedSeq: 0 });
  await edge.publishResults(batch);
  assert.equal(await edge.nextAck(), batch.length);
  for (const seq of [1, 2, 3, 4, 5, 6]) {
    const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: { r: seq * 40, g: 0, b: 0 } } }).png().toBuffer();
    const res = await fetch(`${f.httpUrl}/api/results/cam-r/${seq}/image`, { method: 'PUT', body: png, headers: { authorization: `Bearer ${credential}`, 'content-type': 'image/png' } });
    assert.equal(res.status, 201, await res.text());
  }
  const inspector = await f.creds.headers('inspector');
  for (const [seq, body] of [[3, { review: 'relabelled', label: 'dent' }], [5, { review: 'false-call' }], [6, { review: 'false-call' }]] as const) {
    const res = await fetch(`${f.httpUrl}/api/results/cam-r/${seq}/review`, { method: 'PUT', body: JSON.stringify(body), headers: { ...inspector, 'content-type': 'application/json' } });
    assert.equal(res.status, 200, await res.text());
  }
  const posted = await f.api('POST', '/api/training-jobs', { kind: 'classify', model: 'cls-reviewed', source: { type: 'fleet', line: 'LR' } });
  assert.equal(posted.status, 201, JSON.stringify(posted.body));
  // The model's calls would be { scratch: 3, dent: 3 }.
  assert.deepEqual(posted.body.counts, { scratch: 2, dent: 2, good: 2 });
  // Only the layout was under test: the job is not left to train.
  const cancelled = await f.api('POST', `/api/training-jobs/${posted.body.id}/cancel`);
  assert.ok(cancelled.status === 200 || cancelled.status === 409, JSON.stringify(cancelled.body));
});
