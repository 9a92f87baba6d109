/**
 * Result images over HTTP (issue 5): edges upload kept images with
 * `PUT /api/results/:edgeId/:seq/image?store=ID` (idempotent), people and tools fetch them with
 * `GET /api/results/:edgeId/:seq/image[?store=ID]`. An anomaly model's heatmap (PNG) of a kept
 * defect image travels the same way at `…/:seq/heatmap` (same rules; stored beside the image).
 *
 * An upload is an edge's, for its own results only: the credential's edge must be `:edgeId`
 * (403), and the seq one that edge has produced as far as the fleet knows (see `checkProduced`),
 * so no one can plant an image on a result before the real one arrives.
 */
import { createReadStream } from 'node:fs';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { StoreIdSchema } from '../../protocol/messages.js';
import { EDGE_ID_PATTERN } from '../../protocol/topics.js';
import { binaryResponse, errorResponses } from '../http-schemas.js';
import { IMAGE_KINDS, type FleetImageStore, type ImageKind, type StoredImage } from '../image-store.js';
import type { FleetStore } from '../store.js';
import { lastSeqOf } from '../edge-last-seq.js';
import { can } from '../auth/principal.js';

/** Content types an image upload may carry (what cameras produce). */
export const IMAGE_UPLOAD_TYPES = ['image/jpeg', 'image/png', 'image/webp', 'image/tiff', 'image/bmp', 'application/octet-stream'];

export interface ImageRouteDeps {
  images: FleetImageStore;
  /** Largest accepted image upload in bytes. */
  maxImageBytes: number;
  /** Image bytes held at once across all uploads (images.maxInFlightBytes); default maxImageBytes × 4. */
  maxInFlightBytes?: number;
}

/** What the upload route reads besides images: how far each edge's result stores have got. */
export type ImageUploadDeps = ImageRouteDeps & { fleet: Pick<FleetStore, 'getEdge' | 'storeAckedSeq'> };

const ParamsSchema = Type.Object(
  { edgeId: Type.String({ pattern: EDGE_ID_PATTERN }), seq: Type.Integer({ minimum: 1 }) },
  { additionalProperties: false },
);
const QuerySchema = Type.Object({ store: Type.Optional(StoreIdSchema) }, { additionalProperties: false });
const HeadersSchema = Type.Object({ 'x-osprey-sha256': Type.Optional(Type.String({ pattern: '^[0-9a-fA-F]{64}$' })) });
/** A heatmap is rendered by the edge as PNG; nothing else is taken for it. */
const HEATMAP_TYPE = 'image/png';

export const ImageReceiptSchema = Type.Object(
  {
    edgeId: Type.String(),
    storeId: Type.Union([Type.String(), Type.Null()]),
    seq: Type.Integer(),
    sha256: Type.String(),
    bytes: Type.Integer(),
    contentType: Type.String(),
    created: Type.Boolean({ description: 'false: this image was already stored for this result' }),
  },
  { additionalProperties: false },
);

type Req = { Params: Static<typeof ParamsSchema>; Querystring: Static<typeof QuerySchema>; Headers: Static<typeof HeadersSchema> };

const describe = (p: { edgeId: string; seq: number }, store?: string) => `${p.edgeId}/${p.seq}${store ? ` (store ${store})` : ''}`;

/**
 * Throws unless `seq` of `storeId` is a result the edge has produced, as far as the fleet knows.
 * The edge's current store: up to the highest of what the fleet holds and the lastSeq the edge
 * last reported (state, telemetry), so an image that overtakes its result is not refused for
 * good but answered 503 OSP_ERR_RESULT_UNSEEN, which the edge retries until the fleet has heard
 * of it. A store the fleet knows that is no longer current (a replaced edge database): only the
 * results that reached the fleet (409 otherwise; the rest never will). A store the fleet has
 * not heard of yet (just replaced; the edge reports it on connect): 503, retried.
 */
async function checkProduced(fleet: ImageUploadDeps['fleet'], edgeId: string, storeId: string, seq: number): Promise<void> {
  const unseen = (why: string) => new OspreyError('OSP_ERR_RESULT_UNSEEN', `result ${describe({ edgeId, seq }, storeId)} is not known to the fleet yet (${why}); retry after the edge's results sync`);
  const edge = await fleet.getEdge(edgeId);
  if (!edge) throw unseen('the edge has not reported');
  if (storeId === edge.storeId) {
    const highest = Math.max(lastSeqOf(edge) ?? 0, edge.ackedSeq);
    if (seq > highest) throw unseen(`the edge's highest seq is ${highest}`);
    return;
  }
  const acked = await fleet.storeAckedSeq(edgeId, storeId);
  if (acked === null) throw unseen(`store ${storeId || "''"} is not the edge's current one`);
  if (seq > acked) {
    throw new OspreyError('OSP_ERR_CONFLICT', `result ${describe({ edgeId, seq }, storeId)} never reached the fleet, and that store is no longer the edge's (it reached seq ${acked})`);
  }
}

/** Registers the image upload and download routes. */
export const imageRoutes: FastifyPluginAsync<ImageUploadDeps> = async (app, deps) => {
  // Raw bytes; only this plugin's routes see these parsers.
  app.addContentTypeParser(IMAGE_UPLOAD_TYPES, { parseAs: 'buffer', bodyLimit: deps.maxImageBytes }, (_req, body, done) => done(null, body));

  // Each upload is held whole until stored: before its body is read, it reserves what it may hold
  // (its content-length, or maxImageBytes if it does not say), and is refused while the
  // reservations of all uploads would pass the cap. Given back when the response closes.
  const maxInFlight = deps.maxInFlightBytes ?? deps.maxImageBytes * 4;
  let inFlight = 0;
  const reserve = async (req: FastifyRequest, reply: FastifyReply) => {
    const declared = Number(req.headers['content-length']);
    const n = Math.min(Number.isFinite(declared) ? declared : deps.maxImageBytes, deps.maxImageBytes);
    if (inFlight + n > maxInFlight) {
      // The body is left unread: close the connection rather than read and discard it.
      reply.header('retry-after', '1').header('connection', 'close');
      throw new OspreyError('OSP_ERR_BUSY', `image uploads in flight would exceed images.maxInFlightBytes (${maxInFlight} bytes); retry later`);
    }
    inFlight += n;
    reply.raw.once('close', () => (inFlight -= n));
  };

  // Before the body is read: whose result this is, and whether it exists. Params are not
  // schema-checked yet; a malformed one is left to the schema (400).
  const authorizeUpload = async (req: FastifyRequest<Req>, reply: FastifyReply) => {
    const p = req.principal;
    const { edgeId } = req.params;
    // An edge uploads only its own images; anonymous only on a fleet with authentication off (can() checks).
    const allowed = p?.kind === 'edge' ? p.id === edgeId : p?.kind === 'anonymous' && can(p, 'images:upload');
    if (!allowed) {
      reply.header('connection', 'close');
      throw new OspreyError('OSP_ERR_FORBIDDEN', `the credential of ${p?.kind === 'edge' ? `edge ${p.id}` : 'a person'} cannot upload images of edge ${edgeId}`);
    }
    const seq = Number(req.params.seq);
    const store = req.query.store ?? '';
    if (!Number.isSafeInteger(seq) || seq < 1 || typeof store !== 'string') return;
    try {
      await checkProduced(deps.fleet, edgeId, store, seq);
    } catch (err) {
      reply.header('connection', 'close');
      if (err instanceof OspreyError && err.code === 'OSP_ERR_RESULT_UNSEEN') {
        reply.header('retry-after', '5');
      }
      throw err;
    }
  };

  for (const kind of IMAGE_KINDS) registerKind(kind);

  function registerKind(kind: ImageKind): void {
    app.put<Req>(
      `/api/results/:edgeId/:seq/${kind}`,
      {
        // Edge data, not a change people make: not audited (the result's ingest is not either).
        config: { permission: 'images:upload', audit: false },
        bodyLimit: deps.maxImageBytes,
        // The memory cap first: it reserves in the same turn as the headers arrive, whoever is asking.
        onRequest: [reserve, authorizeUpload],
        schema: {
          params: ParamsSchema,
          querystring: QuerySchema,
          headers: HeadersSchema,
          response: { 200: ImageReceiptSchema, 201: ImageReceiptSchema, ...errorResponses },
        },
      },
      async (req, reply) => {
        if (!Buffer.isBuffer(req.body)) {
          throw new OspreyError('OSP_ERR_CONTENT_TYPE', `send the image bytes as one of ${IMAGE_UPLOAD_TYPES.join(', ')}`);
        }
        if (req.body.length === 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', `the ${kind} has zero bytes`);
        const contentType = String(req.headers['content-type']).split(';')[0]!.trim().toLowerCase();
        if (kind === 'heatmap' && contentType !== HEATMAP_TYPE) {
          throw new OspreyError('OSP_ERR_CONTENT_TYPE', `a heatmap is sent as ${HEATMAP_TYPE}, not ${contentType}`);
        }
        const key = { edgeId: req.params.edgeId, storeId: req.query.store ?? '', seq: req.params.seq };
        const { image, created } = await deps.images.put(key, req.body, contentType, req.headers['x-osprey-sha256'], kind);
        return reply.code(created ? 201 : 200).send({
          edgeId: image.edgeId,
          storeId: image.storeId || null,
          seq: image.seq,
          sha256: image.sha256,
          bytes: image.bytes,
          contentType: image.contentType,
          created,
        });
      },
    );

    app.get<Req>(
      `/api/results/:edgeId/:seq/${kind}`,
      { config: { permission: 'results:read' }, schema: { params: ParamsSchema, querystring: QuerySchema, response: { 200: binaryResponse(`the result's ${kind} as uploaded`, 'image/jpeg', 'image/png', 'image/webp'), ...errorResponses } } },
      async (req, reply) => {
        const { store } = req.query;
        let image: StoredImage | null;
        if (store !== undefined) image = await deps.images.get({ edgeId: req.params.edgeId, storeId: store, seq: req.params.seq }, kind);
        else {
          const found = await deps.images.find(req.params.edgeId, req.params.seq, kind);
          // Two stores of one edge (a replaced database) can both have this seq: never guess which.
          if (found.length > 1) {
            throw new OspreyError(
              'OSP_ERR_CONFLICT',
              `result ${describe(req.params)} exists in ${found.length} stores of this edge; add ?store= (${found.map((i) => i.storeId || "''").join(', ')})`,
            );
          }
          image = found[0] ?? null;
        }
        if (!image) throw new OspreyError('OSP_ERR_NOT_FOUND', `no ${kind} for result ${describe(req.params, store)}`);
        const stream = createReadStream(image.file);
        // The bytes of a result never change: cache them for good, keyed by their hash.
        return reply
          .header('content-type', image.contentType)
          .header('content-length', String(image.bytes))
          .header('etag', `"${image.sha256}"`)
          .header('cache-control', 'private, max-age=31536000, immutable')
          .header('x-osprey-sha256', image.sha256)
          .send(stream);
      },
    );
  }
};
