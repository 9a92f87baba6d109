/**
 * A real HTTP artifact server for edge tests (node:http on port 0), serving archives by sha256 at
 * `/api/artifacts/{sha256}` with `Range: bytes=N-` support, as the fleet does. Faults are set
 * per artifact: drop the connection after some body bytes, answer with an error status, or serve
 * other bytes than those the sha256 names.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface ServedRequest {
  sha256: string;
  range: string | undefined;
  status: number;
}

export interface ArtifactServer {
  url: string;
  /** Serves `bytes` under their own sha256 (or under `as`, to serve wrong bytes); returns its URL. */
  add(bytes: Buffer, as?: string): string;
  /** The next `times` requests for `sha256` send `bytes` body bytes and then drop the connection. */
  dropAfter(sha256: string, bytes: number, times?: number): void;
  /** The next `times` requests for `sha256` answer `status`. */
  failWith(sha256: string, status: number, times?: number): void;
  requests: ServedRequest[];
  requestsFor(sha256: string): ServedRequest[];
  close(): Promise<void>;
}

export const sha256Of = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Starts an artifact server on a free port. */
export async function startArtifactServer(): Promise<ArtifactServer> {
  const files = new Map<string, Buffer>();
  const drops = new Map<string, { bytes: number; times: number }>();
  const failures = new Map<string, { status: number; times: number }>();
  const requests: ServedRequest[] = [];
  const sockets = new Set<Socket>();

  function take<T extends { times: number }>(map: Map<string, T>, sha: string): T | undefined {
    const f = map.get(sha);
    if (!f) return undefined;
    if (--f.times <= 0) map.delete(sha);
    return f;
  }

  function handle(req: IncomingMessage, res: ServerResponse): void {
    const m = /^\/api\/artifacts\/([0-9a-f]{64})$/.exec(req.url ?? '');
    const sha = m?.[1] ?? '';
    const range = req.headers.range;
    const log = (status: number) => requests.push({ sha256: sha, range, status });
    const body = files.get(sha);
    if (!body) {
      log(404);
      res.writeHead(404).end();
      return;
    }
    const failure = take(failures, sha);
    if (failure) {
      log(failure.status);
      res.writeHead(failure.status).end();
      return;
    }
    let start = 0;
    if (range) {
      const r = /^bytes=(\d+)-$/.exec(range);
      start = r ? Number(r[1]) : 0;
      if (start >= body.length) {
        log(416);
        res.writeHead(416, { 'content-range': `bytes */${body.length}` }).end();
        return;
      }
    }
    const status = range ? 206 : 200;
    log(status);
    const headers: Record<string, string | number> = { 'content-type': 'application/x-tar', 'content-length': body.length - start, 'accept-ranges': 'bytes' };
    if (status === 206) headers['content-range'] = `bytes ${start}-${body.length - 1}/${body.length}`;
    res.writeHead(status, headers);
    const drop = take(drops, sha);
    if (drop) {
      // Part of the body, then the connection dies, as a network cut would.
      res.write(body.subarray(start, start + drop.bytes), () => res.socket?.destroy());
      return;
    }
    res.end(body.subarray(start));
  }

  const server: Server = createServer(handle);
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    add(bytes, as) {
      const sha = as ?? sha256Of(bytes);
      files.set(sha, bytes);
      return `${url}/api/artifacts/${sha}`;
    },
    dropAfter(sha256, bytes, times = 1) {
      drops.set(sha256, { bytes, times });
    },
    failWith(sha256, status, times = 1) {
      failures.set(sha256, { status, times });
    },
    requests,
    requestsFor(sha256) {
      return requests.filter((r) => r.sha256 === sha256);
    },
    close() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
