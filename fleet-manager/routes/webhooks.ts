/**
 * Webhooks of alert notifications (issue 17), all `alerts:admin`: list, create, change, delete,
 * send a test, and a webhook's recent deliveries. The URL is shown to admins only (it often holds
 * a chat tool's token); the audit log keeps its origin, never its path.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { describePrincipal } from '../auth/principal.js';
import type { WebhookRecord, WebhookStore, DeliveryRecord } from '../webhook-store.js';
import { originOf, type WebhookSender } from '../webhook-sender.js';
import {
  DeliveriesQuerySchema,
  DeliveriesSchema,
  DeliveryViewSchema,
  IdParamsSchema,
  WebhookBodySchema,
  WebhookPatchSchema,
  WebhooksSchema,
  WebhookViewSchema,
  type DeliveryView,
  type WebhookBody,
  type WebhookPatch,
  type WebhookView,
} from '../alert-schemas.js';

export interface WebhookRouteDeps {
  store: WebhookStore;
  sender: Pick<WebhookSender, 'test'>;
  now: () => number;
  /** Webhooks allowed at most (default 100). */
  maxWebhooks?: number;
}

/** An http(s) URL that parses, without user:password (that would be a secret in the clear); else a 400 naming the field. */
export function checkWebhookUrl(text: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new OspreyError('OSP_ERR_BAD_REQUEST', 'body/url is not a valid URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new OspreyError('OSP_ERR_BAD_REQUEST', 'body/url must be an http or https URL');
  if (url.username || url.password) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'body/url must not carry a user name or password');
  return url.toString();
}

const deliveryView = ({ body: _b, ...d }: DeliveryRecord): DeliveryView => d;
/** What the audit log keeps of a webhook: never the URL's path or query. */
const brief = (w: WebhookRecord) => ({ name: w.name, origin: originOf(w.url), format: w.format, types: w.types, lines: w.lines, enabled: w.enabled });

export const webhookRoutes: FastifyPluginAsync<WebhookRouteDeps> = async (app, deps) => {
  const maxWebhooks = deps.maxWebhooks ?? 100;
  type IdReq = { Params: Static<typeof IdParamsSchema> };
  const view = async (w: WebhookRecord): Promise<WebhookView> => ({ ...w, pending: (await deps.store.pendingCounts()).get(w.id) ?? 0 });
  const found = async (id: number) => {
    const w = await deps.store.get(id);
    if (!w) throw new OspreyError('OSP_ERR_NOT_FOUND', `no webhook ${id}`);
    return w;
  };

  app.get('/api/webhooks', { config: { permission: 'alerts:admin' }, schema: { response: { 200: WebhooksSchema, ...errorResponses } } }, async () => {
    const pending = await deps.store.pendingCounts();
    return { webhooks: (await deps.store.list()).map((w) => ({ ...w, pending: pending.get(w.id) ?? 0 })) };
  });

  app.post<{ Body: WebhookBody }>(
    '/api/webhooks',
    { config: { permission: 'alerts:admin' }, schema: { body: WebhookBodySchema, response: { 201: WebhookViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const b = req.body;
      if ((await deps.store.list()).length >= maxWebhooks) throw new OspreyError('OSP_ERR_CONFLICT', `at most ${maxWebhooks} webhooks; delete one first`);
      const w = await deps.store.create(
        { name: b.name, url: checkWebhookUrl(b.url), format: b.format ?? 'json', types: b.types ?? [], lines: b.lines ?? [], enabled: b.enabled ?? true },
        describePrincipal(req.principal),
        deps.now(),
      );
      req.auditNote = { action: 'webhook.create', target: `webhook:${w.id}`, before: null, after: brief(w) };
      return reply.code(201).send(await view(w));
    },
  );

  app.patch<IdReq & { Body: WebhookPatch }>(
    '/api/webhooks/:id',
    { config: { permission: 'alerts:admin' }, schema: { params: IdParamsSchema, body: WebhookPatchSchema, response: { 200: WebhookViewSchema, ...errorResponses } } },
    async (req) => {
      const before = await found(req.params.id);
      const patch = { ...req.body, ...(req.body.url !== undefined && { url: checkWebhookUrl(req.body.url) }) };
      const w = (await deps.store.update(req.params.id, patch, deps.now())) ?? (await found(req.params.id));
      req.auditNote = { action: 'webhook.update', target: `webhook:${w.id}`, before: brief(before), after: brief(w) };
      return view(w);
    },
  );

  app.delete<IdReq>(
    '/api/webhooks/:id',
    { config: { permission: 'alerts:admin' }, schema: { params: IdParamsSchema, response: { 200: WebhookViewSchema, ...errorResponses } } },
    async (req) => {
      const w = await found(req.params.id);
      const gone = await view(w);
      await deps.store.remove(w.id);
      req.auditNote = { action: 'webhook.delete', target: `webhook:${w.id}`, before: brief(w), after: null };
      return gone;
    },
  );

  app.post<IdReq>(
    '/api/webhooks/:id/test',
    { config: { permission: 'alerts:admin' }, schema: { params: IdParamsSchema, response: { 200: DeliveryViewSchema, ...errorResponses } } },
    async (req) => {
      const w = await found(req.params.id);
      const d = await deps.sender.test(w);
      req.auditNote = { action: 'webhook.test', target: `webhook:${w.id}`, after: { status: d.status, lastStatus: d.lastStatus, lastError: d.lastError } };
      return deliveryView(d);
    },
  );

  app.get<IdReq & { Querystring: Static<typeof DeliveriesQuerySchema> }>(
    '/api/webhooks/:id/deliveries',
    { config: { permission: 'alerts:admin' }, schema: { params: IdParamsSchema, querystring: DeliveriesQuerySchema, response: { 200: DeliveriesSchema, ...errorResponses } } },
    async (req) => {
      const w = await found(req.params.id);
      return { deliveries: (await deps.store.deliveries(w.id, req.query.limit)).map(deliveryView) };
    },
  );
};
