/**
 * `osprey fleet init`: the fleet's data directory and its first admin, whose generated password
 * is printed once. Refuses when the fleet has users already (then: `osprey user add`).
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { OspreyError } from '../protocol/errors.js';
import { FLEET_DEFAULTS, STORAGE_URL_ENV, storageUrlFromEnv } from '../fleet-manager/config.js';
import { openStorage } from '../fleet-manager/storage.js';
import { openSqliteStore } from '../fleet-manager/store.js';
import { openSqliteIdentityStore, type IdentityStore } from '../fleet-manager/identity-store.js';
import { parse } from './args.js';
import { tlsInitCommand } from './fleet-tls.js';

export const fleetInitHelp = `Usage: osprey fleet init [--data DIR] [--admin NAME] [--tls [--host H]...]

Creates the fleet's data directory and database and its first admin user, with a generated
password printed once. Refuses when the fleet has users already (add more with "osprey user add").
With --tls it also makes a private CA and the fleet's certificate (as "osprey fleet tls-init").

Options:
  --data DIR        data directory (default: ${FLEET_DEFAULTS.dataDir})
  --admin NAME      the admin's username (default: admin)
  --tls             also a private CA and TLS certificate in DIR/tls, and the config to use them
  --host H          with --tls: a name or address edges reach the fleet by (repeatable)
  -h, --help        this text`;

/** What a command run on the fleet host writes into the audit log as its actor and source. */
export const CLI_ACTOR = 'cli';

/**
 * Opens the identity store of the fleet database under dataDir. With `create`, makes the
 * directory and the database first (through the fleet store, which sets the database up as the
 * fleet manager expects); without, a missing database is an error (a mistyped --data). With
 * $OSPREY_STORAGE_URL (PostgreSQL, issue 18) it is the identity store of that database, opened
 * through the storage factory (which migrates it as the fleet would); closing it closes the rest.
 */
export async function openFleetIdentity(dataDir: string, create = false): Promise<IdentityStore> {
  const logger = pino({ level: 'silent' });
  const url = storageUrlFromEnv();
  if (url !== undefined) {
    if (create) mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const storage = await openStorage({
      url,
      dataDir,
      imagesMaxBytes: FLEET_DEFAULTS.images.maxBytes,
      maxAlerts: FLEET_DEFAULTS.alerts.maxAlerts,
      maxOutbox: FLEET_DEFAULTS.webhooks.maxOutbox,
      logger,
    }).catch((err: unknown) => {
      throw new OspreyError('OSP_ERR_CONFIG', `${STORAGE_URL_ENV}: cannot open the fleet's PostgreSQL database: ${(err as Error).message}`, { cause: err });
    });
    return { ...storage.identity, close: () => storage.close() };
  }
  const file = join(dataDir, 'fleet.db');
  if (create) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    await openSqliteStore({ file, logger }).close();
  } else if (!existsSync(file)) {
    throw new OspreyError('OSP_ERR_NOT_FOUND', `no fleet database at ${file}; run "osprey fleet init --data ${dataDir}" first, or pass --data`);
  }
  return openSqliteIdentityStore({ file, logger });
}

/** A generated password: 24 characters of base64url (144 random bits). */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

/**
 * Makes the first admin of the fleet under dataDir (creating the directory and database) with a
 * generated password, audited as done by the CLI. OSP_ERR_CONFLICT when the fleet has users.
 * `osprey demo` uses it too.
 */
export async function createFirstAdmin(dataDir: string, username = 'admin'): Promise<{ username: string; password: string; dataDir: string }> {
  const dir = resolve(dataDir);
  const identity = await openFleetIdentity(dir, true);
  try {
    if ((await identity.countUsers()) > 0) {
      throw new OspreyError('OSP_ERR_CONFLICT', `the fleet in ${dir} has users already; add more with "osprey user add NAME --role ROLE --data ${dir}"`);
    }
    const password = generatePassword();
    const user = await identity.addUser({ username, password, role: 'admin' });
    await identity.appendAudit({ actor: CLI_ACTOR, action: 'user.add', target: `user:${user.username}`, source: CLI_ACTOR, outcome: 'ok', after: { role: user.role, firstAdmin: true } });
    return { username: user.username, password, dataDir: dir };
  } finally {
    await identity.close();
  }
}

export async function fleetInitCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, admin: { type: 'string' }, tls: { type: 'boolean' }, host: { type: 'string', multiple: true } });
  if (values.help) {
    console.log(fleetInitHelp);
    return 0;
  }
  if (values.host && !values.tls) throw new OspreyError('OSP_ERR_USAGE', '--host goes with --tls');
  const admin = await createFirstAdmin(values.data ?? FLEET_DEFAULTS.dataDir, values.admin ?? 'admin');
  console.log(`Fleet data directory: ${admin.dataDir}
First admin:          ${admin.username}
Password:             ${admin.password}
  (shown only now; store it safely, change it with "osprey user passwd ${admin.username} --data ${admin.dataDir}")

Start the fleet:  osprey fleet start --data ${admin.dataDir}
Then sign in at http://<this host>:${FLEET_DEFAULTS.http.port}/ or make an API token:
  osprey user token ${admin.username} --name ci --data ${admin.dataDir}`);
  if (values.tls) {
    console.log('');
    await tlsInitCommand(['--data', admin.dataDir, ...(values.host ?? []).flatMap((h) => ['--host', h])]);
  }
  return 0;
}
