/**
 * The fleet's gauges read at scrape time, on a real SQLite store: edge status as the console
 * shows it (online, stale after three missed telemetry periods, offline), alarms of offline edges
 * left out, and the open-alerts hook the alert store plugs into.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pino } from 'pino';
import { openSqliteStore } from '../../fleet-manager/store.js';
import { createFleetMetrics } from '../../fleet-manager/fleet-metrics.js';
import { envelope } from '../../protocol/validator.js';
import { parseScrape } from '../helpers/prometheus.js';
import { T0, tempDir } from './helpers.js';

const telemetry = (edgeId: string, alarms: string[]) =>
  envelope('telemetry', edgeId, {
    intervalMs: 1000, frames: 0, defects: 0, failed: 0, failures: {}, fps: 0, latencyMs: { count: 0, p50: 0, p95: 0, p99: 0, max: 0 },
    queueDepth: 0, lastSeq: 5, ackedSeq: 2, pendingResults: 3, cpuPercent: 0, rssBytes: 0, perModel: {}, alarms,
  });

test('edges by status, alarms in force only at reachable edges, and open alerts through the hook', async (t) => {
  const store = openSqliteStore({ file: join(await tempDir(t), 'fleet.db'), logger: pino({ level: 'silent' }) });
  t.after(() => store.close());
  for (const [id, online, at] of [['fresh', true, T0 + 9000], ['late', true, T0], ['gone', false, T0 + 9000]] as const) {
    await store.recordState(id, envelope('state', id, { online, line: 'L1' }), { receivedAt: at });
    await store.recordTelemetry(id, telemetry(id, ['disk-low']), { receivedAt: at });
  }
  let alertReads = 0;
  const metrics = createFleetMetrics({
    store,
    now: () => T0 + 10_000,
    openAlerts: async () => {
      alertReads++;
      return { 'edge-offline': 2, 'backlog-growing': 1 };
    },
  });
  const m = parseScrape(await metrics.registry.metrics());
  // "late" last reported 10 s ago with a 1 s period: stale, as the console shows it.
  assert.deepEqual(['online', 'stale', 'offline'].map((status) => m.value('osprey_fleet_edges', { status })), [1, 1, 1]);
  assert.deepEqual(
    m.families.get('osprey_fleet_edge_alarm_active')!.metrics.map((s) => s.labels!.edge).sort(),
    ['fresh', 'late'],
    'the offline edge\'s last alarms are not alarms in force',
  );
  assert.equal(m.value('osprey_fleet_edge_backlog_results', { edge: 'gone', line: 'L1' }), 3);
  assert.equal(m.value('osprey_fleet_alerts_open', { type: 'edge-offline' }), 2);
  assert.equal(m.value('osprey_fleet_alerts_open', { type: 'backlog-growing' }), 1);
  assert.equal(alertReads, 1, 'one read per scrape');
  // No rollouts or training given: those gauges do not exist rather than read 0.
  assert.equal(m.families.has('osprey_fleet_rollouts'), false);
  assert.equal(m.families.has('osprey_fleet_training_jobs'), false);
});
