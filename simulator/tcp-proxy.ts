/**
 * A TCP proxy for fault injection (node:net): clients connect to the proxy's port, which forwards
 * to a target that can change (a restarted broker or fleet manager comes back on a new port).
 * On command it can:
 *
 * - `cut()`: destroy every connection (RST) and refuse new ones until `restore()` — a pulled
 *   cable or a rebooting switch;
 * - `stall()`: keep connections open but forward nothing (bytes pile up in the proxy) until
 *   `restore()` — a half-dead link, where only keepalives and timeouts notice;
 * - `delay(ms)`: forward every chunk `ms` later, in order — a congested WAN link;
 * - `flap(upMs, downMs)`: alternate restore and cut — a flaky link.
 */
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';

export type ProxyMode = 'pass' | 'cut' | 'stall' | 'delay';

export interface TcpProxy {
  readonly port: number;
  /** Where connections go from now on (existing ones keep their upstream). */
  setTarget(port: number, host?: string): void;
  cut(): void;
  stall(): void;
  delay(ms: number): void;
  /** Alternates restore() for `upMs` and cut() for `downMs` until another command. */
  flap(upMs: number, downMs: number): void;
  /** Back to normal: forwards everything held back by a stall, accepts connections again. */
  restore(): void;
  readonly mode: ProxyMode;
  /** Connections accepted since start, and open now. */
  readonly stats: { accepted: number; open: number; cuts: number };
  close(): Promise<void>;
}

interface Pair {
  client: Socket;
  upstream: Socket;
  /** Chunks held back while stalled, per direction. */
  held: { toUp: Buffer[]; toClient: Buffer[] };
}

/** Starts a proxy on a free port of 127.0.0.1, forwarding to `targetPort`. */
export async function startTcpProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
  let target = { port: targetPort, host: targetHost };
  let mode: ProxyMode = 'pass';
  let delayMs = 0;
  let flapTimer: NodeJS.Timeout | undefined;
  const pairs = new Set<Pair>();
  const stats = { accepted: 0, open: 0, cuts: 0 };

  function destroyAll(): void {
    for (const p of pairs) {
      p.client.resetAndDestroy();
      p.upstream.destroy();
    }
    pairs.clear();
  }

  function forward(p: Pair, dir: 'toUp' | 'toClient', chunk: Buffer): void {
    const out = dir === 'toUp' ? p.upstream : p.client;
    if (mode === 'stall') {
      p.held[dir].push(chunk);
      return;
    }
    if (mode === 'delay' && delayMs > 0) {
      // Timers with equal delays fire in creation order, so the byte order is kept.
      setTimeout(() => {
        if (!out.destroyed) out.write(chunk);
      }, delayMs);
      return;
    }
    if (!out.destroyed) out.write(chunk);
  }

  const server: Server = createServer({ noDelay: true }, (client) => {
    if (mode === 'cut') {
      client.resetAndDestroy();
      return;
    }
    stats.accepted++;
    const upstream = connect({ port: target.port, host: target.host, noDelay: true });
    const p: Pair = { client, upstream, held: { toUp: [], toClient: [] } };
    pairs.add(p);
    stats.open = pairs.size;
    const end = () => {
      if (!pairs.delete(p)) return;
      stats.open = pairs.size;
      client.destroy();
      upstream.destroy();
    };
    client.on('data', (c: Buffer) => forward(p, 'toUp', c));
    upstream.on('data', (c: Buffer) => forward(p, 'toClient', c));
    client.on('close', end);
    upstream.on('close', end);
    client.on('error', end);
    upstream.on('error', end);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;

  function stopFlap(): void {
    clearTimeout(flapTimer);
    flapTimer = undefined;
  }

  function restoreNow(): void {
    const wasStalled = mode === 'stall';
    mode = 'pass';
    delayMs = 0;
    if (wasStalled) {
      for (const p of pairs) {
        for (const c of p.held.toUp.splice(0)) if (!p.upstream.destroyed) p.upstream.write(c);
        for (const c of p.held.toClient.splice(0)) if (!p.client.destroyed) p.client.write(c);
      }
    }
  }

  function cutNow(): void {
    mode = 'cut';
    stats.cuts++;
    destroyAll();
  }

  return {
    port,
    get mode() {
      return mode;
    },
    stats,
    setTarget(p, host = target.host) {
      target = { port: p, host };
    },
    cut() {
      stopFlap();
      cutNow();
    },
    stall() {
      stopFlap();
      mode = 'stall';
    },
    delay(ms) {
      stopFlap();
      restoreNow();
      mode = 'delay';
      delayMs = ms;
    },
    flap(upMs, downMs) {
      stopFlap();
      const up = () => {
        restoreNow();
        flapTimer = setTimeout(down, upMs);
      };
      const down = () => {
        cutNow();
        flapTimer = setTimeout(up, downMs);
      };
      down();
    },
    restore() {
      stopFlap();
      restoreNow();
    },
    async close() {
      stopFlap();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      destroyAll();
      await closed;
    },
  };
}
