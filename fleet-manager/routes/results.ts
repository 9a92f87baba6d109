/** `GET /api/results`: stored results, newest first, filtered, paged by cursor or offset. */
import type { FastifyPluginAsync } from 'fastify';
import { OspreyError } from '../../protocol/errors.js';
import { ResultsPageSchema, ResultsQuerySchema, errorResponses, type ResultsQueryString } from '../http-schemas.js';
import { parseTime } from '../line-stats.js';
import type { ResultsCursor, ResultsQuery, StoredResult } from '../store.js';
import { resultKeyString } from '../image-store.js';
import type { RouteDeps } from './deps.js';

/** Registers the results listing. */
export const resultRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.get<{ Querystring: ResultsQueryString }>(
    '/api/results',
    { config: { permission: 'results:read' }, schema: { querystring: ResultsQuerySchema, response: { 200: ResultsPageSchema, ...errorResponses } } },
    async (req) => {
      const q = req.query;
      if (q.cursor !== undefined && q.offset !== undefined) {
        throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring: use either cursor or offset, not both');
      }
      const query: ResultsQuery = { limit: q.limit };
      if (q.edge !== undefined) query.edge = q.edge;
      if (q.line !== undefined) query.line = q.line;
      if (q.verdict !== undefined) query.verdict = q.verdict;
      if (q.label !== undefined) query.label = q.label;
      if (q.model !== undefined) query.model = q.model;
      if (q.from !== undefined) query.from = time('from', q.from);
      if (q.to !== undefined) query.to = time('to', q.to);
      if (q.cursor !== undefined) query.after = decodeCursor(q.cursor);
      if (q.offset !== undefined) query.offset = q.offset;
      const page = await deps.store.listResults(query);
      const keys = page.items.map((r) => ({ edgeId: r.edgeId, storeId: r.storeId ?? '', seq: r.seq }));
      const withImage = deps.images ? await deps.images.has(keys) : new Set<string>();
      const withHeatmap = deps.images ? await deps.images.has(keys, 'heatmap') : new Set<string>();
      const items = page.items.map((r, i) => {
        const key = resultKeyString(keys[i]!);
        return { ...toView(r), hasImage: withImage.has(key), ...(withHeatmap.has(key) && { hasHeatmap: true }) };
      });
      return { items, nextCursor: page.next ? encodeCursor(page.next) : null };
    },
  );
};

function time(name: string, text: string): number {
  const ms = parseTime(text);
  if (ms === null) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/${name} must be an ISO 8601 date or epoch milliseconds`);
  return ms;
}

// The storage id stays internal: clients see an opaque cursor, not a key to build on.
function toView({ id: _id, ...rest }: StoredResult) {
  return rest;
}

/** Opaque to clients: base64url of "ts.id" of the last item returned. */
export function encodeCursor(c: ResultsCursor): string {
  return Buffer.from(`${c.ts}.${c.id}`).toString('base64url');
}

function decodeCursor(text: string): ResultsCursor {
  const m = /^(\d{1,15})\.(\d{1,15})$/.exec(Buffer.from(text, 'base64url').toString('utf8'));
  if (!m) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/cursor is not a cursor this server issued');
  return { ts: Number(m[1]), id: Number(m[2]) };
}
