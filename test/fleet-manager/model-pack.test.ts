/**
 * The pack wizard's API over real HTTP on a real fleet: a bare ONNX file (a real tiny model)
 * proposed, smoke-tested on a real image in a bounded child, and registered — refused unsigned by
 * default, accepted with the publisher's signature of that very package or with
 * registry.allowFleetPacked; permissions, bounds and one-line errors.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'node:test';
import { generatePartImage } from '../../models/fixtures.js';
import { packModel } from '../../models/pack.js';
import { readPackageDirectory, SIGNATURE_FILE } from '../../models/package-signature.js';
import { tinyAnomalyModel } from '../../models/tiny-model.js';
import { signedFiles } from '../helpers/publisher.js';
import { startFleet, type TestFleet } from './control-helpers.js';
import { tempDir } from './helpers.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are checked field by field
type Json = Record<string, any>;

const declarations = { name: 'tiny', version: '1.0.0', task: 'anomaly', normalization: { min: 0, max: 2, threshold: 1 }, color: 'gray' };

async function post(f: TestFleet, path: string, body: unknown, auth: Record<string, string>, type = 'application/json'): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${f.httpUrl}${path}`, { method: 'POST', headers: { ...auth, 'content-type': type }, body: type === 'application/json' ? JSON.stringify(body) : (body as Uint8Array) });
  return { status: res.status, body: (await res.json()) as Json };
}

const propose = (f: TestFleet, auth: Record<string, string>, bytes: Uint8Array = tinyAnomalyModel()) => post(f, '/api/models/propose?file=tiny-anomaly.onnx', bytes, auth, 'application/octet-stream');

test('pack wizard: propose (graph and proposal), smoke test on a real image, unsigned registration refused by default, a publisher signature of the very package accepted', async (t) => {
  const f = await startFleet(t);
  const rm = await f.creds.headers('release-manager');

  const p = await propose(f, rm);
  assert.equal(p.status, 201, JSON.stringify(p.body));
  assert.match(p.body.draft, /^d-[0-9a-f]{16}$/);
  assert.deepEqual(p.body.inputs, [{ name: 'image', dtype: 'float32', shape: [1, 1, 8, 8] }]);
  assert.deepEqual(p.body.outputs, [{ name: 'score', dtype: 'float32', shape: [1] }]);
  assert.equal(p.body.proposedManifest, null);
  assert.match(p.body.proposalError, /cannot tell the task of this model/);

  // Smoke test with the edited declarations on a real (generated) part image, run in a child.
  const image = (await generatePartImage({ seed: 3, defect: null, format: 'png' })).toString('base64');
  const smoke = await post(f, `/api/models/propose/${p.body.draft}/smoke-test`, { declarations, image }, rm);
  assert.equal(smoke.status, 200, JSON.stringify(smoke.body));
  assert.equal(smoke.body.manifest.task, 'anomaly');
  assert.equal(smoke.body.manifest.input.width, 8);
  assert.ok(['ok', 'defect'].includes(smoke.body.inspection.verdict));
  assert.equal(typeof smoke.body.inspection.score, 'number');
  assert.ok(smoke.body.inspection.timings.totalMs >= 0);

  // A sample that is not an image: the child's one line.
  const bad = await post(f, `/api/models/propose/${p.body.draft}/smoke-test`, { declarations, image: Buffer.from('not an image at all').toString('base64') }, rm);
  assert.equal(bad.status, 422, JSON.stringify(bad.body));
  assert.equal(bad.body.error, 'OSP_ERR_IMAGE_DECODE');
  assert.doesNotMatch(bad.body.message, /\n/);

  // Unsigned, default config: refused, naming the sha256 to sign; nothing registered.
  const refused = await post(f, `/api/models/propose/${p.body.draft}/register`, { declarations }, rm);
  assert.equal(refused.status, 422, JSON.stringify(refused.body));
  assert.equal(refused.body.error, 'OSP_ERR_MODEL_SIGNATURE');
  assert.match(refused.body.message, /^tiny@1\.0\.0 \(sha256 [0-9a-f]{64}\) is not signed/);
  assert.equal((await f.api('GET', '/api/models/tiny/versions')).status, 404);

  // The publisher packs the same ONNX with the same declarations (osprey model pack), signs it,
  // and hands the signature.json over: the fleet's package is that very package.
  const dir = await tempDir(t);
  const onnx = join(dir, 'tiny-anomaly.onnx');
  await writeFile(onnx, tinyAnomalyModel());
  await packModel(onnx, { ...(declarations as Json), out: join(dir, 'pkg') });
  const signature = JSON.parse(Buffer.from(signedFiles(await readPackageDirectory(join(dir, 'pkg'))).get(SIGNATURE_FILE)!).toString('utf8')) as Json;
  const reg = await post(f, `/api/models/propose/${p.body.draft}/register`, { declarations, signature }, rm);
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  assert.deepEqual([reg.body.name, reg.body.version, reg.body.keyId, reg.body.uploadedBy, reg.body.trainedBy], ['tiny', '1.0.0', 'test-publisher', 'user:test-release-manager', null]);
  assert.equal(reg.body.sha256, /sha256 ([0-9a-f]{64})/.exec(refused.body.message)![1]);
  // The draft is used up.
  const again = await post(f, `/api/models/propose/${p.body.draft}/register`, { declarations, signature }, rm);
  assert.equal(again.status, 404);
  assert.match(again.body.message, /^no draft d-[0-9a-f]{16}: upload the ONNX file again/);

  const audit = await f.api('GET', '/api/audit?limit=20');
  assert.ok(audit.body.entries.some((e: Json) => e.action === 'model.pack' && e.target === 'model:tiny@1.0.0'), JSON.stringify(audit.body.entries.map((e: Json) => e.action)));
});

test('pack wizard: with registry.allowFleetPacked an unsigned package is signed with the fleet key and says so', async (t) => {
  const f = await startFleet(t, { registry: { allowFleetPacked: true } as never });
  const rm = await f.creds.headers('release-manager');
  const p = await propose(f, rm);
  const reg = await post(f, `/api/models/propose/${p.body.draft}/register`, { declarations }, rm);
  assert.equal(reg.status, 201, JSON.stringify(reg.body));
  assert.equal(reg.body.keyId, 'fleet');
  assert.equal(reg.body.trainedBy, `fleet-pack:${p.body.sha256.slice(0, 16)}`);
  // The ordinary upload route is unchanged: an unsigned package is still refused there.
  assert.equal((await f.api('GET', '/api/models/tiny/versions')).body.versions.length, 1);
});

test('pack wizard: permissions, bounds and one-line errors', async (t) => {
  const f = await startFleet(t, { registry: { maxPackageBytes: 64 * 1024 } as never });
  const rm = await f.creds.headers('release-manager');
  const viewer = await f.creds.headers('viewer');

  assert.equal((await propose(f, viewer)).status, 403);
  const notOnnx = await propose(f, rm, Buffer.from('these bytes are not a model'));
  assert.equal(notOnnx.status, 422, JSON.stringify(notOnnx.body));
  assert.match(notOnnx.body.message, /^tiny-anomaly\.onnx: not an ONNX model/);
  const big = await propose(f, rm, tinyAnomalyModel({ padBytes: 100 * 1024 }));
  assert.equal(big.status, 413);
  assert.match(big.body.message, /exceeds registry\.maxPackageBytes \(65536 bytes\)/);
  const json = await post(f, '/api/models/propose', {}, rm);
  assert.equal(json.status, 415, JSON.stringify(json.body));

  const p = await propose(f, rm);
  assert.equal(p.status, 201);
  const image = (await readFile(new URL(import.meta.url))).toString('base64');
  assert.equal((await post(f, `/api/models/propose/${p.body.draft}/smoke-test`, { declarations, image }, viewer)).status, 403);
  const extra = await post(f, `/api/models/propose/${p.body.draft}/smoke-test`, { declarations: { ...declarations, postprocess: 'x.js' }, image }, rm);
  assert.equal(extra.status, 400);
  assert.match(extra.body.message, /declarations/);
  const contradicts = await post(f, `/api/models/propose/${p.body.draft}/smoke-test`, { declarations: { ...declarations, size: { width: 16, height: 16 } }, image }, rm);
  assert.equal(contradicts.status, 422, JSON.stringify(contradicts.body));
  assert.doesNotMatch(contradicts.body.message, /\n/);
  const huge = await post(f, `/api/models/propose/${p.body.draft}/smoke-test`, { declarations, image: 'A'.repeat(12 * 1024 * 1024) }, rm);
  assert.equal(huge.status, 413, JSON.stringify(huge.body).slice(0, 300));
  assert.doesNotMatch(huge.body.message, /\n/);
  assert.equal((await post(f, '/api/models/propose/d-0123456789abcdef/register', { declarations }, rm)).status, 404);
  assert.equal((await post(f, '/api/models/propose/nonsense/register', { declarations }, rm)).status, 400);
});
