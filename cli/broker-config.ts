/**
 * `osprey fleet broker-config --data DIR --out DIR`: the files that make Mosquitto enforce the
 * same identities and topic rules as the embedded broker (fleet-manager/broker-auth.ts):
 * - `passwd`: one line per enrolled edge (its credential's `$7$` hash, stored at enrollment, so
 *   no secret is needed here) and the fleet user `osprey-fleet`, whose password is made once and
 *   kept in `DIR/keys/broker-fleet.secret` (0600) for the fleet manager to read;
 * - `acl`: edge X writes `osprey/v1/edges/X/{state,results,telemetry,events}` and reads its own
 *   `{ack,desired}` (patterns on %u); `osprey-fleet` reads and writes `osprey/v1/#`;
 * - `mosquitto.conf`: the settings to include in the broker's configuration.
 * Re-run after enrolling or revoking edges, then send Mosquitto SIGHUP to reload both files.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { OspreyError } from '../protocol/errors.js';
import { edgeTopic } from '../protocol/topics.js';
import type { EdgeCredentialRecord } from '../fleet-manager/identity-store.js';
import { openFleetIdentity } from './fleet-init.js';
import { storageUrlFromEnv } from '../fleet-manager/config.js';
import { mosquittoHash } from '../fleet-manager/auth/secrets.js';
import { BROKER_SECRET_FILE, loadOrCreateBrokerSecret } from '../fleet-manager/broker-secret.js';
import { EDGE_PUBLISH_KINDS, EDGE_SUBSCRIBE_KINDS, FLEET_MQTT_USERNAME, FLEET_TOPIC_FILTER, isEdgeUsername } from '../fleet-manager/broker-auth.js';
import { parse } from './args.js';

export const brokerConfigHelp = `Usage: osprey fleet broker-config --data DIR --out DIR

Writes Mosquitto's password file (enrolled edges and the fleet user osprey-fleet), ACL file and
a mosquitto.conf snippet into --out, so Mosquitto enforces the embedded broker's rules. The
fleet's broker password is made once in DIR/keys/broker-fleet.secret (0600); the fleet manager
reads it when it runs with --broker. Re-run after enrolling or revoking edges, then reload
Mosquitto (SIGHUP). See docs/SECURITY.md ("MQTT: identities and topic rules").

Options:
  --data DIR        the fleet's data directory (fleet.db)
  --out DIR         where to write passwd, acl and mosquitto.conf
  -h, --help        this text`;

/** The password file: one `user:$7$…` line per enrolled edge (newest valid credential) and the fleet. */
export function passwordFileText(credentials: readonly EdgeCredentialRecord[], fleetHash: string): string {
  const newest = new Map<string, EdgeCredentialRecord>();
  for (const c of credentials) {
    if (c.revokedAt !== null || !isEdgeUsername(c.edgeId)) continue;
    const seen = newest.get(c.edgeId);
    if (!seen || c.createdAt >= seen.createdAt) newest.set(c.edgeId, c);
  }
  const lines = [`${FLEET_MQTT_USERNAME}:${fleetHash}`];
  for (const [edgeId, c] of [...newest].sort(([a], [b]) => (a < b ? -1 : 1))) lines.push(`${edgeId}:${c.brokerHash}`);
  return `${lines.join('\n')}\n`;
}

/** The ACL file: the fleet's topics, then the per-edge patterns (%u is the username, the edge id). */
export function aclFileText(): string {
  const pattern = (kind: (typeof EDGE_PUBLISH_KINDS)[number]) => edgeTopic('EDGE', kind).replace('/EDGE/', '/%u/');
  return [
    '# Written by "osprey fleet broker-config": re-run it rather than editing this file.',
    '# Nothing here for anonymous clients (allow_anonymous false).',
    '',
    '# The fleet manager reads and writes every Osprey topic.',
    `user ${FLEET_MQTT_USERNAME}`,
    `topic readwrite ${FLEET_TOPIC_FILTER}`,
    '',
    '# Edge X (username X): publishes only its own state, results, telemetry and events, and',
    '# reads only its own ack and desired state. No wildcards, no $SYS, no other edge.',
    ...EDGE_PUBLISH_KINDS.map((k) => `pattern write ${pattern(k)}`),
    ...EDGE_SUBSCRIBE_KINDS.map((k) => `pattern read ${pattern(k)}`),
    '',
  ].join('\n');
}

/** The mosquitto.conf lines (absolute paths to the two files). */
export function mosquittoConfText(passwordFile: string, aclFile: string): string {
  return [
    '# Written by "osprey fleet broker-config". Add a listener (with TLS on the plant network).',
    '# Every client authenticates: edges with their edge credential, the fleet as osprey-fleet.',
    'allow_anonymous false',
    `password_file ${passwordFile}`,
    `acl_file ${aclFile}`,
    '# The client id becomes the username: no client can take over another identity\'s session',
    '# (an edge\'s, or the fleet\'s) by connecting with its client id.',
    'use_username_as_clientid true',
    '',
  ].join('\n');
}

/** Writes `text` to `file` through a temp file and a rename, so a reload never reads half a file. */
async function writeAtomic(file: string, text: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode });
  await chmod(tmp, mode);
  await rename(tmp, file);
}

export interface BrokerConfigResult {
  passwordFile: string;
  aclFile: string;
  confFile: string;
  secretFile: string;
  edges: number;
}

/** Writes the three files for the fleet data directory `dataDir` into `outDir`. */
export async function writeBrokerConfig(dataDir: string, outDir: string): Promise<BrokerConfigResult> {
  const dbFile = join(dataDir, 'fleet.db');
  if (storageUrlFromEnv() === undefined && !existsSync(dbFile)) {
    throw new OspreyError('OSP_ERR_USAGE', `--data: no fleet database at ${dbFile} (start the fleet manager once, or point --data at its data directory)`);
  }
  // The fleet's database: fleet.db, or PostgreSQL with $OSPREY_STORAGE_URL (as the fleet runs).
  const store = await openFleetIdentity(dataDir);
  let credentials: EdgeCredentialRecord[];
  try {
    credentials = await store.listEdgeCredentials();
  } finally {
    await store.close();
  }
  const secretFile = join(dataDir, BROKER_SECRET_FILE);
  const { secret } = await loadOrCreateBrokerSecret(secretFile);
  await mkdir(outDir, { recursive: true, mode: 0o750 });
  const passwordFile = join(outDir, 'passwd');
  const aclFile = join(outDir, 'acl');
  const confFile = join(outDir, 'mosquitto.conf');
  const passwd = passwordFileText(credentials, mosquittoHash(secret));
  // Hashes only, but of every identity: readable by the broker's user alone (chown it to mosquitto).
  await writeAtomic(passwordFile, passwd, 0o600);
  await writeAtomic(aclFile, aclFileText(), 0o644);
  await writeAtomic(confFile, mosquittoConfText(passwordFile, aclFile), 0o644);
  return { passwordFile, aclFile, confFile, secretFile, edges: passwd.split('\n').filter(Boolean).length - 1 };
}

export async function brokerConfigCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { data: { type: 'string' }, out: { type: 'string' } });
  if (values.help) {
    console.log(brokerConfigHelp);
    return 0;
  }
  if (!values.data) throw new OspreyError('OSP_ERR_USAGE', '--data DIR is required (the fleet data directory)');
  if (!values.out) throw new OspreyError('OSP_ERR_USAGE', '--out DIR is required (where to write the Mosquitto files)');
  const dataDir = resolve(values.data);
  const r = await writeBrokerConfig(dataDir, resolve(values.out));
  console.log(`wrote ${r.passwordFile} (${r.edges} edges and ${FLEET_MQTT_USERNAME}), ${r.aclFile} and ${r.confFile}; the fleet's broker password is in ${r.secretFile}`);
  console.log('include mosquitto.conf in the broker configuration, and send mosquitto SIGHUP after each re-run (edges enrolled or revoked)');
  return 0;
}
