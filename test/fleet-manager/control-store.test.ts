/**
 * The control-plane store on its own (model registry, configuration layers, desired states, pins
 * and rollouts), the same cases on a real SQLite file and a real PostgreSQL database.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { openSqliteControlStore, type ControlStore, type ModelVersionRecord } from '../../fleet-manager/control-store.js';
import { CONTROL_PG_MIGRATIONS, pgControlStore } from '../../fleet-manager/pg/control-store-pg.js';
import type { RolloutDoc, RolloutStatus } from '../../fleet-manager/rollout-spec.js';
import { openSqliteStore } from '../../fleet-manager/store.js';
import type { Manifest } from '../../protocol/manifest.js';
import { pgTestPool } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';
import { tempDir } from './helpers.js';

const silent = pino({ level: 'silent' });

async function openSqlite(t: TestContext): Promise<ControlStore> {
  const file = join(await tempDir(t), 'fleet.db');
  // The control store opens the fleet database FleetStore created.
  const fleet = openSqliteStore({ file, logger: silent });
  const store = openSqliteControlStore({ file, logger: silent });
  t.after(async () => {
    await store.close();
    await fleet.close();
  });
  return store;
}

async function openPostgres(t: TestContext): Promise<ControlStore> {
  const store = pgControlStore(await pgTestPool(t, CONTROL_PG_MIGRATIONS), { logger: silent });
  t.after(() => store.close());
  return store;
}

function version(name: string, v: string, createdAt: number, over: Partial<ModelVersionRecord> = {}): ModelVersionRecord {
  return {
    name,
    version: v,
    sha256: `${name}-${v}`.padEnd(64, '0'),
    size: 5_000_000_000 + createdAt,
    signature: `sig-${name}-${v}`,
    keyId: 'fleet',
    // Stored and read back whole: any JSON object of the manifest's shape.
    manifest: { name, version: v, task: 'anomaly', labels: ['ok', 'défaut ✓'] } as unknown as Manifest,
    createdAt,
    uploadedBy: 'user:alice',
    trainedBy: null,
    ...over,
  };
}

function rollout(id: string, status: RolloutStatus, createdAt: number): RolloutDoc {
  return {
    id,
    model: 'm',
    version: '1.0.0',
    sha256: 'a'.repeat(64),
    spec: { stages: [] } as unknown as RolloutDoc['spec'],
    status,
    reason: null,
    stageIndex: 0,
    createdAt,
    createdBy: 'user:alice',
    updatedAt: createdAt,
    finishedAt: null,
    stages: [],
    members: {},
  };
}

for (const backend of ['sqlite', 'postgres'] as const) {
  const skip = backend === 'postgres' ? postgresSkip() : false;
  const open = backend === 'sqlite' ? openSqlite : openPostgres;

  test(`control store (${backend}): versions are immutable, found by name or sha256, listed per model with the newest`, { skip }, async (t) => {
    const store = await open(t);
    const T = 1_765_000_000_000;
    assert.equal(await store.insertVersion(version('b-model', '1.0.0', T)), true);
    assert.equal(await store.insertVersion(version('b-model', '1.1.0', T + 10, { keyId: 'publisher-1', trainedBy: 'training-job:7' })), true);
    assert.equal(await store.insertVersion(version('a-model', '0.1.0', T + 5)), true);
    // Same (name, version) with another artifact, or the same artifact under another name: refused.
    assert.equal(await store.insertVersion(version('b-model', '1.0.0', T + 20, { sha256: 'f'.repeat(64) })), false);
    assert.equal(await store.insertVersion(version('c-model', '9.9.9', T + 20, { sha256: version('a-model', '0.1.0', 0).sha256 })), false);

    const got = await store.getVersion('b-model', '1.1.0');
    assert.deepEqual(got, version('b-model', '1.1.0', T + 10, { keyId: 'publisher-1', trainedBy: 'training-job:7' }));
    assert.deepEqual(await store.getVersionBySha(version('a-model', '0.1.0', 0).sha256), version('a-model', '0.1.0', T + 5));
    assert.equal(await store.getVersion('b-model', '2.0.0'), null);
    assert.equal(await store.getVersionBySha('0'.repeat(64)), null);

    assert.deepEqual(await store.listModels(), [
      { name: 'a-model', versions: 1, latestVersion: '0.1.0', updatedAt: T + 5 },
      { name: 'b-model', versions: 2, latestVersion: '1.1.0', updatedAt: T + 10 },
    ]);
    assert.deepEqual((await store.listVersions('b-model')).map((v) => v.version), ['1.0.0', '1.1.0']);
    assert.deepEqual(await store.listVersions('nothing'), []);

    assert.deepEqual((await store.listFleetSignedVersions()).map((v) => `${v.name}@${v.version}`), ['b-model@1.0.0', 'a-model@0.1.0']);
    await store.setVersionSignature(version('b-model', '1.0.0', 0).sha256, 'new-sig', 'publisher-2');
    const resigned = (await store.getVersion('b-model', '1.0.0'))!;
    assert.deepEqual([resigned.signature, resigned.keyId], ['new-sig', 'publisher-2']);
    assert.deepEqual((await store.listFleetSignedVersions()).map((v) => v.name), ['a-model']);
  });

  test(`control store (${backend}): a configuration layer counts its puts; deleting it says whether it existed`, { skip }, async (t) => {
    const store = await open(t);
    assert.equal(await store.getConfigLayer('line', 'L1'), null);
    assert.deepEqual(await store.putConfigLayer('line', 'L1', { thresholds: { default: 0.5 } }, 1000), { settings: { thresholds: { default: 0.5 } }, version: 1, updatedAt: 1000 });
    assert.deepEqual(await store.putConfigLayer('line', 'L1', { thresholds: { default: 0.7, perLabel: { scratch: 0.4 } }, sampling: { keepGoodEvery: 100 } }, 2000), {
      settings: { thresholds: { default: 0.7, perLabel: { scratch: 0.4 } }, sampling: { keepGoodEvery: 100 } },
      version: 2,
      updatedAt: 2000,
    });
    await store.putConfigLayer('edge', 'L1', { thresholds: { default: 0.1 } }, 3000);
    assert.deepEqual(await store.getConfigLayer('line', 'L1'), { settings: { thresholds: { default: 0.7, perLabel: { scratch: 0.4 } }, sampling: { keepGoodEvery: 100 } }, version: 2, updatedAt: 2000 });
    assert.equal((await store.getConfigLayer('edge', 'L1'))?.version, 1, 'scopes are apart');
    assert.equal(await store.deleteConfigLayer('line', 'L1'), true);
    assert.equal(await store.deleteConfigLayer('line', 'L1'), false);
    assert.equal(await store.getConfigLayer('line', 'L1'), null);
    assert.equal((await store.putConfigLayer('line', 'L1', {}, 4000)).version, 1, 'a layer made again starts over');
  });

  test(`control store (${backend}): desired states and pins are upserted per edge; a batch with an edge twice keeps the last`, { skip }, async (t) => {
    const store = await open(t);
    const desired = (edgeId: string, n: number) => ({
      edgeId,
      body: { config: { thresholds: { default: n / 10 } }, configVersion: n } as never,
      configJson: JSON.stringify({ thresholds: { default: n / 10 } }),
      updatedAt: 1000 + n,
    });
    await store.putDesired([]);
    await store.putDesired([desired('e2', 1), desired('e1', 1)]);
    await store.putDesired([desired('e1', 2), desired('e3', 1), desired('e1', 3)]);
    assert.deepEqual(await store.getDesired('e1'), desired('e1', 3));
    assert.equal(await store.getDesired('nope'), null);
    assert.deepEqual((await store.listDesired()).map((d) => [d.edgeId, d.updatedAt]), [['e1', 1003], ['e2', 1001], ['e3', 1001]]);

    assert.equal(await store.getPin('e1'), null);
    await store.setPins([]);
    await store.setPins([{ edgeId: 'e2', active: 'a'.repeat(64), previous: null, updatedAt: 1 }, { edgeId: 'e1', active: null, previous: null, updatedAt: 1 }]);
    await store.setPins([{ edgeId: 'e2', active: 'b'.repeat(64), previous: 'a'.repeat(64), updatedAt: 2 }]);
    assert.deepEqual(await store.getPin('e2'), { edgeId: 'e2', active: 'b'.repeat(64), previous: 'a'.repeat(64), updatedAt: 2 });
    assert.deepEqual((await store.listPins()).map((p) => p.edgeId), ['e1', 'e2']);
  });

  test(`control store (${backend}): a rollout is saved with the pins it changed; listed newest first, or the active ones oldest first`, { skip }, async (t) => {
    const store = await open(t);
    const pin = { edgeId: 'e1', active: 'c'.repeat(64), previous: null, updatedAt: 10 };
    await store.saveRollout(rollout('r1', 'running', 100), [pin]);
    await store.saveRollout(rollout('r2', 'completed', 200));
    await store.saveRollout(rollout('r3', 'paused', 300));
    assert.deepEqual(await store.getPin('e1'), pin);
    assert.deepEqual(await store.getRollout('r1'), rollout('r1', 'running', 100));
    assert.equal(await store.getRollout('r9'), null);
    // Saving again replaces the document (its status too) and keeps it once.
    const done = { ...rollout('r1', 'rolled-back', 100), reason: 'gate failed', finishedAt: 150 };
    await store.saveRollout(done);
    assert.deepEqual(await store.getRollout('r1'), done);
    assert.deepEqual((await store.listRollouts()).map((r) => r.id), ['r3', 'r2', 'r1']);
    assert.deepEqual((await store.listRollouts({ limit: 2 })).map((r) => r.id), ['r3', 'r2']);
    assert.deepEqual((await store.listRollouts({ active: true })).map((r) => r.id), ['r3']);
  });
}
