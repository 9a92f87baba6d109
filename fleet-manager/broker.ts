/**
 * The embedded MQTT broker: aedes on its own TCP port. The fleet manager never talks to it
 * in-process; it connects over TCP like every edge (docs/ARCHITECTURE.md), so the same code
 * runs against Mosquitto or a broker cluster.
 */
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Aedes } from 'aedes';
import type { Logger } from 'pino';

export interface BrokerOptions {
  /** Interface to listen on; '0.0.0.0' for every IPv4 interface. */
  host: string;
  /** TCP port; 0 picks a free one. */
  port: number;
  logger: Logger;
}

export interface EmbeddedBroker {
  /** The port actually bound. */
  port: number;
  /** A URL a client on this machine can connect to. */
  url: string;
  /** Disconnects every client and stops listening. Idempotent. */
  close(): Promise<void>;
}

/** Starts aedes on a TCP port and resolves once it accepts connections. */
export async function startBroker(opts: BrokerOptions): Promise<EmbeddedBroker> {
  const log = opts.logger;
  const aedes = await Aedes.createBroker();
  aedes.on('clientError', (client, err) => log.debug({ clientId: client?.id, err }, 'mqtt client error'));
  aedes.on('connectionError', (client, err) => log.debug({ clientId: client?.id, err }, 'mqtt connection error'));
  aedes.on('client', (client) => log.debug({ clientId: client.id }, 'mqtt client connected'));
  aedes.on('clientDisconnect', (client) => log.debug({ clientId: client.id }, 'mqtt client disconnected'));

  const server = createServer((socket) => {
    // Small packets (acks, PUBACKs) must not wait for Nagle: stop-and-wait sync would stall ~40 ms each.
    socket.setNoDelay(true);
    aedes.handle(socket);
  });
  try {
    server.listen(opts.port, opts.host);
    await once(server, 'listening');
  } catch (err) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const url = `mqtt://${localHost(opts.host)}:${port}`;
  log.info({ host: opts.host, port }, 'mqtt broker listening');

  let closing: Promise<void> | undefined;
  return {
    port,
    url,
    close() {
      closing ??= (async () => {
        // Stop accepting first; server.close resolves once aedes has closed every client.
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        await serverClosed;
        log.info({ port }, 'mqtt broker closed');
      })();
      return closing;
    },
  };
}

/** A host a local client can reach: wildcard binds become loopback; IPv6 gets brackets. */
export function localHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}
