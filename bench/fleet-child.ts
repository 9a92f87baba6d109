/**
 * A real fleet manager (createFleetManager: embedded aedes, ingest, SQLite, HTTP) in its own
 * process for the ingest benchmark, so its CPU and memory are measured alone. argv[2] is the data
 * directory. Messages: parent → `{ type: 'stats' }` | `{ type: 'close' }`; child → `{ type:
 * 'ready', httpUrl, mqttUrl }` | `FleetChildStats` | `{ type: 'error', message }`.
 */
import { destination, pino } from 'pino';
import { createFleetManager } from '../fleet-manager/fleet-manager.js';
import { BENCH_PUBLISHER_ID } from './publisher.js';
import { oneLine } from '../protocol/errors.js';

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
  const fleet = createFleetManager({
    dataDir: process.argv[2]!,
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    // argv[3]: a publisher public key file (bench/publisher.ts) for the benchmarks that upload packages.
    ...(process.argv[3] ? { registry: { publisherKeys: [{ id: BENCH_PUBLISHER_ID, publicKeyFile: process.argv[3] }] } } : {}),
    logger,
  });
  const { httpUrl, mqttUrl } = await fleet.start();
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
  process.send?.({ type: 'ready', httpUrl, mqttUrl });
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: oneLine(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
