/**
 * A process that holds the fleet leader lock (test/fleet-manager/leadership.test.ts kills it with
 * SIGKILL): argv[2] is the database URL; prints `leader` once it leads, then waits to be killed.
 */
import { pino } from 'pino';
import { pgLeadership } from '../../fleet-manager/leadership.js';

const url = process.argv[2];
// `node --test dist/test/` also loads every module under test/: without a database URL it starts nothing.
if (url) {
  const leadership = pgLeadership({ url, logger: pino({ level: 'silent' }), retryMs: 100, applicationName: 'osprey-leader-child' });
  leadership.onChange((leader) => {
    process.stdout.write(leader ? 'leader\n' : 'follower\n');
  });
  await leadership.start();
  if (!leadership.isLeader()) process.stdout.write('follower\n');
}
// Kept alive by the elector's connection and timer until killed.
