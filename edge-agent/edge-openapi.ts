/**
 * The edge HTTP API's own OpenAPI 3 document (@fastify/swagger, from the routes' TypeBox schemas),
 * served at `GET /openapi.json` on the edge's loopback API. docs/openapi-edge.json is the
 * checked-in copy (`npm run openapi`), compared with the generated one in CI.
 */
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import { fastifySwagger } from '@fastify/swagger';

export const EDGE_OPENAPI_URL = '/openapi.json';

/** Starts collecting the edge's routes into its document; call before any route is added. */
export function registerEdgeOpenApi(app: FastifyInstance): void {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
  // Called, not registered: the edge adds its routes at once (buildHttpServer is synchronous), and
  // a registered plugin would only load at ready(), after them, and see none.
  const done = (err?: Error) => {
    if (err) throw err;
  };
  fastifySwagger(app, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Osprey edge agent',
        version: pkg.version ?? '0.0.0',
        description:
          "The edge agent's local HTTP API (docs/edge-agent.md): loopback only, no credential; the station's camera software posts frames to it. Errors answer `{ error: OSP_ERR_…, message }`.",
      },
    },
  }, done);
}
