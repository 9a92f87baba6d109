/**
 * The fleet's backbone registry at start (issue 15): with OSPREY_DATA set and no backbone yet,
 * `osprey fleet` and `osprey demo` (both createFleetManager) register the shared SqueezeNet,
 * once, copied into the fleet's data dir by sha256; a configured default that is neither a
 * backbone nor a file is a clear config error. Real SQLite, real files.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import test, { type TestContext } from 'node:test';
import { pino } from 'pino';
import { openSqliteBackboneStore } from '../../fleet-manager/backbone-store.js';
import { createBackbones } from '../../fleet-manager/backbones.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { makeTempDir } from '../helpers/temp-dir.js';

async function open(t: TestContext) {
  const dir = await makeTempDir(t, 'osprey-backbones-');
  const store = openSqliteBackboneStore(join(dir, 'fleet.db'));
  t.after(() => store.close());
  return { dir, backbones: createBackbones({ store, dataDir: dir, logger: pino({ level: 'silent' }) }) };
}

test('with OSPREY_DATA and no backbone, the SqueezeNet is registered once and is the default', { skip: dataSkip('models/squeezenet-fp16') }, async (t) => {
  const { dir, backbones } = await open(t);
  const data = ospreyDataDir();
  assert.equal(await backbones.ensureDefault(null, data), null);
  assert.equal(await backbones.ensureDefault(null, data), null);
  const list = await backbones.list();
  assert.deepEqual(list.map((b) => [b.name, b.uploadedBy]), [['squeezenet-fp16', 'fleet']]);
  const bytes = await readFile(join(data, 'models', 'squeezenet-fp16', 'model.onnx'));
  assert.equal(list[0]!.sha256, createHash('sha256').update(bytes).digest('hex'));
  const { file } = await backbones.resolve('squeezenet-fp16');
  assert.equal(file, join(dir, 'backbones', list[0]!.sha256.slice(0, 2), list[0]!.sha256));
  assert.deepEqual(await readFile(file), bytes);
  assert.equal(await backbones.defaultName(null), 'squeezenet-fp16');
  // A configured name wins; a configured path is registered under its folder's name.
  assert.equal(await backbones.ensureDefault(join(data, 'models', 'squeezenet-fp16'), undefined), 'squeezenet-fp16');
});

test('no OSPREY_DATA and nothing configured: no backbone, no default; a configured default that does not exist is a config error', async (t) => {
  const { backbones } = await open(t);
  assert.equal(await backbones.ensureDefault(null, undefined), null);
  assert.deepEqual(await backbones.list(), []);
  assert.equal(await backbones.defaultName(null), null);
  await assert.rejects(backbones.ensureDefault('/nowhere/backbone.onnx', undefined), { code: 'OSP_ERR_CONFIG', message: /^training\.defaultBackbone \/nowhere\/backbone\.onnx is neither a backbone in the fleet nor a file$/ });
  await assert.rejects(backbones.resolve('missing'), { code: 'OSP_ERR_NOT_FOUND' });
});
