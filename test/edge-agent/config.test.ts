import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { artifactOrigins, loadEdgeConfig, parseEdgeConfig, readTrustedKeys } from '../../edge-agent/config.js';
import { generateSigningKeys } from '../../models/artifact-signature.js';
import { isOspreyError } from '../../protocol/errors.js';
import { tempDir } from './fixtures.js';

const minimal = { edgeId: 'press-1', line: 'line-A', dataDir: 'data', model: { dir: 'models/demo' } };

async function writeConfig(dir: string, value: unknown, name = 'edge.json'): Promise<string> {
  const file = path.join(dir, name);
  await writeFile(file, typeof value === 'string' ? value : JSON.stringify(value));
  return file;
}

/** Loads `value` as a config file and returns the one-line OSP_ERR_CONFIG message it fails with. */
async function configError(dir: string, value: unknown): Promise<string> {
  const file = await writeConfig(dir, value);
  try {
    await loadEdgeConfig(file);
  } catch (err) {
    assert.ok(isOspreyError(err, 'OSP_ERR_CONFIG'), `expected OSP_ERR_CONFIG, got ${String(err)}`);
    assert.doesNotMatch(err.message, /\n/, 'one line');
    assert.ok(err.message.includes(file), `names the file: ${err.message}`);
    return err.message;
  }
  assert.fail('config was accepted');
}

test('a minimal config gets every default, and relative paths resolve against the file', async (t) => {
  const dir = await tempDir(t);
  const config = await loadEdgeConfig(await writeConfig(dir, { ...minimal, inputDir: './inbox' }));
  assert.equal(config.edgeId, 'press-1');
  assert.deepEqual(config.cameras, ['cam1']);
  assert.equal(config.dataDir, path.join(dir, 'data'));
  assert.equal(config.inputDir, path.join(dir, 'inbox'));
  assert.equal(config.model.dir, path.join(dir, 'models/demo'));
  assert.deepEqual(config.http, { host: '127.0.0.1', port: 8480, bodyLimitBytes: 32 * 1024 * 1024, maxInFlightBytes: 128 * 1024 * 1024 });
  assert.equal(config.fleet, undefined, 'no fleet: the edge only inspects and stores');
  assert.deepEqual(config.queue, { concurrency: 4, maxDepth: 64, maxBytes: 256 * 1024 * 1024 });
  assert.equal(config.sync.batchSize, 500);
  assert.equal(config.telemetry.intervalMs, 10_000);
  assert.equal(config.maxPixels, 50_000_000);
  assert.deepEqual(config.disk, { minFreeBytes: 256 << 20, resumeFreeBytes: 512 << 20, checkIntervalMs: 5000, alarmHoldMs: 60_000 });
});

test('absolute paths, port 0 and a fleet are kept as given', async (t) => {
  const dir = await tempDir(t);
  const config = await loadEdgeConfig(
    await writeConfig(dir, {
      ...minimal,
      dataDir: '/var/lib/osprey',
      http: { port: 0 },
      fleet: { mqttUrl: 'mqtt://fleet.local:1883' },
      thresholds: { default: 0.4, perLabel: { scratch: 0.2 } },
      monitoring: { window: 10, psiLimit: 0.3 },
      goldenSet: { schedule: '0 6,14,22 * * *' },
    }),
  );
  assert.equal(config.dataDir, '/var/lib/osprey');
  assert.equal(config.http.port, 0);
  assert.equal(config.http.host, '127.0.0.1');
  assert.equal(config.fleet?.mqttUrl, 'mqtt://fleet.local:1883');
  assert.deepEqual(config.thresholds, { default: 0.4, perLabel: { scratch: 0.2 } });
  assert.deepEqual([config.monitoring, config.goldenSet], [{ window: 10, psiLimit: 0.3 }, { schedule: '0 6,14,22 * * *' }]);
});

test('a bad config stops start-up with a one-line message naming the field', async (t) => {
  const dir = await tempDir(t);
  const cases: [unknown, RegExp][] = [
    [{ ...minimal, http: { port: 70000 } }, /^config http\.port: must be <= 65535 /],
    [{ ...minimal, http: { port: 'eighty' } }, /^config http\.port: must be integer/],
    [{ line: 'line-A', dataDir: 'd', model: { dir: 'm' } }, /^config edgeId: is required/],
    [{ ...minimal, edgeId: 'bad/id' }, /^config edgeId: must match pattern/],
    [{ ...minimal, htpp: { port: 1 } }, /^config htpp: is not a known field/],
    [{ ...minimal, cameras: [] }, /^config cameras: must NOT have fewer than 1 items/],
    [{ ...minimal, cameras: ['cam1', ''] }, /^config cameras\[1\]: must NOT have fewer than 1 characters/],
    [{ ...minimal, model: {} }, /^config model\.dir: is required/],
    [{ ...minimal, queue: { concurrency: 0 } }, /^config queue\.concurrency: must be >= 1/],
    [{ ...minimal, fleet: { mqttUrl: 'http://x' } }, /^config fleet\.mqttUrl: must match pattern/],
    [{ ...minimal, thresholds: { default: -1 } }, /^config thresholds\.default: must be >= 0/],
    [{ ...minimal, thresholds: { default: 1.5 } }, /^config thresholds\.default: must be <= 1 /],
    [{ ...minimal, thresholds: { perLabel: { scratch: 2 } } }, /^config thresholds\.perLabel\.scratch: must be <= 1 /],
    [{ ...minimal, logLevel: 'loud' }, /^config logLevel: must be equal to one of the allowed values/],
    [{ ...minimal, disk: { minFreeBytes: 10, resumeFreeBytes: 5 } }, /^config disk\.resumeFreeBytes: must be >= disk\.minFreeBytes \(10\) /],
    [{ ...minimal, monitoring: { window: 1 } }, /^config monitoring\.window: must be >= 5/],
    [{ ...minimal, monitoring: { sharpnes: 1 } }, /^config monitoring\.sharpnes: is not a known field/],
    [{ ...minimal, goldenSet: { schedule: 'every monday' } }, /^config goldenSet\.schedule: "every monday" is not a node-cron expression/],
    [[1, 2], /^config: must be a JSON object/],
    ['{ "edgeId": ', /^config: not valid JSON/],
  ];
  for (const [value, expected] of cases) {
    const message = await configError(dir, value);
    assert.match(message, expected);
  }
});

test('a missing file is OSP_ERR_CONFIG naming the file', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'nope.json');
  await assert.rejects(loadEdgeConfig(file), (err: unknown) => {
    assert.ok(isOspreyError(err, 'OSP_ERR_CONFIG'));
    assert.equal(err.message, `config: cannot read ${file} (ENOENT)`);
    return true;
  });
});

test('trusted keys, artifact origins and plug-ins: defaults, the key set by id, and one-line errors', async (t) => {
  const dir = await tempDir(t);
  const a = generateSigningKeys();
  const b = generateSigningKeys();
  await writeFile(path.join(dir, 'b.pub'), b.publicKeyPem);
  const base = { ...minimal, fleet: { mqttUrl: 'mqtt://fleet.local:1883', httpUrl: 'http://fleet.local:8080/base' } };
  const plain = parseEdgeConfig(base, 'test', dir);
  assert.equal(plain.model.allowPlugins, false, 'plug-ins are off unless the edge says so');
  assert.deepEqual(artifactOrigins(plain), ['http://fleet.local:8080']);
  assert.equal((await readTrustedKeys(plain)).size, 0);

  const config = parseEdgeConfig(
    {
      ...base,
      fleet: {
        ...base.fleet,
        publicKey: a.publicKeyPem,
        trustedKeys: [{ id: 'release-b', publicKeyFile: 'b.pub' }],
        artifactOrigins: ['https://mirror.plant.local:8443'],
      },
    },
    'test',
    dir,
  );
  assert.deepEqual(artifactOrigins(config), ['http://fleet.local:8080', 'https://mirror.plant.local:8443']);
  assert.deepEqual([...(await readTrustedKeys(config)).keys()].sort(), ['fleet', 'release-b']);

  const key = { id: 'k', publicKey: a.publicKeyPem };
  const cases: [unknown, RegExp][] = [
    [{ ...base, fleet: { ...base.fleet, trustedKeys: [{ id: 'k' }] } }, /^config fleet\.trustedKeys\[0\]: set publicKey or publicKeyFile \(one of the two\)/],
    [{ ...base, fleet: { ...base.fleet, trustedKeys: [key, key] } }, /^config fleet\.trustedKeys\[1\]\.id: "k" is listed twice/],
    [{ ...base, fleet: { ...base.fleet, publicKey: a.publicKeyPem, trustedKeys: [{ ...key, id: 'fleet' }] } }, /^config fleet\.trustedKeys: the id "fleet" is fleet\.publicKey's/],
    [{ ...base, fleet: { ...base.fleet, trustedKeys: [{ id: 'bad id', publicKey: a.publicKeyPem }] } }, /^config fleet\.trustedKeys\[0\]\.id: must match pattern/],
    [{ ...base, fleet: { ...base.fleet, trustedKeys: [{ id: 'k', publicKey: 'not a key' }] } }, /^config fleet\.trustedKeys\[0\]\.publicKey \(.*edge\.json\): not a PEM public key/],
    [{ ...base, fleet: { ...base.fleet, artifactOrigins: ['ftp://elsewhere'] } }, /^config fleet\.artifactOrigins\[0\]: must match pattern/],
    [{ ...base, model: { dir: 'm', allowPlugins: 'yes' } }, /^config model\.allowPlugins: must be boolean/],
  ];
  for (const [value, expected] of cases) assert.match(await configError(dir, value), expected);
  await assert.rejects(
    readTrustedKeys(parseEdgeConfig({ ...base, fleet: { ...base.fleet, trustedKeys: [{ id: 'k', publicKeyFile: 'missing.pub' }] } }, 'test', dir)),
    /OspreyError: config fleet\.trustedKeys\[0\]\.publicKeyFile: cannot read .*missing\.pub \(ENOENT\)$/,
  );
});
