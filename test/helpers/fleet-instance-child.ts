/**
 * One fleet manager process for the multi-instance fault test (test/integration/multi-instance.test.ts):
 * argv[2] is JSON fleet options (dataDir, storage, brokerUrl, …; authentication off, loopback
 * only). Tells the parent `{ type: 'ready', httpUrl }` or `{ type: 'error', message }`; closes on
 * `{ type: 'close' }` or when the parent goes. SIGKILL is how the test ends it in the middle.
 */
import { destination, pino } from 'pino';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { oneLine } from '../../protocol/errors.js';

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? '{}') as Record<string, unknown>;
  const fleet = createFleetManager({
    ...options,
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    auth: { enabled: false },
    logger: pino({ level: 'warn' }, destination(2)),
  });
  const { httpUrl } = await fleet.start();
  const close = () => void fleet.close().finally(() => process.exit(0));
  process.on('message', (msg: { type?: string }) => {
    if (msg.type === 'close') close();
  });
  process.on('disconnect', close);
  process.send?.({ type: 'ready', httpUrl });
}

// `node --test dist/test/` also loads every module under test/: without a parent to report to, it starts nothing.
if (process.send && process.argv[2] !== undefined) main().catch((err: unknown) => {
  process.send?.({ type: 'error', message: oneLine(err) });
  process.exitCode = 1;
  setTimeout(() => process.exit(1), 100).unref();
});
