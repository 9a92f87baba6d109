/**
 * Who did what, on a real fleet: config changes are audited with the layer before and after,
 * a model version says who uploaded it and a rollout who started and steered it (also in the
 * audit log), and a database made before issue 14 gains the columns in place.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { openSqliteControlStore } from '../../fleet-manager/control-store.js';
import { register, startFleet, type TestFleet } from './control-helpers.js';
import { tempDir } from './helpers.js';

async function call(f: TestFleet, headers: Record<string, string>, method: string, path: string, body?: unknown) {
  const res = await fetch(`${f.httpUrl}${path}`, {
    method,
    headers: { ...headers, ...(body !== undefined && { 'content-type': 'application/json' }) },
    ...(body !== undefined && { body: JSON.stringify(body) }),
  });
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- checked by the asserts
  return { status: res.status, body: (await res.json()) as any };
}

test('a config change is audited with who, from where, and the layer before and after', async (t) => {
  const f = await startFleet(t);
  const operator = await f.creds.headers('operator');
  assert.equal((await call(f, operator, 'PUT', '/api/config', { thresholds: { default: 0.4 } })).status, 200);
  assert.equal((await call(f, operator, 'PUT', '/api/config', { thresholds: { default: 0.6 } })).status, 200);
  assert.equal((await call(f, operator, 'PUT', '/api/lines/L1/config', { thresholds: { default: 0.7 } })).status, 200);
  assert.equal((await call(f, operator, 'DELETE', '/api/lines/L1/config')).status, 200);
  // A refused change leaves no row.
  assert.equal((await call(f, operator, 'DELETE', '/api/lines/L2/config')).status, 404);

  const rows = (await f.api('GET', '/api/audit?action=config.')).body.entries as Record<string, unknown>[];
  assert.deepEqual(
    rows.map((r) => [r.action, r.target, r.actor, r.source, r.outcome, 'before' in r ? r.before : 'absent', 'after' in r ? r.after : 'absent']),
    [
      ['config.delete', 'config:line:L1', 'user:test-operator', '127.0.0.1', '200', { thresholds: { default: 0.7 } }, null],
      ['config.put', 'config:line:L1', 'user:test-operator', '127.0.0.1', '200', null, { thresholds: { default: 0.7 } }],
      ['config.put', 'config:fleet', 'user:test-operator', '127.0.0.1', '200', { thresholds: { default: 0.4 } }, { thresholds: { default: 0.6 } }],
      ['config.put', 'config:fleet', 'user:test-operator', '127.0.0.1', '200', null, { thresholds: { default: 0.4 } }],
    ],
  );
});

test('a model version says who uploaded it; a rollout who started it and who pulled each lever', async (t) => {
  const f = await startFleet(t);
  const releaser = await f.creds.headers('release-manager');
  const operator = await f.creds.headers('operator');
  const sha = await register(f.httpUrl, 'inspect', '2', releaser);

  const version = await f.api('GET', '/api/models/inspect/versions/2');
  assert.equal(version.body.uploadedBy, 'user:test-release-manager');
  const upload = (await f.api('GET', '/api/audit?action=model.upload')).body.entries;
  assert.deepEqual(upload.map((r: Record<string, unknown>) => [r.actor, r.target, (r.after as { sha256: string }).sha256]), [['user:test-release-manager', 'model:inspect@2', sha]]);

  const created = await call(f, releaser, 'POST', '/api/rollouts', { model: 'inspect', version: '2', target: { edges: ['e1'] }, stages: [{ mode: 'shadow' }] });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = created.body.id as string;
  assert.equal(created.body.createdBy, 'user:test-release-manager');
  assert.equal((await call(f, operator, 'POST', `/api/rollouts/${id}/pause`)).status, 200);

  const view = await f.api('GET', `/api/rollouts/${id}`);
  assert.equal(view.body.createdBy, 'user:test-release-manager');
  assert.deepEqual(view.body.actions.map((a: { action: string; by: string }) => [a.action, a.by]), [['pause', 'user:test-operator']]);
  assert.equal((await f.api('GET', '/api/rollouts')).body.rollouts[0].createdBy, 'user:test-release-manager');

  const rows = (await f.api('GET', '/api/audit?action=rollout.')).body.entries as Record<string, unknown>[];
  assert.deepEqual(
    rows.map((r) => [r.action, r.actor, r.target, r.before ?? null, (r.after as { status?: string }).status ?? null]),
    [
      ['rollout.pause', 'user:test-operator', `rollout:${id}`, { status: 'running', stageIndex: 0 }, 'paused'],
      ['rollout.create', 'user:test-release-manager', `rollout:${id}`, null, null],
    ],
  );
  assert.equal((rows[1]!.after as { model: string }).model, 'inspect@2');
});

test('a fleet database from before issue 14 gains uploaded_by and created_by in place; old rows read as null', async (t) => {
  const file = join(await tempDir(t), 'fleet.db');
  const logger = pino({ level: 'silent' });
  await openSqliteStore({ file, logger }).close();
  const old = new Database(file);
  old.exec(`
    CREATE TABLE model_versions (name TEXT NOT NULL, version TEXT NOT NULL, sha256 TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
      signature TEXT NOT NULL, manifest TEXT NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (name, version));
    CREATE TABLE rollouts (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at INTEGER NOT NULL, doc TEXT NOT NULL);`);
  old.prepare('INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?)').run('m', '1', 'a'.repeat(64), 10, 'sig', '{"task":"anomaly"}', 1);
  old.prepare('INSERT INTO rollouts VALUES (?, ?, ?, ?)').run('ro-old', 'completed', 1, JSON.stringify({ id: 'ro-old', status: 'completed', createdAt: 1 }));
  old.close();

  const control = openSqliteControlStore({ file, logger });
  t.after(() => control.close());
  assert.equal((await control.getVersion('m', '1'))!.uploadedBy, null);
  assert.equal((await control.getRollout('ro-old'))!.createdBy, undefined);
  const rec = { ...(await control.getVersion('m', '1'))!, version: '2', sha256: 'b'.repeat(64), uploadedBy: 'user:alice' };
  assert.equal(await control.insertVersion(rec), true);
  assert.equal((await control.getVersion('m', '2'))!.uploadedBy, 'user:alice');
  const check = new Database(file, { readonly: true });
  t.after(() => check.close());
  const columns = (table: string) => (check.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);
  assert.ok(columns('model_versions').includes('uploaded_by'));
  assert.ok(columns('rollouts').includes('created_by'));
});
