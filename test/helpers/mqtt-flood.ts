/**
 * Oversized MQTT packets without holding them: a PUBLISH header announcing N payload bytes, then
 * the payload streamed in 1 MiB chunks until the peer hangs up. The sender never has more than
 * one chunk in memory, so any growth measured is the receiver's.
 */
import { connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import mqttPacket from 'mqtt-packet';

/** Who connects: client id, username and password (every client of a secured broker has them). */
export interface FloodLogin {
  clientId: string;
  username: string;
  password: string;
}

/** The bytes of an MQTT 3.1.1 CONNECT. */
export function connectPacket(login: FloodLogin): Buffer {
  return mqttPacket.generate({
    cmd: 'connect',
    protocolId: 'MQTT',
    protocolVersion: 4,
    clean: true,
    clientId: login.clientId,
    username: login.username,
    password: Buffer.from(login.password),
    keepalive: 0,
  });
}

/** Resolves with the CONNACK return code (0: accepted); rejects if the socket closes first. */
async function connackCode(socket: Socket): Promise<number> {
  let got = Buffer.alloc(0);
  while (got.length < 4) {
    const chunk = (await Promise.race([once(socket, 'data'), once(socket, 'close').then(() => null)])) as [Buffer] | null;
    if (chunk === null) throw new Error('the broker closed the connection before its CONNACK');
    got = Buffer.concat([got, chunk[0]]);
  }
  if (got[0] !== 0x20) throw new Error(`expected a CONNACK, got packet type 0x${got[0]!.toString(16)}`);
  return got[3]!;
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
 * Connects to a broker at `url` (mqtt://host:port) as `login`, waits for the CONNACK (which must
 * accept it: the flood is then refused for its size, not for who sent it), sends a PUBLISH of
 * `payloadBytes` to `topic`, and reports how much was written and whether the broker hung up.
 */
export async function floodPublish(url: string, login: FloodLogin, topic: string, payloadBytes: number): Promise<{ written: number; droppedByPeer: boolean }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.on('error', () => undefined); // the broker hanging up mid-write is the expected outcome
  await once(socket, 'connect');
  socket.write(connectPacket(login));
  const code = await connackCode(socket);
  if (code !== 0) {
    socket.destroy();
    throw new Error(`the broker refused ${login.username} (CONNACK ${code})`);
  }
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
