/**
 * Oversized MQTT packets without holding them: a PUBLISH header announcing N payload bytes, then
 * the payload streamed in 1 MiB chunks until the peer hangs up. The sender never has more than
 * one chunk in memory, so any growth measured is the receiver's.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import mqttPacket from 'mqtt-packet';

/** The bytes of an MQTT 3.1.1 CONNECT. */
export function connectPacket(clientId: string): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 0 });
}

/** Fixed header, topic and packet id of a QoS 1 PUBLISH whose payload is `payloadBytes` long. */
export function publishHeader(topic: string, payloadBytes: number, messageId = 1): Buffer {
  const t = Buffer.from(topic);
  const variable = Buffer.alloc(2 + t.length + 2);
  variable.writeUInt16BE(t.length, 0);
  t.copy(variable, 2);
  variable.writeUInt16BE(messageId, 2 + t.length);
  let rest = variable.length + payloadBytes;
  const len: number[] = [];
  do {
    let b = rest % 128;
    rest = Math.floor(rest / 128);
    if (rest > 0) b |= 0x80;
    len.push(b);
  } while (rest > 0);
  return Buffer.concat([Buffer.from([0x32, ...len]), variable]);
}

/**
 * Writes `payloadBytes` of zeros to `socket` in 1 MiB chunks, honouring back-pressure, until all
 * are written or the socket closes; resolves with the payload bytes handed to the socket.
 */
export async function streamPayload(socket: Socket, payloadBytes: number): Promise<number> {
  const chunk = Buffer.alloc(1024 * 1024);
  let written = 0;
  let closed = socket.destroyed;
  const onClose = () => {
    closed = true;
  };
  socket.on('close', onClose);
  socket.on('error', () => undefined);
  try {
    while (written < payloadBytes && !closed) {
      const n = Math.min(chunk.length, payloadBytes - written);
      const ok = socket.write(n === chunk.length ? chunk : chunk.subarray(0, n));
      written += n;
      if (!ok && !closed) await drainOrClose(socket);
    }
  } finally {
    socket.off('close', onClose);
  }
  return written;
}

function drainOrClose(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      socket.off('drain', done).off('close', done);
      resolve();
    };
    socket.on('drain', done).on('close', done);
  });
}

/**
 * Connects to a broker at `url` (mqtt://host:port), sends CONNECT and a PUBLISH of
 * `payloadBytes` to `topic`, and reports how much was written and whether the broker hung up.
 */
export async function floodPublish(url: string, topic: string, payloadBytes: number): Promise<{ written: number; droppedByPeer: boolean }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined); // the broker hanging up mid-write is the expected outcome
  await once(socket, 'connect');
  socket.write(connectPacket(`flood-${process.pid}`));
  socket.write(publishHeader(topic, payloadBytes));
  const written = await streamPayload(socket, payloadBytes);
  const droppedByPeer = socket.destroyed || socket.readableEnded;
  socket.destroy();
  return { written, droppedByPeer };
}

/** Peak and current resident memory of a process, in bytes (Linux /proc). */
export function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}
