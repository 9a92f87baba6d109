/**
 * A cap on the size of incoming MQTT packets, for MQTT 3.1.1 peers that have no way to
 * advertise one. mqtt-packet (under both aedes and mqtt.js) buffers a packet whole before
 * anyone sees it, so a 200 MB PUBLISH costs 200 MB and more. The scanner below reads only the
 * fixed headers of the byte stream ([MQTT-2.2] type byte + Remaining Length) and reports the
 * first packet over the limit as soon as its header arrives, so the connection can be dropped
 * having buffered one socket chunk of it, never the packet.
 */
import type { Duplex } from 'node:stream';

/** Default cap on one MQTT packet, broker and clients alike: far above any Osprey message but a results batch, which edges split to fit. */
export const DEFAULT_MAX_PACKET_BYTES = 4 * 1024 * 1024;

/** Fixed header byte + up to 4 Remaining Length bytes ([MQTT-2.2.3]). */
const maxHeaderBytes = 5;

/** Total size of a packet from its Remaining Length: header byte, length bytes, rest. */
export function mqttPacketBytes(remainingLength: number): number {
  const lengthBytes = remainingLength < 128 ? 1 : remainingLength < 16_384 ? 2 : remainingLength < 2_097_152 ? 3 : 4;
  return 1 + lengthBytes + remainingLength;
}

/**
 * A scanner over an MQTT byte stream, fed chunk by chunk in order. Returns the total size of
 * the first packet larger than `maxBytes` (from its header alone), or null while all fit.
 * A Remaining Length over 4 bytes is malformed [MQTT-2.2.3] and reported as Infinity.
 */
export function createPacketSizeScanner(maxBytes: number): (chunk: Uint8Array) => number | null {
  let skip = 0; // body bytes of the current packet still to pass
  let header = 0; // bytes of the current fixed header seen (0: expecting a type byte)
  let length = 0;
  let multiplier = 1;
  return (chunk) => {
    let i = 0;
    while (i < chunk.length) {
      if (skip > 0) {
        const n = Math.min(skip, chunk.length - i);
        skip -= n;
        i += n;
        continue;
      }
      const byte = chunk[i++]!;
      if (header === 0) {
        header = 1;
        length = 0;
        multiplier = 1;
        continue;
      }
      header++;
      length += (byte & 0x7f) * multiplier;
      multiplier *= 128;
      if (byte & 0x80) {
        if (header >= maxHeaderBytes) return Infinity;
        continue;
      }
      const total = mqttPacketBytes(length);
      if (total > maxBytes) return total;
      header = 0;
      skip = length;
    }
    return null;
  };
}

/**
 * Watches what `stream` delivers to its consumer and calls `onTooLarge` (once) on the first
 * packet over `maxBytes`; the caller then destroys the stream. It only observes: a 'data'
 * listener sees every chunk, both when the consumer pipes the stream (mqtt.js) and when it
 * calls read() on 'readable' (aedes), and sees it before the consumer parses it.
 */
export function watchPacketSizes(stream: Duplex, maxBytes: number, onTooLarge: (bytes: number) => void): void {
  const scan = createPacketSizeScanner(maxBytes);
  const onData = (chunk: Buffer | string) => {
    const bytes = scan(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (bytes === null) return;
    stream.off('data', onData);
    onTooLarge(bytes);
  };
  stream.on('data', onData);
}

/** What limitClientPackets needs of an mqtt.js client (its stream, and the builder of the next one). */
interface ClientStreams {
  stream: Duplex;
  streamBuilder?: (client: unknown) => Duplex;
}

/**
 * Caps incoming packets on an mqtt.js client, on its current stream and on every stream it
 * builds when reconnecting: an oversized packet ends that connection (with `onTooLarge` called
 * first) and mqtt.js reconnects as after any drop. Call it right after `connect()`, before any
 * byte can have arrived. mqtt.js checks `maximumPacketSize` only for MQTT 5 and only after
 * buffering the whole packet, hence this.
 */
export function limitClientPackets(client: object, maxBytes: number, onTooLarge: (bytes: number) => void): void {
  const c = client as ClientStreams;
  // A private field of mqtt.js (5.x); fail loudly rather than run unguarded if it ever goes.
  const build = c.streamBuilder;
  if (typeof build !== 'function') throw new Error('mqtt.js client has no streamBuilder; cannot cap incoming packet sizes');
  const guard = (stream: Duplex) => {
    watchPacketSizes(stream, maxBytes, (bytes) => {
      onTooLarge(bytes);
      stream.destroy();
    });
    return stream;
  };
  c.streamBuilder = (cl) => guard(build(cl));
  if (c.stream) guard(c.stream);
}
