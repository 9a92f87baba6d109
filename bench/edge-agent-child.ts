/**
 * A real edge agent in its own process for the edge benchmark, so its RSS and CPU are its own
 * and the load generator does not share its event loop. Started by bench/edge-pipeline.ts with
 * IPC; argv[2] is a JSON file `{ config, baseDir }` (an edge config file's object).
 *
 * Messages: parent → child `{ type: 'stats' }` | `{ type: 'close' }`;
 * child → parent `{ type: 'ready', httpUrl }` | `{ type: 'stats', ... }` | `{ type: 'error', message }`.
 */
import { readFileSync } from 'node:fs';
import { destination, pino } from 'pino';
import { createEdgeAgent } from '../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../edge-agent/config.js';
import { oneLine } from '../protocol/errors.js';

/** What the child reports about itself. */
export interface EdgeChildStats {
  type: 'stats';
  rssBytes: number;
  /** Peak RSS since the process started (getrusage maxrss). */
  maxRssBytes: number;
  heapUsedBytes: number;
  externalBytes: number;
  cpuUserUs: number;
  cpuSystemUs: number;
  lastSeq: number;
  failures: Record<string, number>;
}

function send(message: unknown): void {
  process.send?.(message);
}

async function main(): Promise<void> {
  const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as { config: unknown; baseDir: string };
  const config = parseEdgeConfig(spec.config, 'bench', spec.baseDir);
  // Warnings and errors only (errors only in a smoke run), to stderr: a rejected frame is worth seeing.
  const logger = pino({ level: config.logLevel ?? 'warn' }, destination(2));
  const agent = createEdgeAgent(config, { logger, drainTimeoutMs: 30_000, finalSyncMs: 0 });
  const { httpUrl } = await agent.start();

  process.on('message', (msg: { type?: string }) => {
    if (msg.type === 'stats') {
      const mem = process.memoryUsage();
      const cpu = process.cpuUsage();
      const health = agent.health();
      const stats: EdgeChildStats = {
        type: 'stats',
        rssBytes: mem.rss,
        maxRssBytes: process.resourceUsage().maxRSS * 1024,
        heapUsedBytes: mem.heapUsed,
        externalBytes: mem.external,
        cpuUserUs: cpu.user,
        cpuSystemUs: cpu.system,
        lastSeq: health.lastSeq,
        failures: health.failures,
      };
      send(stats);
    } else if (msg.type === 'close') {
      void agent.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    }
  });
  // The parent going away (a crashed benchmark) must not leave an agent behind.
  process.on('disconnect', () => void agent.close().finally(() => process.exit(0)));
  send({ type: 'ready', httpUrl });
}

main().catch((err: unknown) => {
  send({ type: 'error', message: oneLine(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
