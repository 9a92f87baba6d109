/**
 * `osprey user add|passwd|list|disable|enable|token`: people of a fleet, managed on the fleet host
 * through its database (the identity store), for the first admin's colleagues, a forgotten
 * password, or a CI token. Passwords are read without echo (or from stdin with --password-stdin)
 * and never printed; every change is audited with the actor `cli`.
 */
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { OspreyError } from '../protocol/errors.js';
import { FLEET_DEFAULTS } from '../fleet-manager/config.js';
import { ROLES, isRole, type Role } from '../fleet-manager/auth/roles.js';
import type { AuditEntry, IdentityStore } from '../fleet-manager/identity-store.js';
import { CLI_ACTOR, openFleetIdentity } from './fleet-init.js';
import { intOption, parse } from './args.js';

export const userHelp = `Usage: osprey user <command> [--data DIR] ...

  osprey user add NAME --role ROLE [--password-stdin]
      A new user; the password is asked for (not echoed) or read from stdin.
      Roles: ${ROLES.join(', ')}.
  osprey user passwd NAME [--password-stdin]
      Sets a new password and ends the user's sessions.
  osprey user list
      One line per user: name, role, enabled or disabled.
  osprey user disable NAME      (and: osprey user enable NAME)
      A disabled user cannot sign in; their sessions end and their API tokens stop working.
  osprey user token NAME --name TOKEN [--role ROLE] [--days N]
      An API token for scripts and CI (role at most the user's; expires after N days, default 90).
      The token is printed once and stored only as a hash.

  --data DIR   the fleet's data directory (default: ${FLEET_DEFAULTS.dataDir})`;

const DATA = { data: { type: 'string' } } as const;

/** Reads a password: all of stdin (one trailing newline dropped), or a prompt without echo. */
async function readPassword(fromStdin: boolean, prompt: string): Promise<string> {
  if (fromStdin) {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  }
  if (!process.stdin.isTTY) throw new OspreyError('OSP_ERR_USAGE', 'no terminal to ask for the password; pass --password-stdin and pipe it in');
  const ask = async (question: string) => {
    process.stderr.write(question);
    // Typed characters go nowhere: the terminal shows no echo of the password.
    const muted = new Writable({ write: (_chunk, _enc, done) => done() });
    const rl = createInterface({ input: process.stdin, output: muted, terminal: true });
    try {
      return await new Promise<string>((done) => rl.question('', done));
    } finally {
      rl.close();
      process.stderr.write('\n');
    }
  };
  const first = await ask(prompt);
  if ((await ask('again: ')) !== first) throw new OspreyError('OSP_ERR_USAGE', 'the two passwords differ');
  return first;
}

function oneName(positionals: string[], verb: string): string {
  if (positionals.length !== 1) throw new OspreyError('OSP_ERR_USAGE', `osprey user ${verb} needs exactly one user name; try "osprey user --help"`);
  return positionals[0]!;
}

function roleOption(value: string | undefined): Role | undefined {
  if (value === undefined) return undefined;
  if (!isRole(value)) throw new OspreyError('OSP_ERR_USAGE', `--role must be one of ${ROLES.join('|')}, got "${value}"`);
  return value;
}

/** Opens the fleet's identity store, runs `fn`, writes its audit row, closes. */
async function withIdentity(dataDir: string | undefined, fn: (identity: IdentityStore) => Promise<Omit<AuditEntry, 'actor' | 'source' | 'outcome'> | null>): Promise<number> {
  const identity = await openFleetIdentity(resolve(dataDir ?? FLEET_DEFAULTS.dataDir));
  try {
    const audit = await fn(identity);
    if (audit) await identity.appendAudit({ ...audit, actor: CLI_ACTOR, source: CLI_ACTOR, outcome: 'ok' });
    return 0;
  } finally {
    await identity.close();
  }
}

async function add(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...DATA, role: { type: 'string' }, 'password-stdin': { type: 'boolean' } }, true);
  if (values.help) return (console.log(userHelp), 0);
  const username = oneName(positionals, 'add');
  const role = roleOption(values.role);
  if (!role) throw new OspreyError('OSP_ERR_USAGE', `osprey user add needs --role (${ROLES.join('|')})`);
  return withIdentity(values.data, async (identity) => {
    if (await identity.getUserByName(username)) throw new OspreyError('OSP_ERR_CONFLICT', `user ${username} exists`);
    const password = await readPassword(values['password-stdin'] === true, `password for ${username}: `);
    const user = await identity.addUser({ username, password, role });
    console.log(`user ${user.username} added (${user.role})`);
    return { action: 'user.add', target: `user:${user.username}`, after: { role: user.role } };
  });
}

async function passwd(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...DATA, 'password-stdin': { type: 'boolean' } }, true);
  if (values.help) return (console.log(userHelp), 0);
  const username = oneName(positionals, 'passwd');
  return withIdentity(values.data, async (identity) => {
    if (!(await identity.getUserByName(username))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no user ${username}`);
    const password = await readPassword(values['password-stdin'] === true, `new password for ${username}: `);
    await identity.setPassword(username, password);
    console.log(`password of ${username} changed; their sessions ended`);
    return { action: 'user.password', target: `user:${username}`, after: { sessionsEnded: true } };
  });
}

async function list(argv: string[]): Promise<number> {
  const { values } = parse(argv, DATA);
  if (values.help) return (console.log(userHelp), 0);
  return withIdentity(values.data, async (identity) => {
    const users = await identity.listUsers();
    const width = Math.max(4, ...users.map((u) => u.username.length));
    for (const u of users) console.log(`${u.username.padEnd(width)}  ${u.role.padEnd(15)}  ${u.disabled ? 'disabled' : 'enabled'}`);
    if (users.length === 0) console.log('no users; create the first admin with "osprey fleet init"');
    return null;
  });
}

function setDisabled(disabled: boolean) {
  const verb = disabled ? 'disable' : 'enable';
  return async (argv: string[]): Promise<number> => {
    const { values, positionals } = parse(argv, DATA, true);
    if (values.help) return (console.log(userHelp), 0);
    const username = oneName(positionals, verb);
    return withIdentity(values.data, async (identity) => {
      const before = await identity.getUserByName(username);
      if (!before) throw new OspreyError('OSP_ERR_NOT_FOUND', `no user ${username}`);
      const user = await identity.setDisabled(username, disabled);
      console.log(`user ${username} ${verb}d`);
      return { action: 'user.update', target: `user:${username}`, before: { disabled: before.disabled }, after: { disabled: user.disabled } };
    });
  };
}

async function token(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { ...DATA, name: { type: 'string' }, role: { type: 'string' }, days: { type: 'string' } }, true);
  if (values.help) return (console.log(userHelp), 0);
  const username = oneName(positionals, 'token');
  if (!values.name) throw new OspreyError('OSP_ERR_USAGE', 'osprey user token needs --name (what the token is for, e.g. ci)');
  const days = intOption('days', values.days, 90, 1, 3650);
  const role = roleOption(values.role);
  return withIdentity(values.data, async (identity) => {
    const user = await identity.getUserByName(username);
    if (!user) throw new OspreyError('OSP_ERR_NOT_FOUND', `no user ${username}`);
    const expiresAt = Date.now() + days * 86_400_000;
    const created = await identity.createApiToken({ userId: user.id, name: values.name!, role: role ?? user.role, expiresAt });
    // The one time the token is shown: on stdout alone, so `$(osprey user token …)` captures it.
    console.log(created.token);
    console.error(`API token ${created.record.id} for ${username} (${created.record.role}), expires ${new Date(expiresAt).toISOString()}; it is not shown again`);
    return { action: 'token.create', target: `token:${created.record.id}`, after: { owner: username, name: created.record.name, role: created.record.role, expiresAt } };
  });
}

export const userCommands = { add, passwd, list, disable: setDisabled(true), enable: setDisabled(false), token };
