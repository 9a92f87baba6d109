/**
 * The optional protocol fields of issue 5: messages with and without a storeId both decode (older
 * agents and fleets interoperate), a malformed one is refused, telemetry carries alarms and storage.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeMessage, encodeMessage, envelope } from '../../protocol/index.js';

const result = { seq: 1, ts: 1, camera: 'cam1', source: 'http' as const, model: 'm@1', verdict: 'ok' as const, label: 'good', score: 0.1, latencyMs: 3 };

test('results, state and ack carry an optional storeId', () => {
  const withId = envelope('results', 'e1', { storeId: 'Ab3_-xyz12345678', fromSeq: 1, toSeq: 1, results: [result] });
  assert.equal(decodeMessage('results', encodeMessage(withId)).ok, true);
  const without = envelope('results', 'e1', { fromSeq: 1, toSeq: 1, results: [result] });
  assert.equal(decodeMessage('results', encodeMessage(without)).ok, true);
  assert.equal(decodeMessage('ack', encodeMessage(envelope('ack', 'e1', { ackSeq: 4, storeId: 'Ab3_-xyz12345678' }))).ok, true);
  assert.equal(decodeMessage('state', encodeMessage(envelope('state', 'e1', { online: true, storeId: 'Ab3_-xyz12345678' }))).ok, true);
  for (const bad of ['short', 'has space in it!!', 'x'.repeat(65)]) {
    const decoded = decodeMessage('ack', encodeMessage({ ...envelope('ack', 'e1', { ackSeq: 1 }), storeId: bad }));
    assert.equal(decoded.ok, false, bad);
  }
});

test('telemetry carries alarms and storage figures', () => {
  const base = {
    intervalMs: 1000, frames: 1, defects: 0, failed: 0, failures: {}, fps: 1,
    latencyMs: { count: 1, p50: 1, p95: 1, p99: 1, max: 1 }, queueDepth: 0, lastSeq: 1, ackedSeq: 1, pendingResults: 0,
    cpuPercent: 1, rssBytes: 1, perModel: {},
  };
  const storage = { resultRows: 5, resultBytes: 4096, notStored: 3, notStoredDefects: 1, images: 2, imageBytes: 100, imagesPending: 1, imagesEvicted: 0 };
  const msg = envelope('telemetry', 'e1', { ...base, alarms: ['result-quota'], storage });
  const decoded = decodeMessage('telemetry', encodeMessage(msg));
  assert.equal(decoded.ok, true);
  assert.equal(decodeMessage('telemetry', encodeMessage(envelope('telemetry', 'e1', base))).ok, true, 'both optional');
  const typo = { ...msg, storage: { ...storage, notstored: 1 } };
  assert.equal(decodeMessage('telemetry', encodeMessage(typo)).ok, false);
});
