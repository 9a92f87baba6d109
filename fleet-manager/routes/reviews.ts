/**
 * Review by inspectors (issue 16): the queue of frames to review (`GET /api/review/queue`), a
 * result's review (`PUT`/`GET`/`DELETE /api/results/:edgeId/:seq/review?store=`) and a line's
 * accuracy figures per model version (`GET /api/lines/:line/accuracy`). Results are read through
 * FleetStore, images through FleetImageStore, reviews through ReviewStore.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { parseTime } from '../line-stats.js';
import { resultKeyString, type FleetImageStore, type ResultKey } from '../image-store.js';
import type { FleetStore, StoredResult } from '../store.js';
import type { AccuracyCounts, ReviewRecord, ReviewStore } from '../review-store.js';
import { callFacts, reviewedCall } from '../review-call.js';
import { describePrincipal } from '../auth/principal.js';
import type { ControlDeps } from './deps.js';
import {
  AccuracyQuerySchema,
  AccuracySchema,
  LineParamsSchema,
  ResultParamsSchema,
  ResultStoreQuerySchema,
  ReviewBodySchema,
  ReviewQueueQuerySchema,
  ReviewQueueSchema,
  ReviewViewSchema,
  type AccuracyFigures,
  type QueueItem,
  type ReviewBody,
  type ReviewQueueQuery,
  type ReviewView,
} from '../review-schemas.js';

export interface ReviewRouteDeps {
  store: FleetStore;
  images: FleetImageStore;
  reviews: ReviewStore;
  /** Thresholds and labels of calls; absent: the model's labels are unknown and thresholds 0.5. */
  control?: Pick<ControlDeps, 'store' | 'publisher'>;
  now: () => number;
  /** Most result rows one queue request reads (default 5000). */
  maxQueueScan?: number;
}

const PAGE = 200;

/** The image URL of a result, as the image routes answer it. */
export const imageUrl = (k: ResultKey, kind: 'image' | 'heatmap' = 'image') => `/api/results/${encodeURIComponent(k.edgeId)}/${k.seq}/${kind}${k.storeId ? `?store=${encodeURIComponent(k.storeId)}` : ''}`;

export const reviewView = (r: ReviewRecord): ReviewView => ({ ...r, storeId: r.storeId || null });

/** Rates from counts: null where nothing was reviewed to divide by. */
export function figures(c: AccuracyCounts): AccuracyFigures {
  const rate = (n: number, d: number) => (d > 0 ? n / d : null);
  return { ...c, falseCallRate: rate(c.falseCalls, c.defectCalls), confirmedDefectRate: rate(c.confirmedDefects, c.defectCalls) };
}

const keyOf = (r: StoredResult): ResultKey => ({ edgeId: r.edgeId, storeId: r.storeId ?? '', seq: r.seq });

export const reviewRoutes: FastifyPluginAsync<ReviewRouteDeps> = async (app, deps) => {
  const maxScan = deps.maxQueueScan ?? 5000;

  app.get<{ Querystring: ReviewQueueQuery }>(
    '/api/review/queue',
    { config: { permission: 'results:read' }, schema: { querystring: ReviewQueueQuerySchema, response: { 200: ReviewQueueSchema, ...errorResponses } } },
    async (req) => {
      const q = req.query;
      const facts = callFacts(deps.control);
      const found: QueueItem[] = [];
      let scanned = 0;
      let after: { ts: number; id: number } | undefined;
      // Newest first: stop once the queue is full; most uncertain first: rank what the scan found.
      while (scanned < maxScan && (q.order === 'uncertain' || found.length < q.limit)) {
        const page = await deps.store.listResults({
          ...(q.line !== undefined && { line: q.line }),
          ...(q.edge !== undefined && { edge: q.edge }),
          limit: Math.min(PAGE, maxScan - scanned),
          ...(after && { after }),
        });
        scanned += page.items.length;
        const keys = page.items.map(keyOf);
        const [withImage, withHeatmap, reviewed] = await Promise.all([deps.images.has(keys), deps.images.has(keys, 'heatmap'), deps.reviews.reviewed(keys)]);
        for (const [i, r] of page.items.entries()) {
          const k = resultKeyString(keys[i]!);
          if (!withImage.has(k) || reviewed.has(k)) continue;
          const threshold = await facts.threshold(r.edgeId, r.model, r.label);
          const uncertain = Math.abs(r.score - threshold) <= q.band;
          if (r.verdict !== 'defect' && !uncertain) continue;
          const item: QueueItem = {
            edgeId: r.edgeId,
            storeId: r.storeId ?? null,
            seq: r.seq,
            ts: r.ts,
            line: r.line,
            camera: r.camera,
            model: r.model,
            verdict: r.verdict,
            label: r.label,
            score: r.score,
            threshold,
            uncertain,
            labels: await facts.model(r.model).then((m) => (m ? [...new Set([...m.labels, ...m.defectLabels])] : [])),
            image: imageUrl(keys[i]!),
          };
          if (r.detections) item.detections = r.detections;
          if (withHeatmap.has(k)) item.heatmap = imageUrl(keys[i]!, 'heatmap');
          found.push(item);
          if (q.order === 'newest' && found.length >= q.limit) break;
        }
        if (!page.next) break;
        after = page.next;
      }
      if (q.order === 'uncertain') found.sort((a, b) => Math.abs(a.score - a.threshold) - Math.abs(b.score - b.threshold) || b.ts - a.ts);
      return { items: found.slice(0, q.limit), scanned };
    },
  );

  type ResultReq = { Params: Static<typeof ResultParamsSchema>; Querystring: Static<typeof ResultStoreQuerySchema> };
  const resultSchema = { params: ResultParamsSchema, querystring: ResultStoreQuerySchema };
  const keyFrom = (req: { params: ResultReq['Params']; query: ResultReq['Querystring'] }): ResultKey => ({ edgeId: req.params.edgeId, storeId: req.query.store ?? '', seq: req.params.seq });
  const describe = (k: ResultKey) => `${k.edgeId}/${k.seq}${k.storeId ? ` (store ${k.storeId})` : ''}`;

  app.put<ResultReq & { Body: ReviewBody }>(
    '/api/results/:edgeId/:seq/review',
    { config: { permission: 'results:review' }, schema: { ...resultSchema, body: ReviewBodySchema, response: { 200: ReviewViewSchema, ...errorResponses } } },
    async (req) => {
      const key = keyFrom(req);
      const result = await deps.store.getResult(key.edgeId, key.storeId, key.seq);
      if (!result) throw new OspreyError('OSP_ERR_NOT_FOUND', `no result ${describe(key)}${key.storeId ? '' : '; add ?store= for an edge with a result store id'}`);
      const facts = await callFacts(deps.control).model(result.model);
      const after = reviewedCall(result, req.body.review, req.body.label, facts);
      const record: ReviewRecord = {
        ...key,
        line: result.line,
        model: result.model,
        modelVerdict: result.verdict,
        modelLabel: result.label,
        ts: result.ts,
        review: req.body.review,
        verdict: after.verdict,
        label: after.label,
        reviewer: describePrincipal(req.principal),
        reviewedAt: deps.now(),
      };
      const before = await deps.reviews.put(record);
      const brief = (r: ReviewRecord | null) => r && { review: r.review, verdict: r.verdict, label: r.label, reviewer: r.reviewer };
      req.auditNote = { action: 'result.review', target: `result:${resultKeyString(key)}`, before: brief(before), after: brief(record) };
      return reviewView(record);
    },
  );

  app.get<ResultReq>(
    '/api/results/:edgeId/:seq/review',
    { config: { permission: 'results:read' }, schema: { ...resultSchema, response: { 200: ReviewViewSchema, ...errorResponses } } },
    async (req) => {
      const key = keyFrom(req);
      const review = await deps.reviews.get(key);
      if (!review) throw new OspreyError('OSP_ERR_NOT_FOUND', `result ${describe(key)} has no review`);
      return reviewView(review);
    },
  );

  app.delete<ResultReq>(
    '/api/results/:edgeId/:seq/review',
    { config: { permission: 'results:review' }, schema: { ...resultSchema, response: { 200: ReviewViewSchema, ...errorResponses } } },
    async (req) => {
      const key = keyFrom(req);
      const removed = await deps.reviews.remove(key);
      if (!removed) throw new OspreyError('OSP_ERR_NOT_FOUND', `result ${describe(key)} has no review`);
      req.auditNote = { action: 'result.review.delete', target: `result:${resultKeyString(key)}`, before: { review: removed.review, label: removed.label, reviewer: removed.reviewer }, after: null };
      return reviewView(removed);
    },
  );

  app.get<{ Params: Static<typeof LineParamsSchema>; Querystring: Static<typeof AccuracyQuerySchema> }>(
    '/api/lines/:line/accuracy',
    { config: { permission: 'results:read' }, schema: { params: LineParamsSchema, querystring: AccuracyQuerySchema, response: { 200: AccuracySchema, ...errorResponses } } },
    async (req) => {
      const from = req.query.from === undefined ? undefined : time('from', req.query.from);
      const to = req.query.to === undefined ? undefined : time('to', req.query.to);
      if (from !== undefined && to !== undefined && from >= to) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from must be before querystring/to');
      const rows = await deps.reviews.accuracy(req.params.line, from, to);
      const total: AccuracyCounts = { model: 'all', reviewed: 0, defectCalls: 0, okCalls: 0, confirmed: 0, confirmedDefects: 0, falseCalls: 0, relabelled: 0, missedDefects: 0 };
      for (const r of rows) for (const k of Object.keys(total) as (keyof AccuracyCounts)[]) if (k !== 'model') total[k] += r[k];
      return { line: req.params.line, from: from ?? null, to: to ?? null, total: figures(total), versions: rows.map(figures) };
    },
  );
};

/** A time of the querystring, or a one-line 400 naming it. */
export function time(name: string, text: string): number {
  const ms = parseTime(text);
  if (ms === null) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/${name} must be an ISO 8601 date or epoch milliseconds`);
  return ms;
}
