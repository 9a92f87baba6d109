import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadFleetConfig, resolveFleetConfig } from '../../fleet-manager/config.js';
import { isOspreyError } from '../../protocol/errors.js';
import { tempDir } from './helpers.js';

test('config: an empty config gets every default', () => {
  assert.deepEqual(resolveFleetConfig({}, '/srv/osprey'), {
    dataDir: '/srv/osprey/data',
    http: { host: '0.0.0.0', port: 8080 },
    mqtt: { host: '0.0.0.0', port: 1883, maxPacketBytes: 4 * 1024 * 1024, maxRetainedMessages: 100_000, maxRetainedBytes: 256 * 1024 * 1024 },
    brokerUrl: null,
    tls: null,
    brokerPasswordFile: null,
    logLevel: 'info',
    publicUrl: null,
    registry: {
      maxPackageBytes: 512 * 1024 * 1024,
      maxBytes: 20 * 1024 ** 3,
      requirePublisherSignature: true,
      allowFleetPacked: false,
      publisherKeys: [],
      checkTimeoutMs: 60_000,
      checkMaxRssBytes: 4 * 1024 ** 3,
    },
    images: { maxImageBytes: 64 * 1024 * 1024, maxBytes: 100 * 1024 ** 3, maxInFlightBytes: 256 * 1024 * 1024 },
    instances: { shareGroup: 'osprey-fleet', leaderRetryMs: 2000, advertiseUrl: null },
    rollouts: { tickMs: 1000 },
    convergence: { graceMs: 60_000 },
    alerts: { offlineAfterMs: 300_000, backlogWindowMs: 600_000, backlogMinGrowth: 100, mismatchAfterMs: 600_000, checkMs: 5000, maxAlerts: 10_000 },
    webhooks: { timeoutMs: 10_000, retryBaseMs: 5000, retryMaxMs: 900_000, maxAgeMs: 86_400_000, maxOutbox: 10_000 },
    storage: {},
    shifts: [{ name: 'Early', start: '06:00' }, { name: 'Late', start: '14:00' }, { name: 'Night', start: '22:00' }],
    auth: { enabled: true, sessionTtlMs: 12 * 3_600_000 },
    training: { defaultBackbone: null, maxArchiveBytes: 2 * 1024 ** 3, maxImages: 20_000, maxScannedResults: 1_000_000, maxBackboneBytes: 512 * 1024 * 1024, timeoutMs: 30 * 60_000, maxRssBytes: 4 * 1024 ** 3 },
  });
  // training.defaultBackbone: a name as is, a path against the config file's folder.
  assert.equal(resolveFleetConfig({ training: { defaultBackbone: 'squeezenet-fp16' } }, '/x').training.defaultBackbone, 'squeezenet-fp16');
  assert.equal(resolveFleetConfig({ training: { defaultBackbone: 'models/sq/model.onnx' } }, '/x').training.defaultBackbone, '/x/models/sq/model.onnx');
  const partial = resolveFleetConfig({ http: { port: 0 }, brokerUrl: 'mqtt://broker:1883', logLevel: 'warn' }, '/x');
  assert.deepEqual(partial.http, { host: '0.0.0.0', port: 0 });
  assert.equal(partial.brokerUrl, 'mqtt://broker:1883');
});

test('config: a bad value is OSP_ERR_CONFIG naming the field', () => {
  const cases: [unknown, RegExp][] = [
    [{ http: { port: 70000 } }, /\/http\/port must be <= 65535/],
    [{ mqtt: { port: 'x' } }, /\/mqtt\/port must be integer/],
    [{ htpp: {} }, /additional properties \(htpp\)/],
    [{ logLevel: 'loud' }, /\/logLevel must be equal to one of the allowed values/],
    [{ brokerUrl: 'localhost:1883' }, /\/brokerUrl must match pattern/],
    [{ publicUrl: 'fleet:8080' }, /\/publicUrl must match pattern/],
    [{ rollouts: { tickMs: 1 } }, /\/rollouts\/tickMs must be >= 10/],
    [{ convergence: { graceMs: 5 } }, /\/convergence\/graceMs must be >= 100/],
    [{ alerts: { offlineAfterMs: 5 } }, /\/alerts\/offlineAfterMs must be >= 1000/],
    [{ webhooks: { retryMaxMs: 'soon' } }, /\/webhooks\/retryMaxMs must be integer/],
    [{ storage: { url: 'mysql://h/db' } }, /\/storage\/url must match pattern/],
    [{ auth: { sessionTtlMs: 1000 } }, /\/auth\/sessionTtlMs must be >= 60000/],
    [{ auth: { enabled: 'no' } }, /\/auth\/enabled must be boolean/],
    [{ images: { maxImageBytes: 4096, maxInFlightBytes: 2048 } }, /images\.maxInFlightBytes \(2048\) must be at least images\.maxImageBytes \(4096\)$/],
    [[], /must be object/],
  ];
  for (const [input, message] of cases) {
    assert.throws(
      () => resolveFleetConfig(input),
      (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && message.test(err.message),
      JSON.stringify(input),
    );
  }
});

test('config: images.maxInFlightBytes defaults to 256 MiB, or maxImageBytes when that is larger', () => {
  assert.equal(resolveFleetConfig({ images: { maxImageBytes: 512 * 1024 * 1024 } }).images.maxInFlightBytes, 512 * 1024 * 1024);
  assert.equal(resolveFleetConfig({ images: { maxInFlightBytes: 64 * 1024 * 1024 } }).images.maxInFlightBytes, 64 * 1024 * 1024);
});

test('config file: dataDir is relative to the file; unreadable or non-JSON files are named', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'fleet.json');
  await writeFile(file, JSON.stringify({ dataDir: 'state', http: { port: 9000 } }));
  const config = await loadFleetConfig(file);
  assert.equal(config.dataDir, join(dir, 'state'));
  assert.equal(config.http.port, 9000);

  await writeFile(file, '{ "http": ');
  await assert.rejects(loadFleetConfig(file), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && err.message.includes(`fleet config ${file} is not JSON`));
  await writeFile(file, JSON.stringify({ http: { port: -1 } }));
  await assert.rejects(loadFleetConfig(file), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && err.message === `fleet config ${file}: /http/port must be >= 0`);
  await assert.rejects(loadFleetConfig(join(dir, 'missing.json')), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && /cannot be read/.test(err.message));
});

test('config: command-line overrides win over the file and are checked with it', async (t) => {
  const dir = await tempDir(t);
  const file = join(dir, 'fleet.json');
  await writeFile(file, JSON.stringify({ http: { host: '127.0.0.1', port: 9000 }, logLevel: 'debug' }));
  const config = await loadFleetConfig(file, { httpPort: 0, mqttPort: 1884, brokerUrl: 'mqtt://b:1883', dataDir: 'here' });
  assert.deepEqual(config, {
    dataDir: join(process.cwd(), 'here'),
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '0.0.0.0', port: 1884, maxPacketBytes: 4 * 1024 * 1024, maxRetainedMessages: 100_000, maxRetainedBytes: 256 * 1024 * 1024 },
    brokerUrl: 'mqtt://b:1883',
    tls: null,
    brokerPasswordFile: null,
    logLevel: 'debug',
    publicUrl: null,
    registry: {
      maxPackageBytes: 512 * 1024 * 1024,
      maxBytes: 20 * 1024 ** 3,
      requirePublisherSignature: true,
      allowFleetPacked: false,
      publisherKeys: [],
      checkTimeoutMs: 60_000,
      checkMaxRssBytes: 4 * 1024 ** 3,
    },
    images: { maxImageBytes: 64 * 1024 * 1024, maxBytes: 100 * 1024 ** 3, maxInFlightBytes: 256 * 1024 * 1024 },
    instances: { shareGroup: 'osprey-fleet', leaderRetryMs: 2000, advertiseUrl: null },
    rollouts: { tickMs: 1000 },
    convergence: { graceMs: 60_000 },
    alerts: { offlineAfterMs: 300_000, backlogWindowMs: 600_000, backlogMinGrowth: 100, mismatchAfterMs: 600_000, checkMs: 5000, maxAlerts: 10_000 },
    webhooks: { timeoutMs: 10_000, retryBaseMs: 5000, retryMaxMs: 900_000, maxAgeMs: 86_400_000, maxOutbox: 10_000 },
    storage: {},
    shifts: [{ name: 'Early', start: '06:00' }, { name: 'Late', start: '14:00' }, { name: 'Night', start: '22:00' }],
    auth: { enabled: true, sessionTtlMs: 12 * 3_600_000 },
    training: { defaultBackbone: null, maxArchiveBytes: 2 * 1024 ** 3, maxImages: 20_000, maxScannedResults: 1_000_000, maxBackboneBytes: 512 * 1024 * 1024, timeoutMs: 30 * 60_000, maxRssBytes: 4 * 1024 ** 3 },
  });
  assert.equal((await loadFleetConfig(undefined, { httpPort: 1 })).http.port, 1);
  await assert.rejects(loadFleetConfig(undefined, { brokerUrl: 'nope' }), (err) => isOspreyError(err, 'OSP_ERR_CONFIG') && /\/brokerUrl/.test(err.message));
  // A resolved config can be resolved again unchanged (the CLI passes one to createFleetManager).
  assert.deepEqual(resolveFleetConfig({ ...config }), config);
});
