/**
 * Shared set-up for the edge-agent tests: temp dirs, the real built-in ONNX model (built once per
 * test file), a real aedes broker on a free port, and hand-crafted bad images.
 */
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import type { TestContext } from 'node:test';
import { makeTempDir } from '../helpers/temp-dir.js';
import { Aedes, type Client } from 'aedes';
import { pino, type Logger } from 'pino';
import { parseEdgeConfig, type EdgeConfig } from '../../edge-agent/config.js';
import type { NewResult } from '../../edge-agent/result-store.js';

/** A temp dir removed after the test. */
export function tempDir(t: TestContext, prefix = 'osprey-edge-'): Promise<string> {
  return makeTempDir(t, prefix);
}

/** A plain good result, the i-th of a series, for tests that fill a result store directly. */
export function goodResult(i: number, extra: Partial<NewResult> = {}): NewResult {
  return { ts: 1_700_000_000_000 + i, camera: 'cam1', source: 'http', model: 'demo@1', verdict: 'ok', label: 'good', score: 0.1, latencyMs: 1, ...extra };
}

/** Logs are silent unless OSPREY_TEST_LOG names a level (e.g. `debug`). */
export function testLogger(): Logger {
  return pino({ level: process.env.OSPREY_TEST_LOG ?? 'silent' });
}

/** A validated config for a test edge in `dir`, with fast timings. */
export function edgeConfig(dir: string, modelDir: string, overrides: Record<string, unknown> = {}): EdgeConfig {
  return parseEdgeConfig(
    {
      edgeId: 'edge-test',
      line: 'line-T',
      cameras: ['cam1', 'cam2'],
      dataDir: path.join(dir, 'data'),
      http: { host: '127.0.0.1', port: 0 },
      model: { dir: modelDir },
      hotFolder: { settleMs: 20, rescanMs: 200 },
      sync: { batchSize: 50, intervalMs: 100, ackTimeoutMs: 2000 },
      telemetry: { intervalMs: 200 },
      ...overrides,
    },
    'test',
    dir,
  );
}

export interface TestBroker {
  port: number;
  url: string;
  broker: Aedes;
  /** Closes one client's connection from the broker side, as a network failure would (its will fires). */
  dropClient(clientId: string): boolean;
  /** Stops the broker and drops every client connection at once (an outage). */
  close(): Promise<void>;
}

/** A real aedes broker on `port` (0: a free one). */
export async function startBroker(port = 0): Promise<TestBroker> {
  const broker = await Aedes.createBroker();
  const clients = new Map<string, Client>();
  broker.on('client', (c) => clients.set(c.id, c));
  broker.on('clientDisconnect', (c) => {
    if (clients.get(c.id) === c) clients.delete(c.id);
  });
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    broker.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const actual = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    port: actual,
    url: `mqtt://127.0.0.1:${actual}`,
    broker,
    dropClient(clientId) {
      const c = clients.get(clientId);
      if (!c) return false;
      c.close();
      return true;
    },
    close() {
      closed ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => broker.close(() => resolve()));
        await serverClosed;
      })();
      return closed;
    },
  };
}

/**
 * A PNG whose IHDR claims `width`×`height` pixels (valid signature and CRCs) followed by a
 * token IDAT: decoders must refuse it from the header, before allocating anything.
 */
export function pngClaiming(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: RGB
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x63, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
