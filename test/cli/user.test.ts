/**
 * `osprey fleet init` and `osprey user …`, run as the real command in child processes against a
 * temp data directory; the results are checked through the fleet's identity store.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { makeTempDir } from '../helpers/temp-dir.js';
import { OSPREY_BIN } from '../helpers/osprey-process.js';

/** Runs `osprey ARGS` with `input` on stdin (closed either way; no terminal). */
async function osprey(args: string[], input = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [OSPREY_BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  child.stdin.end(input);
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}

test('osprey fleet init makes the data dir and one admin with a printed password, once; osprey user manages people and tokens', { timeout: 60_000 }, async (t) => {
  const data = join(await makeTempDir(t, 'osprey-cli-user-'), 'fleet-data');
  const init = await osprey(['fleet', 'init', '--data', data, '--admin', 'root']);
  assert.equal(init.code, 0, init.stderr);
  const password = /^Password: +(\S+)$/m.exec(init.stdout)![1]!;
  assert.ok(password.length >= 20);
  assert.match(init.stdout, new RegExp(`osprey fleet start --data ${data}`));
  assert.ok(existsSync(join(data, 'fleet.db')));

  const again = await osprey(['fleet', 'init', '--data', data]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /has users already/);
  assert.ok(!again.stdout.includes('Password'));

  const add = await osprey(['user', 'add', 'bob', '--role', 'operator', '--password-stdin', '--data', data], 'bobs long password\n');
  assert.equal(add.code, 0, add.stderr);
  const noTty = await osprey(['user', 'add', 'carol', '--role', 'viewer', '--data', data]);
  assert.equal(noTty.code, 1);
  assert.match(noTty.stderr, /--password-stdin/);
  const badRole = await osprey(['user', 'add', 'carol', '--role', 'boss', '--password-stdin', '--data', data], 'carols long password');
  assert.match(badRole.stderr, /--role must be one of admin\|release-manager\|operator\|inspector\|viewer/);
  const short = await osprey(['user', 'add', 'carol', '--role', 'viewer', '--password-stdin', '--data', data], 'short');
  assert.equal(short.code, 1);
  assert.match(short.stderr, /at least 12 characters/);

  const token = await osprey(['user', 'token', 'bob', '--name', 'ci', '--days', '7', '--data', data]);
  assert.equal(token.code, 0, token.stderr);
  const bearer = token.stdout.trim();
  assert.match(bearer, /^ospt_[A-Za-z0-9_-]{12}\.[A-Za-z0-9_-]{43}$/);
  assert.match(token.stderr, /not shown again/);
  const wider = await osprey(['user', 'token', 'bob', '--name', 'x', '--role', 'admin', '--data', data]);
  assert.equal(wider.code, 1);
  assert.match(wider.stderr, /cannot make a token with the role admin/);

  const passwd = await osprey(['user', 'passwd', 'bob', '--password-stdin', '--data', data], 'bobs newer password');
  assert.equal(passwd.code, 0, passwd.stderr);

  const identity = openSqliteIdentityStore({ file: join(data, 'fleet.db'), logger: pino({ level: 'silent' }) });
  t.after(() => identity.close());
  assert.equal((await identity.verifyPassword('root', password))?.role, 'admin');
  assert.equal(await identity.verifyPassword('bob', 'bobs long password'), null);
  assert.equal((await identity.verifyPassword('bob', 'bobs newer password'))?.role, 'operator');
  const resolved = await identity.resolveApiToken(bearer);
  assert.deepEqual([resolved?.user.username, resolved?.token.role, resolved?.token.name], ['bob', 'operator', 'ci']);

  const disable = await osprey(['user', 'disable', 'bob', '--data', data]);
  assert.equal(disable.code, 0, disable.stderr);
  assert.equal(await identity.resolveApiToken(bearer), null, 'a disabled user\'s token stops working');
  const list = await osprey(['user', 'list', '--data', data]);
  assert.deepEqual(list.stdout.trim().split('\n').map((l) => l.split(/\s+/)), [['bob', 'operator', 'disabled'], ['root', 'admin', 'enabled']]);

  // Every change is in the audit log as done by the CLI, and no secret is.
  const audit = await identity.queryAudit({});
  assert.deepEqual(audit.map((r) => [r.actor, r.source, r.action, r.target]).reverse(), [
    ['cli', 'cli', 'user.add', 'user:root'],
    ['cli', 'cli', 'user.add', 'user:bob'],
    ['cli', 'cli', 'token.create', `token:${resolved!.token.id}`],
    ['cli', 'cli', 'user.password', 'user:bob'],
    ['cli', 'cli', 'user.update', 'user:bob'],
  ]);
  const text = JSON.stringify(audit);
  for (const secret of [password, 'bobs newer password', bearer.split('.')[1]!]) assert.ok(!text.includes(secret));

  const missing = await osprey(['user', 'list', '--data', join(data, 'nope')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no fleet database at .*nope\/fleet\.db/);
  assert.ok(!existsSync(join(data, 'nope')), 'a mistyped --data creates nothing');
});
