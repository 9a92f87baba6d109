import type { TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { buildApp } from '../../fleet-manager/app.js';
import { openTestIdentity } from '../helpers/identity.js';
import { envelope } from '../../protocol/validator.js';
import { T0, result, tempDir } from './helpers.js';
import { openFleetStore } from './fleet-store-backend.js';
import { testBackends, type StoreBackend } from '../helpers/store-backends.js';

const S = 1000;

async function build(t: TestContext, backend: StoreBackend) {
  const { store, file } = await openFleetStore(t, backend);
  // The identity store is SQLite here whatever the fleet store's backend.
  const creds = openTestIdentity(t, file ?? join(await tempDir(t), 'identity.db'));
  const { identity } = creds;
  const app = await buildApp({ store, identity, logger: pino({ level: 'silent' }), now: () => T0 + 600 * S });
  t.after(async () => {
    await app.close();
    await store.close();
  });
  const headers = await creds.headers('viewer');
  return { app, store, get: (url: string) => app.inject({ url, headers }) };
}

function telemetry(edgeId: string, lastSeq: number, ts: number) {
  return envelope(
    'telemetry',
    edgeId,
    {
      intervalMs: 5000, frames: 0, defects: 0, failed: 0, failures: {}, fps: 0,
      latencyMs: { count: 0, p50: 0, p95: 0, p99: 0, max: 0 }, queueDepth: 0, lastSeq, ackedSeq: 0,
      pendingResults: lastSeq, cpuPercent: 1, rssBytes: 1e8, perModel: {},
    },
    ts,
  );
}

testBackends('GET /api/edges: lastSeq never trails the ack and ignores another store; backlog is never negative', async (t, backend) => {
  const { get, store } = await build(t, backend);
  const view = async () => {
    const e = (await get('/api/edges')).json().edges[0] as { ackedSeq: number; lastSeq: number | null; backlog: number | null };
    return [e.ackedSeq, e.lastSeq, e.backlog];
  };
  // Telemetry said 2, then four results were stored: the report is older than the ack.
  await store.recordTelemetry('e1', telemetry('e1', 2, T0 + 10 * S), { receivedAt: T0 + 10 * S });
  await store.ingestResults('e1', [1, 2, 3, 4].map((seq) => result(seq)), { receivedAt: T0 + 20 * S });
  assert.deepEqual(await view(), [4, 4, 0]);

  // A newer report above the ack: that many still to come.
  await store.recordTelemetry('e1', telemetry('e1', 10, T0 + 30 * S), { receivedAt: T0 + 30 * S });
  assert.deepEqual(await view(), [4, 10, 6]);

  // A retained state of an older store replayed at a fleet restart, newer by its clock: not this store's seqs.
  const old = envelope('state', 'e1', { online: false, lastSeq: 900, storeId: 'old-store-1' }, T0 + 40 * S);
  await store.recordState('e1', old, { receivedAt: T0 + 40 * S, replay: true });
  assert.deepEqual(await view(), [4, 10, 6]);
});
