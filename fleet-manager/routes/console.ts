/**
 * The console (console/, docs/ARCHITECTURE.md "The console"): `GET /` serves its HTML shell and
 * `GET /assets/:file` its content-hashed script and style sheet, as `npm install` built them into
 * dist/console. Both are public; every piece of data comes from the authenticated API. The CSP
 * allows this origin only: no inline script or style, no other host.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { safeLine } from '../../protocol/errors.js';
import { binaryResponse, errorResponses } from '../http-schemas.js';

/** The console's Content-Security-Policy: its own origin only, for everything. */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Where the build (console/build.ts) writes the console, from dist/fleet-manager/routes. */
export const CONSOLE_DIST_DIR = fileURLToPath(new URL('../../console/', import.meta.url));

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.woff2': 'font/woff2',
  '.svg': 'image/svg+xml',
};

interface Asset {
  body: Buffer;
  type: string;
  br: Buffer | undefined;
  gzip: Buffer | undefined;
}

/** The encoding to answer with: brotli, then gzip, when the request accepts it (q=0 refuses). */
export function pickEncoding(acceptEncoding: string | undefined, asset: Pick<Asset, 'br' | 'gzip'>): 'br' | 'gzip' | null {
  const accepted = new Set<string>();
  for (const part of (acceptEncoding ?? '').toLowerCase().split(',')) {
    const [coding, ...params] = part.trim().split(';');
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    if (coding && !(q && Number(q.slice(2)) === 0)) accepted.add(coding.trim());
  }
  if (asset.br && accepted.has('br')) return 'br';
  if (asset.gzip && accepted.has('gzip')) return 'gzip';
  return null;
}

export interface ConsoleRouteDeps {
  /** The built console: index.html and assets/ (default: dist/console). */
  dir?: string;
}

/** Registers `/` and `/assets/:file`. Files are read once, at registration. */
export const consoleRoutes: FastifyPluginAsync<ConsoleRouteDeps> = async (app, deps) => {
  const dir = deps.dir ?? CONSOLE_DIST_DIR;
  let html: Buffer | null = null;
  const assets = new Map<string, Asset>();
  try {
    html = readFileSync(join(dir, 'index.html'));
    for (const name of readdirSync(join(dir, 'assets'))) {
      const type = TYPES[extname(name)];
      if (!type) continue;
      const path = join(dir, 'assets', name);
      // The build's compressed twins (console/build.ts), when it made them.
      const twin = (ext: string) => (existsSync(path + ext) ? readFileSync(path + ext) : undefined);
      assets.set(name, { body: readFileSync(path), type, br: twin('.br'), gzip: twin('.gz') });
    }
  } catch (err) {
    app.log.warn({ dir, reason: (err as Error).message }, 'the console is not built: "/" answers 503 (run "npm run build")');
  }

  const common = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer' };

  app.get(
    '/',
    { config: { permission: 'public' }, schema: { response: { 200: { content: { 'text/html': { schema: Type.String() } } }, ...errorResponses } } },
    async (_req, reply) => {
      if (!html) return reply.code(503).send({ error: 'OSP_ERR_INTERNAL', message: 'the console is not built: run "npm run build"' });
      // no-cache: the shell names the current hashed assets, so it is revalidated on every load.
      return reply.type('text/html; charset=utf-8').headers({ ...common, 'content-security-policy': CONSOLE_CSP, 'cache-control': 'no-cache' }).send(html);
    },
  );

  app.get<{ Params: { file: string } }>(
    '/assets/:file',
    {
      config: { permission: 'public' },
      schema: { params: Type.Object({ file: Type.String({ maxLength: 128 }) }, { additionalProperties: false }), response: { 200: binaryResponse('a script, style sheet or font of the console', ...new Set(Object.values(TYPES))), ...errorResponses } },
    },
    async (req, reply) => {
      // Only the files the build made: a name is a key, never a path.
      const asset = assets.get(req.params.file);
      if (!asset) return reply.code(404).send({ error: 'OSP_ERR_NOT_FOUND', message: `no console asset ${safeLine(req.params.file, 128)}` });
      // The name carries the content's hash: a changed file is a new name, so this one never changes.
      const headers = { ...common, 'cache-control': 'public, max-age=31536000, immutable', vary: 'accept-encoding' };
      const encoding = pickEncoding(req.headers['accept-encoding'], asset);
      if (encoding) return reply.type(asset.type).headers({ ...headers, 'content-encoding': encoding }).send(encoding === 'br' ? asset.br : asset.gzip);
      return reply.type(asset.type).headers(headers).send(asset.body);
    },
  );
};
