/**
 * The two OpenAPI documents as the running code generates them: the fleet's, read over real HTTP
 * from a fleet manager started in a temp dir (every optional part on, so every route is there),
 * and the edge's, from its HTTP app built around a stub pipeline (no route is called). Used by
 * `npm run openapi` (write-openapi.ts) and by the check in CI (openapi.test.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import type { RouteRecord } from '../../fleet-manager/auth/authorize.js';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { buildHttpServer, type Health } from '../../edge-agent/http-server.js';
import type { Pipeline } from '../../edge-agent/pipeline.js';
import type { Monitor } from '../../edge-agent/monitor.js';
import { addGoldenSetRoute } from '../../edge-agent/golden-set-http.js';
import { credentialsFor } from '../helpers/identity.js';

/** Where the checked-in copies live, relative to the project root. */
export const FLEET_OPENAPI_FILE = 'docs/openapi.json';
export const EDGE_OPENAPI_FILE = 'docs/openapi-edge.json';

export interface OpenApiDocument {
  openapi: string;
  paths: Record<string, Record<string, { responses?: Record<string, unknown>; security?: unknown; 'x-osprey-permission'?: string }>>;
  components?: { securitySchemes?: Record<string, unknown> };
}

/** The text a document is checked in as. */
export function documentText(doc: unknown): string {
  return `${JSON.stringify(doc, null, 2)}\n`;
}

/** The fleet's document and the routes its app registered (every method, HEAD included). */
export async function fleetOpenApi(): Promise<{ doc: OpenApiDocument; routes: readonly RouteRecord[] }> {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-openapi-'));
  const fm = createFleetManager({ dataDir: dir, http: { host: '127.0.0.1', port: 0 }, mqtt: { host: '127.0.0.1', port: 0 }, logger: pino({ level: 'silent' }) });
  try {
    const { httpUrl } = await fm.start();
    const identity = openSqliteIdentityStore({ file: join(dir, 'fleet.db'), logger: pino({ level: 'silent' }) });
    try {
      const res = await fetch(`${httpUrl}/api/openapi.json`, { headers: await credentialsFor(identity).headers('viewer') });
      if (res.status !== 200) throw new Error(`GET /api/openapi.json answered ${res.status}: ${await res.text()}`);
      return { doc: (await res.json()) as OpenApiDocument, routes: fm.routes() };
    } finally {
      identity.close();
    }
  } finally {
    await fm.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** The edge's document and its routes, from the app the agent builds (every optional route on). */
export async function edgeOpenApi(): Promise<{ doc: OpenApiDocument; routes: { method: string; url: string }[] }> {
  const app = buildHttpServer({
    pipeline: {} as Pipeline,
    cameras: ['cam1'],
    bodyLimitBytes: 1 << 20,
    logger: pino({ level: 'silent' }),
    health: () => ({}) as Health,
    metrics: async () => ({ contentType: 'text/plain', text: '' }),
    monitor: {} as Monitor,
  });
  // The edge agent adds the golden-set route to this app itself (edge-agent.ts).
  addGoldenSetRoute(app, { run: async () => [] });
  try {
    await app.ready();
    // The router's own list ("└── /health (GET, HEAD)"): every route the app answers.
    const routes = app
      .printRoutes({ commonPrefix: false })
      .split('\n')
      .flatMap((line) => {
        const m = /(\/\S*) \(([A-Z, ]+)\)/.exec(line);
        return m ? m[2]!.split(', ').map((method) => ({ method, url: m[1]! })) : [];
      });
    return { doc: app.swagger() as unknown as OpenApiDocument, routes };
  } finally {
    await app.close();
  }
}
