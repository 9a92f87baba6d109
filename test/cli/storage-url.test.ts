/**
 * The fleet's CLI on PostgreSQL (issue 18): with $OSPREY_STORAGE_URL, `osprey fleet init` makes the
 * first admin in that database, `osprey user list` reads it, and `osprey fleet start` runs on it,
 * so the admin signs in to a fleet whose data directory holds no fleet.db at all.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { makeTempDir } from '../helpers/temp-dir.js';
import { OSPREY_BIN, startOsprey } from '../helpers/osprey-process.js';
import { pgDatabaseUrl } from '../helpers/pg-database.js';
import { postgresSkip } from '../helpers/postgres.js';

async function osprey(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [OSPREY_BIN, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

test('OSPREY_STORAGE_URL: fleet init, user list and fleet start all use the PostgreSQL database', { skip: postgresSkip(), timeout: 90_000 }, async (t) => {
  const url = await pgDatabaseUrl();
  const env = { OSPREY_STORAGE_URL: url };
  const data = join(await makeTempDir(t, 'osprey-cli-pg-'), 'fleet-data');
  const init = await osprey(['fleet', 'init', '--data', data, '--admin', 'root'], env);
  assert.equal(init.code, 0, init.stderr);
  const password = /^Password: +(\S+)$/m.exec(init.stdout)![1]!;
  assert.equal(existsSync(join(data, 'fleet.db')), false, 'nothing written to SQLite');
  const again = await osprey(['fleet', 'init', '--data', data], env);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /has users already/);
  const list = await osprey(['user', 'list', '--data', data], env);
  assert.equal(list.code, 0, list.stderr);
  assert.match(list.stdout, /root\s+admin/);

  // Several instances on one database must reach each other: a wildcard listen address needs
  // instances.advertiseUrl, and the fleet says so instead of starting.
  const wildcard = await osprey(['fleet', 'start', '--data', data, '--port', '0', '--mqtt-port', '0'], env);
  assert.equal(wildcard.code, 1);
  assert.match(wildcard.stderr, /instances\.advertiseUrl is required with PostgreSQL storage/);
  const config = join(data, '..', 'fleet.json');
  await writeFile(config, JSON.stringify({ http: { host: '127.0.0.1' }, mqtt: { host: '127.0.0.1' } }));
  const fleet = startOsprey(['fleet', 'start', '--config', config, '--data', data, '--port', '0', '--mqtt-port', '0'], env);
  t.after(() => fleet.stop());
  const started = await fleet.waitForLine((l) => l.msg === 'fleet manager started' && typeof l.httpUrl === 'string', 60_000);
  assert.ok(fleet.lines.some((l) => l.msg === 'fleet storage opened' && l.storage === 'postgres'));
  const signIn = await request(`${started.httpUrl as string}/api/auth/sign-in`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'root', password }),
  });
  assert.equal(signIn.statusCode, 200, await signIn.body.text());
  await signIn.body.dump();
  assert.equal(existsSync(join(data, 'fleet.db')), false, 'the fleet made no SQLite database either');
  // The URL is never logged (it may carry a password).
  assert.ok(!fleet.lines.some((l) => JSON.stringify(l).includes(url)));
});
