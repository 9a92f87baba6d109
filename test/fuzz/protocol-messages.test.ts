/**
 * Fuzzes the MQTT payload decoder every inbound message goes through (fleet ingest, edge fleet
 * link): whatever the bytes, decodeMessage returns a value (never throws), an error is one line,
 * and what it accepts is exactly what the schema describes.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { MessageSchemas } from '../../protocol/messages.js';
import { MessageKinds } from '../../protocol/topics.js';
import { decodeMessage, validatorFor } from '../../protocol/validator.js';
import { assertBoundedMemory, assertOneLine, fuzz, payloadBytes, sampleMessages, toBytes } from './arbitraries.js';

const samples = sampleMessages('edge-fuzz');

for (const kind of MessageKinds) {
  test(`decodeMessage('${kind}') answers any payload with a value or a one-line reason`, async () => {
    assert.equal(decodeMessage(kind, Buffer.from(JSON.stringify(samples[kind]))).ok, true, 'the sample itself is valid');
    await assertBoundedMemory(64 * 1024 * 1024, kind, () =>
      fuzz(
        `decodeMessage ${kind}`,
        fc.property(payloadBytes(samples[kind]), (payload) => {
          const decoded = decodeMessage(kind, toBytes(payload));
          if (!decoded.ok) return assertOneLine(decoded.error, `decodeMessage ${kind}`);
          // Accepted: a plain object the schema vouches for, not a prototype-polluted one.
          assert.equal(Object.getPrototypeOf(decoded.value), Object.prototype);
          assert.equal(validatorFor(MessageSchemas[kind])(decoded.value), true);
          assert.equal(({} as Record<string, unknown>).polluted, undefined);
        }),
        3,
      ),
    );
  });
}

test('regression: payload errors quoting the input stay one line and bounded (found by fuzzing)', () => {
  const ack = sampleMessages('edge-fuzz').ack;
  const cases: [string, string | Uint8Array][] = [
    // V8's JSON.parse message quotes the input, line breaks and NULs included.
    ['JSON with line breaks', '{"a":\n\nx}'],
    ['a NUL byte', Uint8Array.from([0])],
    ['an unknown property named by a line break', JSON.stringify({ ...ack, 'a\r\nb': 1 })],
    ['an unknown property of 70 000 characters', JSON.stringify({ ...ack, ['x'.repeat(70_000)]: 1 })],
  ];
  for (const [what, payload] of cases) {
    const decoded = decodeMessage('ack', toBytes(payload));
    assert.equal(decoded.ok, false, what);
    if (!decoded.ok) assertOneLine(decoded.error, what);
  }
});

test('regression: an event whose free-form data nests 10 000 deep is refused, not handed to a store that overflows (found while fuzzing)', () => {
  const n = 10_000;
  const text = JSON.stringify(sampleMessages('edge-fuzz').events).replace('"data":{"freeBytes":1}', `"data":{"x":${'['.repeat(n)}${']'.repeat(n)}}`);
  const decoded = decodeMessage('events', Buffer.from(text));
  assert.equal(decoded.ok, false, 'a 10 000-deep event was accepted');
  if (!decoded.ok) assertOneLine(decoded.error, 'deep event');
  // A shallow free-form value still passes.
  assert.equal(decodeMessage('events', Buffer.from(JSON.stringify({ ...sampleMessages('edge-fuzz').events, data: { a: { b: [1, [2]] } } }))).ok, true);
});
