/**
 * The edge's optional metrics listener (config `metrics`): a second HTTP server that answers only
 * `GET /metrics`, so a plant's Prometheus on another machine can scrape an edge whose API stays on
 * loopback. It reads nothing from the request but the path and (with `tokenFile`) the bearer
 * token; everything else is 404 or 405. docs/SECURITY.md "Edge metrics listener".
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { OspreyError } from '../protocol/errors.js';

export interface MetricsListenerOptions {
  host: string;
  port: number;
  /** File holding the bearer token (first line, at least 16 characters); absent: none asked. */
  tokenFile?: string;
  scrape(): Promise<{ contentType: string; text: string }>;
  logger: Logger;
}

export interface MetricsListener {
  /** Reads the token file and listens; resolves with the URL of /metrics. */
  start(): Promise<string>;
  close(): Promise<void>;
}

/** Reads and checks the token file: one line, at least 16 characters. OSP_ERR_CONFIG otherwise. */
export async function readMetricsToken(file: string): Promise<Buffer> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new OspreyError('OSP_ERR_CONFIG', `config metrics.tokenFile: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  const token = text.split(/\r?\n/)[0]!.trim();
  if (token.length < 16) throw new OspreyError('OSP_ERR_CONFIG', `config metrics.tokenFile: ${file} must hold a token of at least 16 characters on its first line`);
  return Buffer.from(token);
}

/** Creates the listener; nothing listens until start(). */
export function createMetricsListener(opts: MetricsListenerOptions): MetricsListener {
  const log = opts.logger;
  let token: Buffer | undefined;

  function authorized(req: IncomingMessage): boolean {
    if (!token) return true;
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const given = Buffer.from(m?.[1] ?? '');
    return given.length === token.length && timingSafeEqual(given, token);
  }

  function answer(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', ...headers });
    res.end(text);
  }

  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics') return answer(res, 404, 'only /metrics here\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer(res, 405, 'GET only\n', { allow: 'GET, HEAD' });
    if (!authorized(req)) {
      log.info({ ip: req.socket.remoteAddress }, 'metrics scrape refused: no or wrong bearer token');
      return answer(res, 401, 'a bearer token is required (config metrics.tokenFile)\n', { 'www-authenticate': 'Bearer realm="osprey-edge-metrics"' });
    }
    opts.scrape().then(
      ({ contentType, text }) => {
        res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: unknown) => {
        log.error({ err }, 'metrics scrape failed');
        answer(res, 500, 'metrics unavailable; see the edge log\n');
      },
    );
  });

  return {
    async start() {
      if (opts.tokenFile !== undefined) token = await readMetricsToken(opts.tokenFile);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(opts.port, opts.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      const a = server.address() as AddressInfo;
      const host = a.family === 'IPv6' ? `[${a.address}]` : a.address === '0.0.0.0' ? '127.0.0.1' : a.address;
      const url = `http://${host}:${a.port}/metrics`;
      log.info({ url, token: token !== undefined }, 'metrics listener ready');
      return url;
    },
    async close() {
      if (!server.listening) return;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
