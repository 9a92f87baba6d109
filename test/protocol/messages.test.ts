import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  allEdgesFilter,
  decodeMessage,
  edgeTopic,
  encodeMessage,
  envelope,
  parseEdgeTopic,
} from '../../protocol/index.js';

test('topics put the edge id at a fixed level and round-trip', () => {
  assert.equal(edgeTopic('press-3', 'results'), 'osprey/v1/edges/press-3/results');
  assert.deepEqual(parseEdgeTopic('osprey/v1/edges/press-3/ack'), { edgeId: 'press-3', kind: 'ack' });
  assert.equal(allEdgesFilter('state'), 'osprey/v1/edges/+/state');
  assert.equal(parseEdgeTopic('osprey/v1/edges/press-3/unknown'), null);
  assert.equal(parseEdgeTopic('osprey/v2/edges/press-3/ack'), null);
  assert.equal(parseEdgeTopic('osprey/v1/edges/a/b/ack'), null);
  assert.throws(() => edgeTopic('bad/id', 'ack'), /invalid edge id/);
  assert.throws(() => edgeTopic('+', 'ack'), /invalid edge id/);
});

test('a valid results batch decodes', () => {
  const msg = envelope('results', 'e1', {
    fromSeq: 1,
    toSeq: 1,
    results: [
      { seq: 1, ts: 1, camera: 'cam1', source: 'http', model: 'm@1', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 3 },
    ],
  });
  const decoded = decodeMessage('results', encodeMessage(msg));
  assert.equal(decoded.ok, true);
});

test('invalid payloads come back as one-line reasons, not exceptions', () => {
  const notJson = decodeMessage('results', Buffer.from('{"v":1,'));
  assert.equal(notJson.ok, false);
  assert.match(!notJson.ok ? notJson.error : '', /^not JSON/);

  const badSeq = decodeMessage('ack', JSON.stringify({ v: 1, id: 'x', ts: 1, edgeId: 'e1', ackSeq: -1 }));
  assert.equal(badSeq.ok, false);
  assert.match(!badSeq.ok ? badSeq.error : '', /\/ackSeq must be >= 0/);

  const extra = decodeMessage('ack', JSON.stringify({ v: 1, id: 'x', ts: 1, edgeId: 'e1', ackSeq: 1, oops: true }));
  assert.equal(extra.ok, false);
  assert.match(!extra.ok ? extra.error : '', /additional properties \(oops\)/);

  const badVerdict = decodeMessage(
    'results',
    JSON.stringify({
      v: 1, id: 'x', ts: 1, edgeId: 'e1', fromSeq: 1, toSeq: 1,
      results: [{ seq: 1, ts: 1, camera: 'c', source: 'http', model: 'm', verdict: 'maybe', label: 'l', score: 0, latencyMs: 0 }],
    }),
  );
  assert.equal(badVerdict.ok, false);
  assert.doesNotMatch(!badVerdict.ok ? badVerdict.error : '', /\n/);
});

test('the last-will state (online:false only) is a valid state message', () => {
  const will = envelope('state', 'e1', { online: false });
  assert.equal(decodeMessage('state', encodeMessage(will)).ok, true);
});

test('state and desired messages, which embed shared parts several times, decode', () => {
  const ref = { name: 'm', version: '2', sha256: 'a'.repeat(64) };
  const state = envelope('state', 'e1', { online: true, line: 'l', active: ref, previous: { ...ref, version: '1' }, shadow: null, configVersion: 3 });
  assert.equal(decodeMessage('state', encodeMessage(state)).ok, true);
  const artifact = { ...ref, size: 10, url: 'http://fleet/a', signature: 'sig' };
  const desired = envelope('desired', 'e1', { active: artifact, shadow: { ...artifact, version: '3' }, config: { thresholds: { default: 0.4 } }, configVersion: 3 });
  assert.equal(decodeMessage('desired', encodeMessage(desired)).ok, true);
});

test('a desired state with a threshold outside [0, 1] is refused, naming the field', () => {
  const desired = (config: object) => encodeMessage(envelope('desired', 'e1', { active: null, config, configVersion: 1 }));
  assert.equal(decodeMessage('desired', desired({ thresholds: { default: 1, perLabel: { dent: 0 } } })).ok, true);
  const high = decodeMessage('desired', desired({ thresholds: { default: 1.5 } }));
  assert.ok(!high.ok && /\/config\/thresholds\/default must be <= 1/.test(high.error), JSON.stringify(high));
  const label = decodeMessage('desired', desired({ thresholds: { perLabel: { dent: 7 } } }));
  assert.ok(!label.ok && /\/config\/thresholds\/perLabel\/dent must be <= 1/.test(label.error), JSON.stringify(label));
});
