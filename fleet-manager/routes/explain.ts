/**
 * Occlusion maps of classifier results (issue 17): `POST /api/results/:edgeId/:seq/occlusion`
 * computes one (explainer.ts) and answers its numbers; `GET …/occlusion` serves the stored PNG.
 * Results are addressed as their images are (routes/images.ts): `?store=` names the edge's result
 * store when the seq exists in more than one.
 */
import { createReadStream } from 'node:fs';
import type { FastifyPluginAsync } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { StoreIdSchema } from '../../protocol/messages.js';
import { EDGE_ID_PATTERN } from '../../protocol/topics.js';
import { binaryResponse, errorResponses } from '../http-schemas.js';
import type { Explainer } from '../explainer.js';
import { resultKeyString, type FleetImageStore, type StoredImage } from '../image-store.js';

export interface ExplainRouteDeps {
  explainer: Explainer;
  images: FleetImageStore;
}

const ParamsSchema = Type.Object({ edgeId: Type.String({ pattern: EDGE_ID_PATTERN }), seq: Type.Integer({ minimum: 1 }) }, { additionalProperties: false });
const QuerySchema = Type.Object({ store: Type.Optional(StoreIdSchema) }, { additionalProperties: false });
type Req = { Params: Static<typeof ParamsSchema>; Querystring: Static<typeof QuerySchema> };

export const OcclusionSchema = Type.Object(
  {
    edgeId: Type.String(),
    storeId: Type.Union([Type.String(), Type.Null()]),
    seq: Type.Integer(),
    model: Type.String({ description: 'the model version that made the result (name@version), whose package was run' }),
    label: Type.String({ description: "the label followed: the model's top-1 label on the unaltered image" }),
    score: Type.Number({ description: "that label's probability on the unaltered image" }),
    cols: Type.Integer({ description: 'grid columns' }),
    rows: Type.Integer({ description: 'grid rows' }),
    width: Type.Integer({ description: 'image width in pixels' }),
    height: Type.Integer({ description: 'image height in pixels' }),
    drops: Type.Array(Type.Number(), { description: "row-major, one per cell: score minus the label's probability with that cell greyed" }),
    url: Type.String({ description: 'the heatmap PNG (drops scaled so the largest is red), GET with the same ?store=' }),
  },
  { additionalProperties: false },
);

const urlOf = (edgeId: string, seq: number, storeId: string) =>
  `/api/results/${encodeURIComponent(edgeId)}/${seq}/occlusion${storeId ? `?store=${encodeURIComponent(storeId)}` : ''}`;

export const explainRoutes: FastifyPluginAsync<ExplainRouteDeps> = async (app, deps) => {
  app.post<Req>(
    '/api/results/:edgeId/:seq/occlusion',
    { config: { permission: 'results:read' }, schema: { params: ParamsSchema, querystring: QuerySchema, response: { 200: OcclusionSchema, ...errorResponses } } },
    async (req, reply) => {
      const { edgeId, seq } = req.params;
      let e;
      try {
        e = await deps.explainer.occlusion(edgeId, seq, req.query.store);
      } catch (err) {
        if (err instanceof OspreyError && err.code === 'OSP_ERR_BUSY') reply.header('retry-after', '5');
        throw err;
      }
      req.auditNote = { action: 'result.occlusion', target: `result:${resultKeyString(e)}`, after: { model: e.model, label: e.label, sha256: e.image.sha256 } };
      return {
        edgeId: e.edgeId,
        storeId: e.storeId || null,
        seq: e.seq,
        model: e.model,
        label: e.label,
        score: e.score,
        cols: e.cols,
        rows: e.rows,
        width: e.width,
        height: e.height,
        drops: e.drops,
        url: urlOf(e.edgeId, e.seq, e.storeId),
      };
    },
  );

  app.get<Req>(
    '/api/results/:edgeId/:seq/occlusion',
    { config: { permission: 'results:read' }, schema: { params: ParamsSchema, querystring: QuerySchema, response: { 200: binaryResponse('the occlusion map (PNG heatmap)', 'image/png'), ...errorResponses } } },
    async (req, reply) => {
      const { edgeId, seq } = req.params;
      const { store } = req.query;
      let image: StoredImage | null;
      if (store !== undefined) image = await deps.images.get({ edgeId, storeId: store, seq }, 'occlusion');
      else {
        const found = await deps.images.find(edgeId, seq, 'occlusion');
        if (found.length > 1) throw new OspreyError('OSP_ERR_CONFLICT', `result ${edgeId}/${seq} has occlusion maps in ${found.length} stores of this edge; add ?store=`);
        image = found[0] ?? null;
      }
      if (!image) throw new OspreyError('OSP_ERR_NOT_FOUND', `no occlusion map for result ${edgeId}/${seq}; POST to compute one`);
      // Recomputing replaces it: revalidate rather than cache for good.
      return reply
        .header('content-type', image.contentType)
        .header('content-length', String(image.bytes))
        .header('etag', `"${image.sha256}"`)
        .header('cache-control', 'private, no-cache')
        .send(createReadStream(image.file));
    },
  );
};
