/**
 * Configuration layers fleet → line → edge over HTTP. A put replaces its layer; every edge it
 * reaches gets its effective config recomputed, and those whose config changed get a new config
 * version in a freshly published desired state.
 */
import type { FastifyPluginAsync, FastifyRequest } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { EdgeSettingsSchema, type EdgeSettings } from '../../protocol/messages.js';
import { cronScheduleError } from '../../protocol/golden-schedule.js';
import { errorResponses } from '../http-schemas.js';
import {
  ConfigLayerViewSchema,
  ConfigPutResultSchema,
  EdgeParamsSchema,
  EffectiveConfigSchema,
  LineParamsSchema,
  type ConfigLayerView,
} from '../control-schemas.js';
import type { ConfigLayer, ConfigScope } from '../control-store.js';
import type { RouteDeps } from './deps.js';

/** Registers the config routes; needs deps.control. */
export const configRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  const { store, publisher } = deps.control!;
  const layerView = (scope: ConfigScope, key: string, layer: ConfigLayer | null): ConfigLayerView => ({
    scope,
    key: scope === 'fleet' ? null : key,
    settings: layer?.settings ?? {},
    version: layer?.version ?? 0,
    updatedAt: layer?.updatedAt ?? null,
  });

  /** Edges a layer reaches: all of them, a line's, or one. */
  async function reached(scope: ConfigScope, key: string): Promise<string[]> {
    if (scope === 'edge') return [key];
    const edges = await deps.store.listEdges();
    return edges.filter((e) => scope === 'fleet' || e.line === key).map((e) => e.id);
  }

  /** The audit row's target: `config:fleet`, `config:line:L1`, `config:edge:e1`. */
  const target = (scope: ConfigScope, key: string) => (scope === 'fleet' ? 'config:fleet' : `config:${scope}:${key}`);

  async function put(req: FastifyRequest, scope: ConfigScope, key: string, settings: EdgeSettings) {
    // What the schema cannot say: the schedule must parse as node-cron parses it at the edge.
    const schedule = settings.goldenSet?.schedule;
    const bad = schedule !== undefined ? cronScheduleError(schedule) : null;
    if (bad) throw new OspreyError('OSP_ERR_BAD_REQUEST', `body/goldenSet/schedule: ${bad}`);
    const old = await store.getConfigLayer(scope, key);
    const layer = await store.putConfigLayer(scope, key, settings, deps.now());
    req.auditNote = { action: 'config.put', target: target(scope, key), before: old?.settings ?? null, after: layer.settings };
    const { published } = scope === 'fleet' ? await publisher.refreshAll() : await publisher.refresh(await reached(scope, key));
    app.log.info({ scope, key, version: layer.version, republished: published.length }, 'config layer set');
    return { ...layerView(scope, key, layer), republished: published };
  }

  async function remove(req: FastifyRequest, scope: ConfigScope, key: string) {
    const old = await store.getConfigLayer(scope, key);
    if (!old || !(await store.deleteConfigLayer(scope, key))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no ${scope} config for ${key}`);
    req.auditNote = { action: 'config.delete', target: target(scope, key), before: old.settings, after: null };
    const { published } = await publisher.refresh(await reached(scope, key));
    app.log.info({ scope, key, republished: published.length }, 'config layer removed');
    return { ...layerView(scope, key, null), republished: published };
  }

  const putSchema = (params?: object) => ({
    ...(params && { params }),
    body: EdgeSettingsSchema,
    response: { 200: ConfigPutResultSchema, ...errorResponses },
  });
  const getSchema = (params?: object) => ({ ...(params && { params }), response: { 200: ConfigLayerViewSchema, ...errorResponses } });
  const deleteSchema = (params: object) => ({ params, response: { 200: ConfigPutResultSchema, ...errorResponses } });

  const READ = { permission: 'fleet:read' } as const;
  const WRITE = { permission: 'config:write' } as const;
  app.get('/api/config', { config: READ, schema: getSchema() }, async () => layerView('fleet', '', await store.getConfigLayer('fleet', '')));
  app.put<{ Body: EdgeSettings }>('/api/config', { config: WRITE, schema: putSchema() }, async (req) => put(req, 'fleet', '', req.body));

  type LineReq = { Params: Static<typeof LineParamsSchema> };
  app.get<LineReq>('/api/lines/:line/config', { config: READ, schema: getSchema(LineParamsSchema) }, async (req) =>
    layerView('line', req.params.line, await store.getConfigLayer('line', req.params.line)),
  );
  app.put<LineReq & { Body: EdgeSettings }>('/api/lines/:line/config', { config: WRITE, schema: putSchema(LineParamsSchema) }, async (req) =>
    put(req, 'line', req.params.line, req.body),
  );
  app.delete<LineReq>('/api/lines/:line/config', { config: WRITE, schema: deleteSchema(LineParamsSchema) }, async (req) => remove(req, 'line', req.params.line));

  type EdgeReq = { Params: Static<typeof EdgeParamsSchema> };
  app.get<EdgeReq>('/api/edges/:id/config', { config: READ, schema: getSchema(EdgeParamsSchema) }, async (req) =>
    layerView('edge', req.params.id, await store.getConfigLayer('edge', req.params.id)),
  );
  app.put<EdgeReq & { Body: EdgeSettings }>('/api/edges/:id/config', { config: WRITE, schema: putSchema(EdgeParamsSchema) }, async (req) =>
    put(req, 'edge', req.params.id, req.body),
  );
  app.delete<EdgeReq>('/api/edges/:id/config', { config: WRITE, schema: deleteSchema(EdgeParamsSchema) }, async (req) => remove(req, 'edge', req.params.id));

  app.get<EdgeReq>(
    '/api/edges/:id/effective-config',
    { config: READ, schema: { params: EdgeParamsSchema, response: { 200: EffectiveConfigSchema, ...errorResponses } } },
    async (req) => {
      const { id } = req.params;
      const [edge, desired] = await Promise.all([deps.store.getEdge(id), store.getDesired(id)]);
      if (!edge && !desired) throw new OspreyError('OSP_ERR_NOT_FOUND', `no edge ${id}`);
      const eff = await publisher.effectiveConfig(id);
      return {
        edgeId: id,
        line: eff.line,
        config: eff.config,
        configVersion: desired?.body.configVersion ?? null,
        reportedConfigVersion: edge?.state?.configVersion ?? null,
        layers: { fleet: eff.layers.fleet?.settings ?? null, line: eff.layers.line?.settings ?? null, edge: eff.layers.edge?.settings ?? null },
      };
    },
  );
};
