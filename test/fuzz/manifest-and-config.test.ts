/**
 * Fuzzes the parsers of files that arrive from outside: model manifests (in every uploaded or
 * downloaded package), the edge config and the fleet config. Each either returns a value or
 * throws its one OspreyError code with a one-line message; nothing else, whatever the input.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { loadEdgeConfig, parseEdgeConfig } from '../../edge-agent/config.js';
import { loadFleetConfig, resolveFleetConfig } from '../../fleet-manager/config.js';
import { parseManifest } from '../../models/manifest-check.js';
import { readManifest } from '../../models/package-reader.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { assertBoundedMemory, assertClearError, fuzz, jsonInput, payloadBytes, toBytes } from './arbitraries.js';

const MB = 1024 * 1024;

/** Valid manifests of each task, with the optional parts present so mutations reach them. */
const manifests: Record<string, unknown>[] = [
  {
    schemaVersion: 1, name: 'screws', version: '2.0.0', task: 'detection', description: 'four screws',
    model: { file: 'model.onnx', sha256: 'b'.repeat(64), size: 1024 },
    input: { name: 'images', layout: 'nchw', width: 64, height: 64, dtype: 'float32', color: 'rgb', resize: 'letterbox', padValue: 114, scale: 0.00392156862745098, mean: [0, 0, 0], std: [1, 1, 1] },
    outputs: { detection: { format: 'yolov8', output: 'output0', iou: 0.5, confidence: 0.3, maxDetections: 100, expectedCounts: { screw: { min: 4, max: 4 } } } },
    labels: ['screw', 'scratch'], defectLabels: ['scratch'], thresholds: { default: 0.5, perLabel: { scratch: 0.4 } }, metadata: { framework: 'ultralytics' },
  },
  {
    schemaVersion: 1, name: 'part', version: '1.0.0', task: 'anomaly',
    model: { file: 'model.onnx', sha256: 'a'.repeat(64), size: 10 },
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch' },
    outputs: { anomaly: { format: 'raw', score: 'score', map: 'map', normalization: { min: 0, max: 2, threshold: 1 } } },
    labels: [], defectLabels: ['anomaly'], thresholds: { default: 0.5 },
  },
  {
    schemaVersion: 1, name: 'grade', version: '3.1.0', task: 'classification',
    model: { file: 'model.onnx', sha256: 'c'.repeat(64) },
    input: { name: 'x', layout: 'nhwc', width: 32, height: 32, dtype: 'uint8', color: 'rgb', resize: 'center-crop', cropFraction: 0.9 },
    outputs: { classification: { output: 'probs', activation: 'softmax', topK: 2 } },
    labels: ['good', 'bad'], defectLabels: ['bad'], thresholds: { default: 0.5 },
  },
];

test('parseManifest returns a manifest or throws OSP_ERR_MODEL_MANIFEST in one line', async () => {
  for (const m of manifests) parseManifest(structuredClone(m));
  await assertBoundedMemory(64 * MB, 'manifests', () =>
    fuzz(
      'parseManifest',
      fc.property(fc.oneof(...manifests.map(jsonInput)), (value) => {
        try {
          parseManifest(value);
        } catch (err) {
          assertClearError(err, ['OSP_ERR_MODEL_MANIFEST'], 'parseManifest');
        }
      }),
      5,
    ),
  );
});

const pem = () => generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString();
const edgeConfig = {
  edgeId: 'press-1', line: 'line-1', cameras: ['cam1', 'cam2'], dataDir: 'data', inputDir: 'in',
  hotFolder: { settleMs: 100 }, http: { host: '127.0.0.1', port: 0, bodyLimitBytes: 1 << 20, maxInFlightBytes: 1 << 22 },
  fleet: {
    mqttUrl: 'mqtts://fleet.local:8883', httpUrl: 'https://fleet.local:8443', publicKey: pem(), maxPacketBytes: 1 << 20, credentialFile: 'edge.credential', caFile: 'ca.pem',
    trustedKeys: [{ id: 'publisher-1', publicKey: pem() }, { id: 'publisher-2', publicKeyFile: 'keys/p2.pem' }], artifactOrigins: ['https://mirror.local:9443'],
  },
  model: { dir: 'model', cacheVersions: 3, allowPlugins: false }, thresholds: { default: 0.5, perLabel: { dent: 0.3 } },
  queue: { concurrency: 2 }, sync: { batchSize: 100 }, retention: { maxRows: 10 }, images: { maxBytes: 1 << 20, sampling: { keepGoodEvery: 10 } },
  disk: { minFreeBytes: 1, resumeFreeBytes: 2 }, telemetry: { intervalMs: 1000 }, maxPixels: 1 << 24, logLevel: 'info',
};

test('parseEdgeConfig returns a config or throws OSP_ERR_CONFIG in one line', async () => {
  parseEdgeConfig(structuredClone(edgeConfig), 'fuzz', '/tmp');
  await assertBoundedMemory(64 * MB, 'edge config', () =>
    fuzz(
      'parseEdgeConfig',
      fc.property(jsonInput(edgeConfig), (value) => {
        try {
          const c = parseEdgeConfig(value, 'fuzz', '/tmp');
          assert.equal(typeof c.edgeId, 'string');
        } catch (err) {
          assertClearError(err, ['OSP_ERR_CONFIG'], 'parseEdgeConfig');
        }
      }),
      5,
    ),
  );
});

const fleetConfig = {
  dataDir: 'data', http: { host: '0.0.0.0', port: 8080 }, mqtt: { host: '0.0.0.0', port: 1883, maxPacketBytes: 1 << 20, maxRetainedMessages: 10, maxRetainedBytes: 1 << 20 },
  logLevel: 'info', publicUrl: 'http://fleet.local:8080/', registry: { maxPackageBytes: 1 << 20, maxBytes: 1 << 30 },
  images: { maxImageBytes: 1 << 20, maxBytes: 1 << 30, maxInFlightBytes: 1 << 22 }, rollouts: { tickMs: 100 }, convergence: { graceMs: 1000 },
};

test('resolveFleetConfig returns a config or throws OSP_ERR_CONFIG in one line', async () => {
  resolveFleetConfig(structuredClone(fleetConfig), '/tmp');
  await assertBoundedMemory(64 * MB, 'fleet config', () =>
    fuzz(
      'resolveFleetConfig',
      fc.property(fc.oneof(jsonInput(fleetConfig), jsonInput({ ...fleetConfig, publicUrl: null, brokerUrl: 'mqtts://b:8883' })), (value) => {
        try {
          resolveFleetConfig(value, '/tmp');
        } catch (err) {
          assertClearError(err, ['OSP_ERR_CONFIG'], 'resolveFleetConfig');
        }
      }),
      5,
    ),
  );
});

test('regression: config and manifest errors naming a hostile field stay one line and bounded (found by fuzzing)', () => {
  const long = 'x'.repeat(5000);
  const throwsClear = (fn: () => unknown, code: 'OSP_ERR_CONFIG' | 'OSP_ERR_MODEL_MANIFEST', what: string) => {
    try {
      fn();
    } catch (err) {
      return assertClearError(err, [code], what);
    }
    assert.fail(`${what}: accepted`);
  };
  const m = manifests[0]!;
  throwsClear(() => parseManifest({ ...structuredClone(m), [long]: 1 }), 'OSP_ERR_MODEL_MANIFEST', 'manifest: long unknown field');
  throwsClear(() => parseManifest({ ...structuredClone(m), defectLabels: ['a\nb'] }), 'OSP_ERR_MODEL_MANIFEST', 'manifest: label with a line break');
  throwsClear(() => parseEdgeConfig({ ...structuredClone(edgeConfig), '\r\n': 1 }, 'fuzz', '/tmp'), 'OSP_ERR_CONFIG', 'edge config: field named by a line break');
  throwsClear(() => parseEdgeConfig({ ...structuredClone(edgeConfig), [long]: 1 }, 'fuzz', '/tmp'), 'OSP_ERR_CONFIG', 'edge config: long unknown field');
  throwsClear(() => resolveFleetConfig({ ...structuredClone(fleetConfig), [long]: 1 }, '/tmp'), 'OSP_ERR_CONFIG', 'fleet config: long unknown field');
  throwsClear(() => resolveFleetConfig({ http: { 'a\nb': 1 } }, '/tmp'), 'OSP_ERR_CONFIG', 'fleet config: field named by a line break');
});

test('regression: a manifest or an edge config nested 10 000 deep is refused with its code, not a stack overflow (found while fuzzing)', () => {
  const n = 10_000;
  const deep = JSON.parse('['.repeat(n) + ']'.repeat(n)) as unknown;
  const plugin = structuredClone(manifests[1]!) as Record<string, any>;
  plugin.outputs = { anomaly: { format: 'plugin' } };
  plugin.postprocess = { module: 'post.mjs', sha256: 'd'.repeat(64), options: { x: [1] } };
  parseManifest(structuredClone(plugin));
  plugin.postprocess.options = { x: deep };
  for (const [what, fn, code] of [
    ['manifest with deep plug-in options', () => parseManifest(plugin), 'OSP_ERR_MODEL_MANIFEST'],
    ['edge config with a deep field', () => parseEdgeConfig({ ...structuredClone(edgeConfig), thresholds: deep }, 'fuzz', '/tmp'), 'OSP_ERR_CONFIG'],
  ] as const) {
    try {
      fn();
      assert.fail(`${what}: accepted`);
    } catch (err) {
      assertClearError(err, [code], what);
    }
  }
});

test('config files and manifest.json as text: any bytes load or fail with the loader code in one line', async (t) => {
  const dir = await makeTempDir(t, 'osprey-fuzz-files-');
  const loaders = [
    { what: 'edge config file', file: join(dir, 'edge.json'), load: (f: string) => loadEdgeConfig(f), code: 'OSP_ERR_CONFIG', valid: edgeConfig },
    { what: 'fleet config file', file: join(dir, 'fleet.json'), load: (f: string) => loadFleetConfig(f), code: 'OSP_ERR_CONFIG', valid: fleetConfig },
    { what: 'manifest.json', file: join(dir, 'manifest.json'), load: () => readManifest(dir), code: 'OSP_ERR_MODEL_MANIFEST', valid: manifests[0] },
  ] as const;
  const cases = fc.constantFrom(...loaders).chain((l) => fc.tuple(fc.constant(l), payloadBytes(l.valid)));
  await fuzz(
    'config and manifest files',
    fc.asyncProperty(cases, async ([l, text]) => {
      await writeFile(l.file, toBytes(text));
      try {
        await l.load(l.file);
      } catch (err) {
        assertClearError(err, [l.code], l.what);
      }
    }),
    1,
  );
  // Regression (found by fuzzing): JSON.parse's message quotes the text, line breaks and all.
  for (const l of loaders) {
    await writeFile(l.file, '{"a":\n\nx}');
    await assert.rejects(l.load(l.file), (err) => {
      assertClearError(err, [l.code], `${l.what} with line breaks in bad JSON`);
      return true;
    });
  }
});
