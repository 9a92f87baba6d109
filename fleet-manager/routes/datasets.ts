/**
 * `GET /api/datasets/export?line=&format=imagefolder|yolo|coco&from=&to=`: a line's reviewed
 * images with the labels given in review, as a tar stream (fleet-manager/dataset-export.ts).
 * The list of frames is read first (bounded by maxFrames); the images are then streamed one by one.
 */
import { Readable } from 'node:stream';
import type { FastifyPluginAsync } from 'fastify';
import sharp from 'sharp';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import type { FleetImageStore } from '../image-store.js';
import type { FleetStore } from '../store.js';
import type { ReviewRecord, ReviewStore } from '../review-store.js';
import { ExportQuerySchema, type ExportQuery } from '../review-schemas.js';
import { datasetEntries, tarChunks, type ExportFrame } from '../dataset-export.js';
import { extensionOf } from '../training-sources.js';
import { time } from './reviews.js';

export interface DatasetRouteDeps {
  store: Pick<FleetStore, 'getResult'>;
  images: Pick<FleetImageStore, 'get'>;
  reviews: Pick<ReviewStore, 'list'>;
  now: () => number;
  /** Most frames one export holds (default 20000): a larger range is refused, never cut silently. */
  maxFrames?: number;
}

export const datasetRoutes: FastifyPluginAsync<DatasetRouteDeps> = async (app, deps) => {
  const maxFrames = deps.maxFrames ?? 20_000;
  app.get<{ Querystring: ExportQuery }>(
    '/api/datasets/export',
    {
      config: { permission: 'results:read' },
      schema: { querystring: ExportQuerySchema, response: { 200: { type: 'string', description: 'application/x-tar' }, ...errorResponses } },
    },
    async (req, reply) => {
      const q = req.query;
      const from = q.from === undefined ? undefined : time('from', q.from);
      const to = q.to === undefined ? undefined : time('to', q.to);
      if (from !== undefined && to !== undefined && from >= to) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from must be before querystring/to');
      const reviews: ReviewRecord[] = [];
      for (let after: ReviewRecord | undefined; ; ) {
        const page = await deps.reviews.list({ line: q.line, ...(from !== undefined && { from }), ...(to !== undefined && { to }), limit: 500, ...(after && { after }) });
        reviews.push(...page);
        if (reviews.length > maxFrames) throw new OspreyError('OSP_ERR_BAD_REQUEST', `more than ${maxFrames} reviewed frames on line ${q.line} in this range; narrow it with from/to`);
        if (page.length < 500) break;
        after = page[page.length - 1];
      }
      const frames: ExportFrame[] = [];
      for (const review of reviews) {
        const image = await deps.images.get(review);
        if (!image) continue;
        const result = await deps.store.getResult(review.edgeId, review.storeId, review.seq);
        const frame: ExportFrame = { review, image, ext: await extensionOf(image.file, image.contentType), detections: result?.detections ?? [] };
        if (q.format !== 'imagefolder') {
          // The header only: the size YOLO normalises by and COCO records.
          const meta = await sharp(image.file).metadata().catch(() => null);
          if (meta?.width && meta.height) Object.assign(frame, { width: meta.width, height: meta.height });
        }
        frames.push(frame);
      }
      const entries = datasetEntries(frames, q.format, deps.now());
      const name = `${q.line.replace(/[^A-Za-z0-9._-]/g, '_')}-${q.format}.tar`;
      return reply
        .header('content-type', 'application/x-tar')
        .header('content-disposition', `attachment; filename="${name}"`)
        .header('x-osprey-frames', String(frames.length))
        .send(Readable.from(tarChunks(entries)));
    },
  );
};
