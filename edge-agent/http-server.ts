/**
 * The edge's local HTTP API (the sidecar pattern for PLC gateways and line software):
 * `POST /inspect` takes raw image bytes and answers the verdict once the result is persisted;
 * `GET /health` reports the agent's state. Every route has a schema; every error answers
 * `{ error: CODE, message: one line }`.
 */
import { fastify, LogController, type FastifyError, type FastifyInstance } from 'fastify';
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import type { Logger } from 'pino';
import { OspreyError, httpStatusFor, isOspreyError, oneLine, safeLine } from '../protocol/errors.js';
import { DetectionSchema, TelemetryMessageSchema, Verdict } from '../protocol/messages.js';
import { validatorFor } from '../protocol/validator.js';
import { MonitorFiguresSchema, type MonitorFigures } from '../protocol/monitoring.js';
import type { Pipeline } from './pipeline.js';
import { createBodyReader } from './http-body.js';
import { requireLoopback } from './loopback-only.js';
import { EDGE_OPENAPI_URL, registerEdgeOpenApi } from './edge-openapi.js';

/** Content types accepted by POST /inspect; anything else is 415. */
export const IMAGE_CONTENT_TYPES = [
  'image/jpeg',
  'image/png',
  'image/webp',
  'image/tiff',
  'image/bmp',
  'application/octet-stream',
] as const;

const ErrorBody = Type.Object({ error: Type.String(), message: Type.String() }, { additionalProperties: false });
export type ErrorBody = Static<typeof ErrorBody>;

export const InspectResponseSchema = Type.Object(
  {
    seq: Type.Integer({ minimum: 0, description: '0: answered but not stored (result quota full; see docs/edge-agent.md)' }),
    verdict: Verdict,
    label: Type.String(),
    score: Type.Number(),
    threshold: Type.Number(),
    model: Type.String(),
    camera: Type.String(),
    latencyMs: Type.Number(),
    detections: Type.Optional(Type.Array(DetectionSchema)),
  },
  { additionalProperties: false },
);
export type InspectResponse = Static<typeof InspectResponseSchema>;

const InspectQuery = Type.Object(
  {
    camera: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
    frame: Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
  },
  { additionalProperties: false },
);
const InspectHeaders = Type.Object({
  'x-osprey-camera': Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  'x-osprey-frame': Type.Optional(Type.String({ minLength: 1, maxLength: 512 })),
});

export const HealthSchema = Type.Object(
  {
    status: Type.Union([Type.Literal('ok'), Type.Literal('stopping')]),
    edgeId: Type.String(),
    line: Type.String(),
    agentVersion: Type.String(),
    uptimeS: Type.Number(),
    model: Type.String(),
    queue: Type.Object({ depth: Type.Integer(), running: Type.Integer(), max: Type.Integer() }),
    lastSeq: Type.Integer(),
    ackedSeq: Type.Integer(),
    pendingResults: Type.Integer(),
    fleet: Type.Object({
      configured: Type.Boolean(),
      connected: Type.Boolean(),
      messagesDropped: Type.Integer(),
      acksRejected: Type.Integer({ description: 'acks ignored in whole or part: retained, or beyond the highest seq sent' }),
      lastError: Type.Optional(Type.String({ description: 'why the link is not up, e.g. the fleet certificate was refused' })),
    }),
    failures: Type.Record(Type.String(), Type.Integer()),
    storeId: Type.Optional(Type.Union([Type.String(), Type.Null()], { description: 'the result store identity; null for a store from before storeIds' })),
    alarms: Type.Optional(Type.Array(Type.String(), { description: 'e.g. result-quota: verdicts answered but not stored' })),
    storage: Type.Optional(TelemetryMessageSchema.properties.storage),
    monitor: Type.Optional(MonitorFiguresSchema),
  },
  { additionalProperties: false },
);
export type Health = Static<typeof HealthSchema>;

export interface HttpServerOptions {
  pipeline: Pipeline;
  cameras: string[];
  bodyLimitBytes: number;
  /**
   * Request body bytes held at once, being read or being inspected (default the larger of
   * 128 MiB and bodyLimitBytes). A request that would go over it is 503 before its body is read
   * (declared length) or as soon as its streamed body does.
   */
  maxInFlightBytes?: number;
  logger: Logger;
  health(): Health;
  /** Image health and score drift (monitor.ts): POST /monitor/reference starts a new reference. */
  monitor?: { resetReference(reason: string): void; figures(): MonitorFigures };
  /** Requests refused before reaching the pipeline (415, 413, 400). Must not throw. */
  onReject?: (err: OspreyError) => void;
  /** The Prometheus exposition (edge-prometheus.ts); absent: no GET /metrics. */
  metrics?: () => Promise<{ contentType: string; text: string }>;
}

/** Translates fastify's own errors (parsing, limits, validation) into Osprey codes. */
function fromFastifyError(err: FastifyError, bodyLimit: number, contentType: string | undefined): OspreyError {
  // Raised by our own hooks (body limits), possibly through fastify's body reader.
  if (isOspreyError(err)) return err;
  switch (err.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new OspreyError(
        'OSP_ERR_CONTENT_TYPE',
        `unsupported content type ${JSON.stringify(contentType ?? '(none)')}; send one of ${IMAGE_CONTENT_TYPES.join(', ')}`,
      );
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new OspreyError('OSP_ERR_IMAGE_TOO_LARGE', `request body exceeds http.bodyLimitBytes (${bodyLimit} bytes)`);
  }
  if (err.validation) return new OspreyError('OSP_ERR_BAD_REQUEST', oneLine(err), { cause: err });
  if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) {
    return new OspreyError('OSP_ERR_BAD_REQUEST', oneLine(err), { cause: err });
  }
  return new OspreyError('OSP_ERR_INTERNAL', oneLine(err), { cause: err });
}

/**
 * Builds the Fastify app (not listening yet). Route validation uses the protocol's one ajv
 * instance, so HTTP and MQTT inputs are checked by the same code.
 */
export function buildHttpServer(opts: HttpServerOptions): FastifyInstance {
  const log = opts.logger;
  const app = fastify({
    loggerInstance: log,
    // One line per frame at info would drown the log; failures are logged below.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: opts.bodyLimitBytes,
    forceCloseConnections: 'idle',
  }) as unknown as FastifyInstance;

  app.setValidatorCompiler(({ schema }) => validatorFor(schema as TSchema));
  // Before any route: the edge's OpenAPI document collects every route as it is registered.
  registerEdgeOpenApi(app);
  // Only image bytes are accepted: without the default JSON/text parsers those are 415 too.
  app.removeAllContentTypeParsers();
  // Our own reader, not parseAs: it refuses by content-length and caps the bytes of all requests together.
  const bodies = createBodyReader({
    bodyLimitBytes: opts.bodyLimitBytes,
    maxInFlightBytes: opts.maxInFlightBytes ?? Math.max(opts.bodyLimitBytes, 128 * 1024 * 1024),
  });
  app.addHook('onRequest', async (request, reply) => bodies.track(request, reply));
  app.addContentTypeParser([...IMAGE_CONTENT_TYPES], (request, payload, done) => bodies.read(request, payload, done));

  const send = (reply: { code(n: number): unknown; header(k: string, v: string): unknown }, err: OspreyError) => {
    reply.code(httpStatusFor(err.code));
    if (err.code === 'OSP_ERR_QUEUE_FULL') reply.header('retry-after', '1');
    // Messages may quote the request (a camera name): escaped and cut to one line.
    return { error: err.code, message: safeLine(oneLine(err)) } satisfies ErrorBody;
  };

  app.setErrorHandler((error: FastifyError, request, reply) => {
    const err = fromFastifyError(error, opts.bodyLimitBytes, request.headers['content-type']);
    // A refused body may be unread: close the connection rather than read and discard it.
    if (err.code === 'OSP_ERR_IMAGE_TOO_LARGE' || err.code === 'OSP_ERR_QUEUE_FULL') reply.header('connection', 'close');
    if (err.code === 'OSP_ERR_INTERNAL') log.error({ err: error, url: request.url }, 'request failed');
    else log.warn({ code: err.code, reason: err.message, url: request.url }, 'request rejected');
    opts.onReject?.(err);
    return reply.send(send(reply, err));
  });
  app.setNotFoundHandler((request, reply) =>
    reply.send(send(reply, new OspreyError('OSP_ERR_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`))),
  );

  app.post<{ Querystring: Static<typeof InspectQuery>; Headers: Static<typeof InspectHeaders> }>(
    '/inspect',
    {
      // The body is raw image bytes (no JSON schema can describe it); query, headers and answers are checked.
      schema: {
        querystring: InspectQuery,
        headers: InspectHeaders,
        response: { 200: InspectResponseSchema, '4xx': ErrorBody, '5xx': ErrorBody },
      },
    },
    async (request, reply) => {
      const camera = request.query.camera ?? request.headers['x-osprey-camera'] ?? opts.cameras[0]!;
      const frame = request.query.frame ?? request.headers['x-osprey-frame'];
      if (!opts.cameras.includes(camera)) {
        const err = new OspreyError('OSP_ERR_BAD_REQUEST', `unknown camera "${camera}"; this edge has ${opts.cameras.join(', ')}`);
        log.warn({ code: err.code, reason: err.message, camera }, 'inspection rejected');
        opts.onReject?.(err);
        return send(reply, err);
      }
      const image = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      try {
        const { record, inspection } = await opts.pipeline.submit(image, {
          camera,
          source: 'http',
          ...(frame !== undefined ? { frame } : {}),
        });
        const body: InspectResponse = {
          seq: record.seq,
          verdict: record.verdict,
          label: record.label,
          score: record.score,
          threshold: inspection.threshold,
          model: record.model,
          camera: record.camera,
          latencyMs: record.latencyMs,
        };
        if (record.detections) body.detections = record.detections;
        return body;
      } catch (err) {
        // The pipeline has already counted it; only answer and log.
        const ospErr = isOspreyError(err) ? err : new OspreyError('OSP_ERR_INTERNAL', oneLine(err), { cause: err });
        if (httpStatusFor(ospErr.code) >= 500 && ospErr.code !== 'OSP_ERR_QUEUE_FULL' && ospErr.code !== 'OSP_ERR_SHUTTING_DOWN') {
          log.error({ err: ospErr, camera }, 'inspection failed');
        } else {
          log.warn({ code: ospErr.code, reason: ospErr.message, camera }, 'inspection rejected');
        }
        return send(reply, ospErr);
      }
    },
  );

  app.get('/health', { schema: { response: { 200: HealthSchema } } }, async () => opts.health());

  const metrics = opts.metrics;
  if (metrics) {
    app.get(
      '/metrics',
      { schema: { summary: 'Prometheus metrics (text exposition format 0.0.4)', response: { 200: { description: 'every osprey_edge_* metric', content: { 'text/plain': { schema: Type.String() } } } } } },
      async (_req, reply) => {
        const { contentType, text } = await metrics();
        return reply.type(contentType).header('cache-control', 'no-store').send(text);
      },
    );
  }

  app.get(
    EDGE_OPENAPI_URL,
    { schema: { summary: 'This OpenAPI 3 document', response: { 200: { description: 'the document', content: { 'application/json': { schema: Type.Object({}, { additionalProperties: true }) } } } } } },
    async () => app.swagger(),
  );

  const monitor = opts.monitor;
  if (monitor) {
    // An operator (or the line's software) says "this is how the camera should look now": the
    // next frames become the reference of image health and score drift; alarms in force clear.
    app.post('/monitor/reference', { schema: { response: { 200: MonitorFiguresSchema } } }, async (req) => {
      requireLoopback(req);
      monitor.resetReference('operator request');
      log.info('monitor reference reset by request');
      return monitor.figures();
    });
  }

  return app;
}
