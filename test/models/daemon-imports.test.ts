/**
 * The daemons load only the runtime part of models/ (issue 13): importing the edge agent, the
 * fleet manager and the `osprey edge|fleet start` commands must not load onnx-proto or
 * protobufjs, which only authoring uses. Each case runs a fresh node with loader hooks that log
 * every module it loads; the authoring entry, run the same way, must show both packages, so the
 * check cannot pass because the log missed them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const dist = new URL('../../', import.meta.url);
const hooks = new URL('../helpers/module-load-log.js', import.meta.url).href;
const AUTHORING_ONLY = [/\/node_modules\/onnx-proto\//, /\/node_modules\/protobufjs\//];

/** Every module a fresh node process loads when it imports `modules` (paths under dist/). */
async function modulesLoadedBy(modules: string[]): Promise<string[]> {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-imports-'));
  try {
    const file = join(dir, 'loaded.txt');
    const urls = modules.map((m) => new URL(m, dist).href);
    const script = urls.map((u) => `await import(${JSON.stringify(u)});`).join('\n');
    await run(process.execPath, ['--import', hooks, '--input-type=module', '-e', script], {
      env: { ...process.env, OSPREY_MODULE_LOG: file },
      timeout: 60_000,
    });
    return (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('the edge agent and fleet manager daemons do not load onnx-proto or protobufjs', { timeout: 120_000 }, async () => {
  const loaded = await modulesLoadedBy(['cli/daemons.js', 'edge-agent/edge-agent.js', 'fleet-manager/fleet-manager.js']);
  // The log holds the real graph: the daemons themselves and the CommonJS runtime they use.
  for (const expected of [/\/dist\/edge-agent\/edge-agent\.js$/, /\/dist\/fleet-manager\/fleet-manager\.js$/, /\/dist\/models\/package\.js$/, /\/node_modules\/onnxruntime-node\//, /\/node_modules\/better-sqlite3\//]) {
    assert.ok(loaded.some((m) => expected.test(m)), `expected a module matching ${expected} in ${loaded.length} loaded`);
  }
  for (const banned of AUTHORING_ONLY) {
    const hits = loaded.filter((m) => banned.test(m));
    assert.deepEqual(hits, [], `the daemons loaded ${banned}`);
  }
  assert.ok(!loaded.some((m) => /\/dist\/models\/(authoring|fixtures|onnx-builder|onnx-inspect)\.js$/.test(m)), 'the daemons loaded an authoring or fixtures module');
});

test('the authoring entry does load them (the check sees CommonJS packages)', { timeout: 120_000 }, async () => {
  const loaded = await modulesLoadedBy(['models/authoring.js']);
  for (const pkg of AUTHORING_ONLY) assert.ok(loaded.some((m) => pkg.test(m)), `models/authoring.js: nothing matching ${pkg} in the log`);
});
