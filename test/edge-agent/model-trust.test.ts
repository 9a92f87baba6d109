/**
 * Issue 14, "Models are code", at the edge: an artifact is fetched only when a trusted key
 * (by id) signed its name, version, sha256, size and plug-in hash, its URL is on one of the
 * edge's fleet origins, and — for a package with a plug-in — the edge allows plug-ins. Real
 * model manager, real packages run by onnxruntime, real HTTP artifact servers on port 0.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test, type TestContext } from 'node:test';
import { createPublicKey } from 'node:crypto';
import { generateSigningKeys, signArtifact } from '../../models/artifact-signature.js';
import { writeModelPackage, type ManifestDraft } from '../../models/authoring.js';
import { archiveDirectory } from '../../models/package-archive.js';
import { loadModelPackage } from '../../models/runtime.js';
import type { ModelRunner } from '../../models/types.js';
import type { EventMessage, ModelArtifact } from '../../protocol/messages.js';
import { createModelManager, type ModelManager } from '../../edge-agent/model-manager.js';
import { startArtifactServer, sha256Of, type ArtifactServer } from './artifact-server.js';
import { testLogger } from './fixtures.js';
import { usePackages, type TestPackage } from './model-packages.js';
import { tinyAnomalyModel } from '../helpers/publisher.js';

const pkgs = usePackages();
const keyA = { id: 'publisher-a', ...generateSigningKeys() };
const keyB = { id: 'publisher-b', ...generateSigningKeys() };
type Key = typeof keyA;

/** Where the plug-in of the plug-in package writes when it is imported. */
const root = mkdtemp(path.join(tmpdir(), 'osprey-trust-'));
after(async () => rm(await root, { recursive: true, force: true }));

/** A package whose plug-in leaves a file behind the moment it is imported (its side effect). */
async function pluginPackage(): Promise<TestPackage & { sideEffect: string }> {
  const dir = path.join(await root, 'plugin-pkg');
  const sideEffect = path.join(await root, 'plugin-ran');
  const source = `import { writeFileSync } from 'node:fs';
writeFileSync(${JSON.stringify(sideEffect)}, 'the plug-in ran');
export default function (outputs) { return { score: outputs.score.data[0] }; }
`;
  const draft = {
    schemaVersion: 1,
    name: 'line-anomaly',
    version: '7.0.0-plugin',
    task: 'anomaly',
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch' },
    outputs: { anomaly: { format: 'plugin' } },
    postprocess: { module: 'score.mjs' },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  } as ManifestDraft;
  await writeModelPackage(dir, draft, tinyAnomalyModel(), { plugin: Buffer.from(source) });
  const archive = await archiveDirectory(dir);
  return { name: 'line-anomaly', version: '7.0.0-plugin', id: 'line-anomaly@7.0.0-plugin', dir, archive, sha256: sha256Of(archive), sideEffect };
}

/** The desired-state artifact of `pkg` served by `server`, signed by `key`. */
function signed(server: ArtifactServer, pkg: TestPackage, key: Key, pluginSha256?: string): ModelArtifact {
  const url = server.add(pkg.archive, pkg.sha256);
  const identity = { name: pkg.name, version: pkg.version, sha256: pkg.sha256, size: pkg.archive.length };
  const sig = signArtifact({ ...identity, pluginSha256: pluginSha256 ?? null }, key.privateKeyPem);
  return { ...identity, url, signature: sig, keyId: key.id, ...(pluginSha256 ? { pluginSha256 } : {}) };
}

interface Edge {
  manager: ModelManager;
  events: EventMessage['kind'][];
  failures: { code: string; reason: string }[];
  active: () => string;
  /** Applies a desired state naming `a` as active and waits until the manager is done with it. */
  desire(a: ModelArtifact): Promise<void>;
}

let configVersion = 0;

/** A model manager (an edge's model half) trusting `keys`, downloading only from `origins`. */
async function edge(t: TestContext, keys: Key[], origins: string[], opts: { allowPlugins?: boolean } = {}): Promise<Edge> {
  const p = await pkgs;
  const dataDir = await mkdtemp(path.join(tmpdir(), 'osprey-trust-edge-'));
  let current: ModelRunner = await loadModelPackage(p.localDir);
  const events: EventMessage['kind'][] = [];
  const failures: { code: string; reason: string }[] = [];
  const manager = createModelManager({
    dataDir,
    slots: {
      setModel: (r) => {
        const before = current;
        current = r;
        return before;
      },
      setShadow: () => undefined,
      setThresholds: () => undefined,
    },
    localModel: current,
    trustedKeys: new Map(keys.map((k) => [k.id, createPublicKey(k.publicKeyPem)])),
    ...(opts.allowPlugins !== undefined ? { allowPlugins: opts.allowPlugins } : {}),
    download: { origins, retryBaseMs: 5, retryMaxMs: 20 },
    logger: testLogger(),
    onEvent: (kind, _level, _message, data) => {
      events.push(kind);
      if (kind === 'model-failed') failures.push({ code: String(data.code), reason: String(data.reason) });
    },
  });
  t.after(async () => {
    await manager.close();
    await current.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await manager.start();
  return {
    manager,
    events,
    failures,
    active: () => current.id,
    async desire(a) {
      manager.applyDesired({ v: 1, id: `d${++configVersion}`, ts: Date.now(), edgeId: 'edge-test', active: a, shadow: null, config: {}, configVersion });
      await manager.idle();
    },
  };
}

async function server(t: TestContext): Promise<ArtifactServer> {
  const s = await startArtifactServer();
  t.after(() => s.close());
  return s;
}

test('edge: a package signed by a key the edge does not trust is refused with an event; nothing is fetched', { timeout: 60_000 }, async (t) => {
  const p = await pkgs;
  const fleet = await server(t);
  const e = await edge(t, [keyA], [fleet.url]);
  const local = e.active();
  await e.desire(signed(fleet, p.v2, keyB));
  assert.deepEqual(e.failures.map((f) => f.code), ['OSP_ERR_MODEL_SIGNATURE']);
  assert.match(e.failures[0]!.reason, /signed by key "publisher-b", which is not in fleet\.trustedKeys \(trusted: publisher-a\)/);
  assert.equal(fleet.requests.length, 0, 'not a byte fetched');
  assert.equal(e.active(), local, 'the edge keeps its model');
});

test('edge: a correctly signed artifact on another server is refused with an event; that server gets no request', { timeout: 60_000 }, async (t) => {
  const p = await pkgs;
  const fleet = await server(t);
  const elsewhere = await server(t);
  const e = await edge(t, [keyA], [fleet.url]);
  const local = e.active();
  await e.desire(signed(elsewhere, p.v2, keyA));
  assert.deepEqual(e.failures.map((f) => f.code), ['OSP_ERR_MODEL_ORIGIN']);
  assert.match(e.failures[0]!.reason, /artifact URL origin http:\/\/127\.0\.0\.1:\d+ is not a fleet origin .*; nothing fetched/);
  assert.equal(elsewhere.requests.length, 0, 'the other server received zero requests');
  assert.equal(e.active(), local);
  // An artifact on the fleet's origin is taken (the refused one stays refused while desired names it).
  await e.desire(signed(fleet, p.v3, keyA));
  assert.equal(e.active(), p.v3.id);
});

test('edge: a size larger than the signed one is refused before a byte is fetched; a server sending more than the signed size is cut at it', { timeout: 60_000 }, async (t) => {
  const p = await pkgs;
  const fleet = await server(t);
  const e = await edge(t, [keyA], [fleet.url]);
  const honest = signed(fleet, p.v2, keyA);
  // An attacker who can rewrite the desired state (not the signature) asks for 1000× the bytes.
  await e.desire({ ...honest, size: honest.size * 1000 });
  assert.deepEqual(e.failures.map((f) => f.code), ['OSP_ERR_MODEL_SIGNATURE']);
  assert.equal(fleet.requests.length, 0);

  // The right signature but a server that sends more bytes than signed: never more than the signed size written.
  const padded = Buffer.concat([p.v3.archive, Buffer.alloc(p.v3.archive.length * 4, 1)]);
  const url = fleet.add(padded, p.v3.sha256);
  const a3 = { ...signed(fleet, p.v3, keyA), url };
  fleet.add(padded, p.v3.sha256); // signed() re-added the real bytes: serve the padded ones
  await e.desire(a3);
  assert.deepEqual(e.failures.map((f) => f.code), ['OSP_ERR_MODEL_SIGNATURE', 'OSP_ERR_ARTIFACT_CHECKSUM']);
  assert.match(e.failures[1]!.reason, new RegExp(`artifact is larger than the ${p.v3.archive.length} bytes expected`));
  assert.notEqual(e.active(), p.v3.id, 'never activated');
});

test('edge: a signed package with a plug-in is not run on an edge without model.allowPlugins; with it, it is', { timeout: 60_000 }, async (t) => {
  const pkg = await pluginPackage();
  const pluginSha = sha256Of(readFileSync(path.join(pkg.dir, 'score.mjs')));
  const fleet = await server(t);
  const strict = await edge(t, [keyA], [fleet.url]);
  const local = strict.active();
  await strict.desire(signed(fleet, pkg, keyA, pluginSha));
  assert.deepEqual(strict.failures.map((f) => f.code), ['OSP_ERR_MODEL_PLUGIN']);
  assert.match(strict.failures[0]!.reason, /has a plug-in \(code\) and this edge does not allow plug-ins \(model\.allowPlugins\); current model kept/);
  assert.equal(existsSync(pkg.sideEffect), false, 'the plug-in never ran');
  assert.equal(fleet.requests.length, 0, 'not even downloaded');
  assert.equal(strict.active(), local);
  // Defence in depth: the loader itself refuses it too.
  await assert.rejects(loadModelPackage(pkg.dir, { allowPlugins: false }), /plug-ins are not allowed here \(model\.allowPlugins\)/);
  assert.equal(existsSync(pkg.sideEffect), false);

  // The same package on an edge that allows plug-ins runs (so the side effect above is a real witness).
  const open = await edge(t, [keyA], [fleet.url], { allowPlugins: true });
  await open.desire(signed(fleet, pkg, keyA, pluginSha));
  assert.equal(open.active(), pkg.id, JSON.stringify(open.failures));
  assert.equal(existsSync(pkg.sideEffect), true);
});

test('edge: publisher keys rotate without re-enrolling: A, then A+B, then B only (A-signed refused)', { timeout: 60_000 }, async (t) => {
  const p = await pkgs;
  const fleet = await server(t);
  // 1. Edges trust A: A-signed v2 runs; B-signed v3 is refused.
  const e1 = await edge(t, [keyA], [fleet.url]);
  await e1.desire(signed(fleet, p.v2, keyA));
  assert.equal(e1.active(), p.v2.id);
  await e1.desire(signed(fleet, p.v3, keyB));
  assert.deepEqual(e1.failures.map((f) => f.code), ['OSP_ERR_MODEL_SIGNATURE']);
  // 2. B added to the edges' trusted keys: B-signed v3 runs.
  const e2 = await edge(t, [keyA, keyB], [fleet.url]);
  await e2.desire(signed(fleet, p.v3, keyB));
  assert.equal(e2.active(), p.v3.id, JSON.stringify(e2.failures));
  // 3. A removed: B-signed packages still run, A-signed ones are refused.
  const e3 = await edge(t, [keyB], [fleet.url]);
  await e3.desire(signed(fleet, p.v2, keyA));
  assert.deepEqual(e3.failures.map((f) => f.code), ['OSP_ERR_MODEL_SIGNATURE']);
  await e3.desire(signed(fleet, p.v3, keyB));
  assert.equal(e3.active(), p.v3.id);
});
