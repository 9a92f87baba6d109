/**
 * Convergence watch against a real fleet manager (embedded broker, SQLite, HTTP on port 0) with
 * a real MQTT client playing an edge that reports a stale config version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mismatchOf } from '../../fleet-manager/convergence.js';
import type { DesiredRecord } from '../../fleet-manager/control-store.js';
import { edgeTopic } from '../../protocol/topics.js';
import { decodeMessage } from '../../protocol/validator.js';
import type { DesiredMessage } from '../../protocol/messages.js';
import { waitFor } from '../helpers/wait-for.js';
import { startFleet } from './control-helpers.js';
import { connectEdge } from './helpers.js';

const GRACE_MS = 400;

interface EdgeJson {
  id: string;
  convergence: { converged: boolean; mismatchSince: number | null; republished: number; alert: boolean; reason: string | null } | null;
}

test('an edge that keeps a stale config version is republished after the grace period, flagged, and cleared once it converges', { timeout: 30_000 }, async (t) => {
  const f = await startFleet(t, { convergence: { graceMs: GRACE_MS } });
  const edge = await connectEdge(t, f.mqttUrl, 'e1', await f.creds.enrollEdge('e1'));
  // Every desired state this edge receives, with when it arrived.
  const desired: { at: number; msg: DesiredMessage }[] = [];
  const arrivals = new Set<() => void>();
  edge.client.on('message', (topic, payload) => {
    if (topic !== edgeTopic('e1', 'desired') || payload.length === 0) return;
    const decoded = decodeMessage('desired', payload);
    assert.ok(decoded.ok, 'the fleet publishes valid desired states');
    desired.push({ at: Date.now(), msg: decoded.value });
    for (const w of [...arrivals]) w();
  });
  const nth = (n: number) =>
    new Promise<{ at: number; msg: DesiredMessage }>((resolve) => {
      const check = () => {
        if (desired.length < n) return;
        arrivals.delete(check);
        resolve(desired[n - 1]!);
      };
      arrivals.add(check);
      check();
    });
  await edge.client.subscribeAsync(edgeTopic('e1', 'desired'), { qos: 1 });
  const edgeView = async () => {
    const res = await f.api('GET', '/api/edges');
    return (res.body.edges as EdgeJson[]).find((e) => e.id === 'e1')!;
  };

  // A first state gets the edge its desired state (config version 1); the edge never applies it.
  await edge.publishState({ line: 'L1' });
  const first = await nth(1);
  assert.equal(first.msg.configVersion, 1);

  const second = await nth(2);
  assert.deepEqual(second.msg.config, first.msg.config);
  const flagged = await waitFor(async () => {
    const e = await edgeView();
    return e.convergence?.alert ? e : undefined;
  }, 'the mismatch flagged in GET /api/edges');
  const c = flagged.convergence!;
  assert.equal(c.converged, false);
  assert.ok(c.republished >= 1);
  assert.match(c.reason!, /config version none, desired 1/);
  assert.ok(c.mismatchSince !== null && second.at - c.mismatchSince >= GRACE_MS, `republished ${second.at - c.mismatchSince!} ms after the mismatch began`);

  const raised = (await f.api('GET', '/api/edges/e1/events')).body.events as { kind: string; level: string; message: string; data: Record<string, unknown> }[];
  const alert = raised.find((e) => e.kind === 'alert' && e.data.state === 'raised');
  assert.ok(alert, JSON.stringify(raised));
  assert.equal(alert.level, 'warn');
  assert.equal(alert.data.alert, 'desired-state-mismatch');
  assert.match(alert.message, /has not applied its desired state/);

  // The edge applies version 1 and says so: the flag clears, with an event saying so.
  await edge.publishState({ line: 'L1', configVersion: 1 });
  const cleared = await waitFor(async () => {
    const e = await edgeView();
    return e.convergence?.converged ? e : undefined;
  }, 'the edge seen converged');
  assert.deepEqual(cleared.convergence, { converged: true, mismatchSince: null, republished: 0, alert: false, reason: null });
  const events = (await f.api('GET', '/api/edges/e1/events')).body.events as { level: string; data: Record<string, unknown> }[];
  assert.equal(events[0]!.data.state, 'cleared');
  assert.equal(events[0]!.level, 'info');
  assert.equal((await f.api('GET', '/api/edges/nobody/events')).status, 404);
});

test('mismatchOf: the model by sha256 (or name@version), the config version; a null active accepts any model', () => {
  const artifact = { name: 'm', version: '2', sha256: 'a'.repeat(64), size: 1, url: 'http://f/a', signature: 's' };
  const rec = (active: typeof artifact | null): DesiredRecord => ({ edgeId: 'e', body: { active, config: {}, configVersion: 3 }, configJson: '{}', updatedAt: 1 });
  const ref = { name: 'm', version: '2', sha256: 'a'.repeat(64) };
  assert.equal(mismatchOf({ state: { active: ref, configVersion: 3 } }, rec(artifact)), null);
  assert.equal(mismatchOf({ state: { active: { name: 'm', version: '2' }, configVersion: 3 } }, rec(artifact)), null);
  assert.equal(mismatchOf({ state: { active: { ...ref, sha256: 'b'.repeat(64) }, configVersion: 3 } }, rec(artifact)), 'model m@2, desired m@2');
  assert.equal(mismatchOf({ state: { active: { name: 'm', version: '1' }, configVersion: 2 } }, rec(artifact)), 'model m@1, desired m@2; config version 2, desired 3');
  assert.equal(mismatchOf({ state: { active: { name: 'other', version: '9' }, configVersion: 3 } }, rec(null)), null);
  assert.equal(mismatchOf({ state: null }, rec(null)), 'config version none, desired 3');
});
