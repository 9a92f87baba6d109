/**
 * The fleet manager's HTTP API as a Fastify app. `buildApp` only assembles it (no listen), so
 * tests drive it with `inject()` and the fleet manager adds listen and shutdown around it.
 * HTTP API reference: docs/fleet-manager.md.
 */
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyError, type FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import { OspreyError, httpStatusFor, oneLine, routerErrorMessage, safeLine } from '../protocol/errors.js';
import type { ErrorBody } from './http-schemas.js';
import type { FleetStore } from './store.js';
import type { IngestCounters } from './ingest.js';
import { healthRoutes } from './routes/health.js';
import { edgeRoutes } from './routes/edges.js';
import { edgeHistoryRoutes } from './routes/edge-history.js';
import { statsRoutes } from './routes/stats.js';
import { lineSeriesRoutes } from './routes/line-series.js';
import { DEFAULT_SHIFTS, type Shift } from './line-series.js';
import { resultRoutes } from './routes/results.js';
import { consoleRoutes, type ConsoleRouteDeps } from './routes/console.js';
import { eventRoutes } from './routes/events.js';
import type { EdgeFeed } from './edge-feed.js';
import { modelRoutes } from './routes/models.js';
import { modelPackRoutes } from './routes/model-pack.js';
import { configRoutes } from './routes/config.js';
import { rolloutRoutes } from './routes/rollouts.js';
import { rolloutEventRoutes } from './routes/rollout-events.js';
import { imageRoutes, type ImageRouteDeps } from './routes/images.js';
import { enrollRoutes, type EnrollRouteDeps } from './routes/enroll.js';
import type { ControlDeps, RouteDeps } from './routes/deps.js';
import type { IdentityStore } from './identity-store.js';
import { installAuthorization, type Authorization } from './auth/authorize.js';
import { authRoutes } from './routes/auth.js';
import { userRoutes } from './routes/users.js';
import { createSignInLimiter, type SignInLimiter } from './sign-in-limiter.js';
import { FLEET_DEFAULTS } from './config.js';
import { trainingRoutes, type TrainingRouteDeps } from './routes/training.js';
import type { SseHubOptions } from './routes/sse.js';
import { reviewRoutes } from './routes/reviews.js';
import { datasetRoutes } from './routes/datasets.js';
import { goldenSetRoutes } from './routes/golden-set.js';
import type { GoldenSetStore } from './golden-set-store.js';
import type { ReviewStore } from './review-store.js';
import { alertRoutes, type AlertRouteDeps } from './routes/alerts.js';
import { webhookRoutes, type WebhookRouteDeps } from './routes/webhooks.js';
import type { FleetMetrics } from './fleet-metrics.js';
import { metricsRoutes } from './routes/metrics.js';
import { installApiDocsPermission, registerApiDocs, registerOpenApi } from './openapi.js';
import { explainRoutes } from './routes/explain.js';
import type { Explainer } from './explainer.js';
import { routeLeaderWrites, type LeaderRouting } from './leader-forward.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The routes and the permission each declares (fleet-manager/auth/authorize.ts). */
    authorization: Authorization;
  }
}

export interface AppDeps {
  store: FleetStore;
  /** Users, sessions, tokens, edge credentials and the audit log: every route checks its caller here. */
  identity: IdentityStore;
  /** Drops an edge's live connections on the embedded broker (after its credentials are revoked). */
  disconnectEdge?: (edgeId: string) => number;
  logger: Logger;
  /** Live MQTT and ingest status for /health; omitted when the app runs without MQTT. */
  status?: () => { mqttConnected: boolean; ingest: IngestCounters };
  /** Clock for default time ranges and uptime; Date.now by default. */
  now?: () => number;
  /** Registry, configuration layers and rollouts; their routes exist only when given. */
  control?: ControlDeps;
  /** Result images (upload and download routes, `hasImage` in result views); absent: no image routes. */
  images?: ImageRouteDeps;
  /** PEM certificate and key: the server speaks HTTPS only (docs/SECURITY.md ("Transport: TLS")). */
  https?: { cert: Buffer; key: Buffer };
  /** What an edge's enrollment answers besides its credential, and its guessing limit. */
  enroll?: Omit<EnrollRouteDeps, 'identity'>;
  /** Sessions and sign-in (defaults: config auth.*; a limiter on the app's clock). */
  /** The live stream: which edges changed (ingest notifies the feed); `GET /api/events` exists only when given. */
  events?: { feed: EdgeFeed; heartbeatMs?: number; maxBufferedBytes?: number; /** Which rollouts changed; the rollout streams exist only when given (with control). */ rollouts?: EdgeFeed };
  /** Where the built console is (default dist/console). */
  console?: ConsoleRouteDeps;
  auth?: { sessionTtlMs?: number; signInLimiter?: SignInLimiter; /** false: every request is anonymous (config auth.enabled). */ enabled?: boolean };
  /** The shift calendar of the line page (config `shifts`); absent: the default one. */
  shifts?: readonly Shift[];
  /** Training jobs and backbones (issue 15); absent: no training routes. */
  training?: Omit<TrainingRouteDeps, keyof SseHubOptions>;
  /** Inspectors' reviews (issue 16): review, accuracy and dataset-export routes; they also need `images`. */
  reviews?: ReviewStore;
  /** Alerts (issue 17) and their webhooks; absent: no alert or webhook routes. */
  alerts?: AlertRouteDeps & { webhooks?: Omit<WebhookRouteDeps, 'now'> };
  /** The edges' golden-set reports (issue 17); absent: no `GET /api/edges/:id/golden-set`. */
  goldenSets?: Pick<GoldenSetStore, 'forEdge'>;
  /** Prometheus metrics (fleet-metrics.ts): HTTP answers are counted and `GET /metrics` exists only when given. */
  metrics?: FleetMetrics;
  /** Occlusion maps of classifier results on demand (issue 17); they also need `images`. */
  explainer?: Explainer;
  /** Several instances (issue 18): `x-osprey-leader` on every answer, leader writes forwarded by a follower. */
  leaderWrites?: LeaderRouting;
}

/** Builds the app with every route registered; the caller listens (or injects) and closes it. */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const now = deps.now ?? Date.now;
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // The console makes many small requests; per-request info lines would drown everything else.
    logController: new LogController({ disableRequestLogging: true }),
    // Fastify's own ajv (not protocol's) because query strings need type coercion.
    ajv: { customOptions: { removeAdditional: false } },
    // The router's own refusals (bad percent-encoding, over-long parameter) in the one error shape, not Fastify's.
    frameworkErrors: (err, _req, reply) =>
      (reply as unknown as FastifyReply).code(err.statusCode && err.statusCode < 500 ? err.statusCode : 400).send({ error: 'OSP_ERR_BAD_REQUEST', message: routerErrorMessage(err) } satisfies ErrorBody),
    ...(deps.https ? { https: deps.https } : {}),
  }) as FastifyInstance;

  app.addHook('onResponse', async (req, reply) => {
    req.log.debug({ method: req.method, url: req.url, statusCode: reply.statusCode, ms: reply.elapsedTime }, 'request completed');
  });
  deps.metrics?.instrument(app);

  app.setErrorHandler<FastifyError | OspreyError>(async (err, req, reply) => {
    const body = errorBody(err);
    const status =
      err instanceof OspreyError ? httpStatusFor(err.code) : err.statusCode && err.statusCode < 500 ? err.statusCode : 500;
    // A 5xx the protocol maps (507: a quota; 503: busy) is the sender's to read; any other 5xx is a bug, kept in the log.
    const unexpected = status >= 500 && !(err instanceof OspreyError && status !== 500);
    if (unexpected) req.log.error({ err, url: req.url }, 'request failed');
    else if (status >= 500) req.log.warn({ code: body.error, reason: body.message, url: req.url }, 'request refused');
    // The refused body may be unread: close the connection rather than read and discard it.
    if (status === 413) reply.header('connection', 'close');
    return reply.code(status).send(unexpected ? { error: 'OSP_ERR_INTERNAL', message: 'internal error; see the fleet manager log' } : body);
  });

  // Before the authorization hooks: a follower's leader writes are authorized (and audited) by the leader alone.
  if (deps.leaderWrites) routeLeaderWrites(app, deps.leaderWrites);
  // Before the authorization hook, which refuses a route without a permission: the API reader's own routes get theirs.
  installApiDocsPermission(app);
  // Before any route: each route's registration is checked for a declared permission.
  app.decorate('authorization', installAuthorization(app, { identity: deps.identity, logger: deps.logger, enabled: deps.auth?.enabled !== false }));

  app.setNotFoundHandler(async (req, reply) =>
    reply.code(404).send({ error: 'OSP_ERR_NOT_FOUND', message: `no route ${req.method} ${safeLine(req.url.split('?')[0]!, 200)}` } satisfies ErrorBody),
  );

  // ajv coerces "1e400" or "Infinity" in a URL to Infinity and then skips minimum/maximum (they
  // apply to finite numbers only): `limit=1e400` reached SQLite and was a 500.
  app.addHook('preHandler', async (req) => {
    for (const [where, values] of [['querystring', req.query], ['params', req.params]] as const) {
      for (const [name, v] of Object.entries((values ?? {}) as Record<string, unknown>)) {
        if (typeof v === 'number' && !Number.isFinite(v)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `${where}/${safeLine(name, 64)} must be a finite number`);
      }
    }
  });

  // Before any route: the OpenAPI document collects every route as it is registered.
  await registerOpenApi(app);

  const routeDeps: RouteDeps = { store: deps.store, now, startedAt: now() };
  if (deps.status) routeDeps.status = deps.status;
  if (deps.control) routeDeps.control = deps.control;
  if (deps.images) routeDeps.images = deps.images.images;
  await app.register(healthRoutes, routeDeps);
  await app.register(edgeRoutes, routeDeps);
  await app.register(edgeHistoryRoutes, routeDeps);
  if (deps.goldenSets) await app.register(goldenSetRoutes, { store: deps.store, goldenSets: deps.goldenSets });
  await app.register(enrollRoutes, { ...deps.enroll, identity: deps.identity });
  await app.register(statsRoutes, routeDeps);
  await app.register(lineSeriesRoutes, { ...routeDeps, shifts: deps.shifts ?? DEFAULT_SHIFTS });
  await app.register(resultRoutes, routeDeps);
  await app.register(consoleRoutes, deps.console ?? {});
  if (deps.events) await app.register(eventRoutes, { ...routeDeps, ...deps.events, identity: deps.identity, ...(deps.alerts && { alerts: deps.alerts.alerts }) });
  await app.register(authRoutes, {
    identity: deps.identity,
    sessionTtlMs: deps.auth?.sessionTtlMs ?? FLEET_DEFAULTS.auth.sessionTtlMs,
    limiter: deps.auth?.signInLimiter ?? createSignInLimiter({ now }),
  });
  await app.register(userRoutes, { identity: deps.identity, now, ...(deps.disconnectEdge && { disconnectEdge: deps.disconnectEdge }) });
  if (deps.images) await app.register(imageRoutes, { ...deps.images, fleet: deps.store });
  if (deps.images && deps.explainer) await app.register(explainRoutes, { explainer: deps.explainer, images: deps.images.images });
  if (deps.control) {
    await app.register(modelRoutes, routeDeps);
    await app.register(modelPackRoutes, routeDeps);
    await app.register(configRoutes, routeDeps);
    await app.register(rolloutRoutes, routeDeps);
    if (deps.events?.rollouts) await app.register(rolloutEventRoutes, { ...routeDeps, ...deps.events, rollouts: deps.events.rollouts, identity: deps.identity });
  }
  if (deps.training) await app.register(trainingRoutes, { ...deps.training, identity: deps.identity, ...(deps.events?.heartbeatMs !== undefined && { heartbeatMs: deps.events.heartbeatMs }) });
  if (deps.reviews && deps.images) {
    const reviewDeps = { store: deps.store, images: deps.images.images, reviews: deps.reviews, now, ...(deps.control && { control: deps.control }) };
    await app.register(reviewRoutes, reviewDeps);
    await app.register(datasetRoutes, reviewDeps);
  }
  if (deps.alerts) await app.register(alertRoutes, deps.alerts);
  if (deps.alerts?.webhooks) await app.register(webhookRoutes, { ...deps.alerts.webhooks, now });
  if (deps.metrics) await app.register(metricsRoutes, { registry: deps.metrics.registry });
  await registerApiDocs(app);
  return app;
}

/** Maps any error to the one error shape; validation messages already name the field. */
function errorBody(err: FastifyError | OspreyError): ErrorBody {
  if (err instanceof OspreyError) return { error: err.code, message: safeLine(oneLine(err)) };
  if (err.validation && err.validation.length > 0) {
    // Fastify's message leaves out which property was unexpected; ajv's params have it.
    const message = err.validation
      .slice(0, 3)
      .map((v) => {
        const extra = v.keyword === 'additionalProperties' ? ` (${String(v.params.additionalProperty)})` : '';
        return `${err.validationContext ?? 'request'}${v.instancePath} ${v.message ?? v.keyword}${extra}`;
      })
      .join('; ');
    // Property names come from the request: escaped and cut.
    return { error: 'OSP_ERR_BAD_REQUEST', message: safeLine(message) };
  }
  return { error: 'OSP_ERR_BAD_REQUEST', message: safeLine(oneLine(err)) };
}
