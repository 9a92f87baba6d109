/**
 * Configuration layered fleet → line → edge: the HTTP API, the merge, the per-edge config
 * version, and the desired states edges receive (real MQTT, simulated edges).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeSettings, canonicalJson } from '../../fleet-manager/effective-config.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { startFleet } from './control-helpers.js';

const LOCAL = { name: 'local', version: '1' };

test('mergeSettings: later layers win field by field; perLabel merges label by label', () => {
  assert.deepEqual(
    mergeSettings(
      { thresholds: { default: 0.5, perLabel: { scratch: 0.4, dent: 0.6 } }, sampling: { keepDefectImages: true, keepGoodEvery: 100 } },
      undefined,
      { thresholds: { perLabel: { dent: 0.7 } }, sampling: { keepGoodEvery: 10 } },
      { thresholds: { default: 0.55 } },
    ),
    { thresholds: { default: 0.55, perLabel: { scratch: 0.4, dent: 0.7 } }, sampling: { keepDefectImages: true, keepGoodEvery: 10 } },
  );
  assert.deepEqual(mergeSettings(), {});
  assert.equal(canonicalJson({ b: 1, a: { d: 2, c: [3, { f: 1, e: 2 }] } }), '{"a":{"c":[3,{"e":2,"f":1}],"d":2},"b":1}');
});

test('config: layers are set and read over HTTP; each edge gets its effective config and a new version on change', { timeout: 20_000 }, async (t) => {
  const f = await startFleet(t);
  const a1 = await connectSimEdge(f.mqttUrl, { id: 'a1', credential: await f.creds.enrollEdge('a1'), line: 'A', localModel: LOCAL });
  const a2 = await connectSimEdge(f.mqttUrl, { id: 'a2', credential: await f.creds.enrollEdge('a2'), line: 'A', localModel: LOCAL });
  const b1 = await connectSimEdge(f.mqttUrl, { id: 'b1', credential: await f.creds.enrollEdge('b1'), line: 'B', localModel: LOCAL });
  t.after(() => Promise.all([a1.close(), a2.close(), b1.close()]));
  // A first state is enough for an edge to get its desired state: nothing set yet, version 1.
  for (const e of [a1, a2, b1]) assert.deepEqual((await e.waitDesired(() => true)).config, {});
  assert.equal(a1.desired!.configVersion, 1);
  assert.equal(a1.desired!.active, null);

  const empty = await f.api('GET', '/api/config');
  assert.deepEqual(empty.body, { scope: 'fleet', key: null, settings: {}, version: 0, updatedAt: null });

  const fleet = await f.api('PUT', '/api/config', { thresholds: { default: 0.5, perLabel: { scratch: 0.4 } }, sampling: { keepDefectImages: true } });
  assert.equal(fleet.status, 200);
  assert.equal(fleet.body.version, 1);
  assert.deepEqual(fleet.body.republished.sort(), ['a1', 'a2', 'b1']);
  for (const e of [a1, a2, b1]) await e.waitDesired((d) => d.configVersion === 2);

  const line = await f.api('PUT', '/api/lines/A/config', { thresholds: { perLabel: { dent: 0.7 } } });
  assert.deepEqual(line.body.republished.sort(), ['a1', 'a2']);
  const edge = await f.api('PUT', '/api/edges/a1/config', { thresholds: { default: 0.6, perLabel: { scratch: 0.45 } } });
  assert.deepEqual(edge.body.republished, ['a1']);

  const d1 = await a1.waitDesired((d) => d.configVersion === 4);
  assert.deepEqual(d1.config, { thresholds: { default: 0.6, perLabel: { scratch: 0.45, dent: 0.7 } }, sampling: { keepDefectImages: true } });
  const d2 = await a2.waitDesired((d) => d.configVersion === 3);
  assert.deepEqual(d2.config, { thresholds: { default: 0.5, perLabel: { scratch: 0.4, dent: 0.7 } }, sampling: { keepDefectImages: true } });
  assert.equal(b1.desired!.configVersion, 2);

  const eff = await f.api('GET', '/api/edges/a1/effective-config');
  assert.equal(eff.status, 200);
  assert.deepEqual(eff.body.config, d1.config);
  assert.equal(eff.body.configVersion, 4);
  assert.equal(eff.body.line, 'A');
  assert.deepEqual(eff.body.layers.line, { thresholds: { perLabel: { dent: 0.7 } } });
  // The simulated edge reports the version it applied.
  await a1.publishState();
  assert.equal((await f.api('GET', '/api/lines/A/config')).body.version, 1);
  assert.deepEqual((await f.api('GET', '/api/edges/a1/config')).body.settings, { thresholds: { default: 0.6, perLabel: { scratch: 0.45 } } });

  // Putting the same settings again changes nothing an edge sees: no new config version.
  const same = await f.api('PUT', '/api/lines/A/config', { thresholds: { perLabel: { dent: 0.7 } } });
  assert.equal(same.body.version, 2);
  assert.deepEqual(same.body.republished, []);

  // Removing the edge layer falls back to line and fleet.
  const del = await f.api('DELETE', '/api/edges/a1/config');
  assert.deepEqual(del.body.republished, ['a1']);
  assert.deepEqual((await a1.waitDesired((d) => d.configVersion === 5)).config.thresholds, { default: 0.5, perLabel: { scratch: 0.4, dent: 0.7 } });
  assert.equal((await f.api('DELETE', '/api/edges/a1/config')).status, 404);

  // Config for an edge that has not appeared yet waits for it, and reaches it with its first state.
  await f.api('PUT', '/api/edges/late/config', { sampling: { keepGoodEvery: 7 } });
  const late = await connectSimEdge(f.mqttUrl, { id: 'late', credential: await f.creds.enrollEdge('late'), line: 'B', localModel: LOCAL });
  t.after(() => late.close());
  assert.deepEqual((await late.waitDesired(() => true)).config, { thresholds: { default: 0.5, perLabel: { scratch: 0.4 } }, sampling: { keepDefectImages: true, keepGoodEvery: 7 } });
});

test('config: invalid settings and ids are 400 naming the field', async (t) => {
  const f = await startFleet(t);
  const cases: [string, unknown, RegExp][] = [
    ['/api/config', { thresholds: { default: -1 } }, /body\/thresholds\/default must be >= 0/],
    ['/api/config', { thresholds: { default: 1.5 } }, /body\/thresholds\/default must be <= 1/],
    ['/api/lines/A/config', { thresholds: { perLabel: { scratch: 2 } } }, /body\/thresholds\/perLabel\/scratch must be <= 1/],
    ['/api/edges/a1/config', { thresholds: { default: 1.01 } }, /body\/thresholds\/default must be <= 1/],
    ['/api/config', { thresholds: { defualt: 1 } }, /additionalProperties|must NOT have additional properties/],
    ['/api/lines/A/config', { sampling: { uncertainBand: 2 } }, /uncertainBand must be <= 1/],
    ['/api/edges/bad%20id/config', {}, /params\/id must match pattern/],
  ];
  for (const [path, body, message] of cases) {
    const res = await f.api('PUT', path, body);
    assert.equal(res.status, 400, path);
    assert.equal(res.body.error, 'OSP_ERR_BAD_REQUEST');
    assert.match(res.body.message, message, path);
  }
  assert.equal((await f.api('GET', '/api/edges/nobody/effective-config')).status, 404);
});
