/**
 * A real fleet manager (createFleetManager: embedded aedes, ingest, SQLite, HTTP) in its own
 * process for the benchmarks, so its CPU and memory are measured alone. argv[2] is the data
 * directory, argv[3] a publisher public key file ('' for none), argv[4] JSON `FleetChildSecurity`
 * (default: authentication on, plain TCP), argv[5] more fleet options as JSON (e.g. storage.url and
 * brokerUrl for bench/pg-ingest.ts). With authentication on it makes an admin and an API
 * token through the identity store (as `osprey fleet init` and `osprey user token` do) and hands
 * them to the parent with the fleet's broker password (bench/fleet-access.ts). Messages: parent →
 * `{ type: 'stats' }` | `{ type: 'close' }`; child → `{ type: 'ready', httpUrl, mqttUrl, access }`
 * | `FleetChildStats` | `{ type: 'error', message }`.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { destination, pino } from 'pino';
import { createFleetManager } from '../fleet-manager/fleet-manager.js';
import { openSqliteIdentityStore } from '../fleet-manager/identity-store.js';
import { ensurePrivateCa } from '../fleet-manager/private-ca.js';
import { BENCH_PUBLISHER_ID } from './publisher.js';
import { oneLine } from '../protocol/errors.js';
import type { FleetAccess, FleetChildSecurity } from './fleet-access.js';

export interface FleetChildStats {
  type: 'stats';
  rssBytes: number;
  maxRssBytes: number;
  heapUsedBytes: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  /** Event-loop delay p99 (ms) since the previous stats message. */
  loopDelayP99Ms: number;
}

async function main(): Promise<void> {
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const logger = pino({ level: 'warn' }, destination(2));
  const dataDir = process.argv[2]!;
  const security: FleetChildSecurity = { auth: true, tls: false, ...(process.argv[4] ? (JSON.parse(process.argv[4]) as Partial<FleetChildSecurity>) : {}) };
  // A private CA made here, as `osprey fleet init` makes one; edges get its ca.pem.
  const ca = security.tls ? await ensurePrivateCa(join(dataDir, 'tls'), { hosts: [] }) : undefined;
  const fleetSecret = randomBytes(32).toString('base64url');
  const extra = process.argv[5] ? (JSON.parse(process.argv[5]) as Record<string, unknown>) : {};
  const fleet = createFleetManager({
    ...extra,
    dataDir,
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    auth: { enabled: security.auth },
    ...(ca ? { tls: { certFile: ca.certFile, keyFile: ca.keyFile, caFile: ca.caFile } } : {}),
    fleetBrokerSecret: fleetSecret,
    // argv[3]: a publisher public key file (bench/publisher.ts) for the benchmarks that upload packages.
    ...(process.argv[3] ? { registry: { publisherKeys: [{ id: BENCH_PUBLISHER_ID, publicKeyFile: process.argv[3] }] } } : {}),
    logger,
  });
  const { httpUrl, mqttUrl } = await fleet.start();
  const access: FleetAccess = { auth: security.auth, apiToken: security.auth ? await adminToken(dataDir) : null, fleetSecret, caFile: ca?.caFile ?? null };
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  process.on('message', (msg: { type?: string }) => {
    if (msg.type === 'stats') {
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      const stats: FleetChildStats = {
        type: 'stats',
        rssBytes: mem.rss,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
        heapUsedBytes: mem.heapUsed,
        cpuUserUs: cpu.user,
        cpuSystemUs: cpu.system,
        loopDelayP99Ms: loop.percentile(99) / 1e6,
      };
      loop.reset();
      process.send?.(stats);
    } else if (msg.type === 'close') {
      void fleet.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    }
  });
  process.on('disconnect', () => void fleet.close().finally(() => process.exit(0)));
  process.send?.({ type: 'ready', httpUrl, mqttUrl, access });
}

/** An admin and an API token of theirs, made through the identity store on the fleet's database. */
async function adminToken(dataDir: string): Promise<string> {
  const identity = openSqliteIdentityStore({ file: join(dataDir, 'fleet.db'), logger: pino({ level: 'silent' }) });
  try {
    const user = await identity.addUser({ username: 'bench-admin', password: randomBytes(24).toString('base64url'), role: 'admin' });
    return (await identity.createApiToken({ userId: user.id, name: 'bench', role: 'admin', expiresAt: null })).token;
  } finally {
    await identity.close();
  }
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: oneLine(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
