/**
 * `GET /api/lines/:line/stats`: counts by verdict, label and model per time bucket for one line,
 * as JSON or (with `?format=csv`) as long-format CSV. Columns are documented in docs/fleet-manager.md.
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import {
  LineParamsSchema,
  LineStatsSchema,
  StatsQuerySchema,
  errorResponses,
  type StatsQueryString,
} from '../http-schemas.js';
import { buildLineStats, lineStatsCsv, parseBucket, parseTime } from '../line-stats.js';
import type { RouteDeps } from './deps.js';

const DAY_MS = 86_400_000;
/** More buckets than this is a mistake (1s buckets over a month), not a chart. */
const MAX_BUCKETS = 100_000;

/** Registers the per-line statistics route. */
export const statsRoutes: FastifyPluginAsync<RouteDeps> = async (app, deps) => {
  app.get<{ Params: { line: string }; Querystring: StatsQueryString }>(
    '/api/lines/:line/stats',
    {
      config: { permission: 'fleet:read' },
      schema: {
        params: LineParamsSchema,
        querystring: StatsQuerySchema,
        response: {
          200: {
            content: {
              'application/json': { schema: LineStatsSchema },
              'text/csv': { schema: Type.String({ description: 'long-format CSV with a header row' }) },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { line } = req.params;
      const q = req.query;
      const to = timeParam('to', q.to) ?? deps.now();
      const from = timeParam('from', q.from) ?? to - DAY_MS;
      if (from >= to) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from must be before to');
      const bucketMs = parseBucket(q.bucket)!; // the schema pattern already guarantees it parses
      if ((to - from) / bucketMs > MAX_BUCKETS) {
        throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/bucket ${q.bucket} gives more than ${MAX_BUCKETS} buckets`);
      }
      if (!(await deps.store.hasLine(line))) throw new OspreyError('OSP_ERR_NOT_FOUND', `line ${line} not found`);
      const rows = await deps.store.lineStats(line, from, to, bucketMs);
      const stats = buildLineStats(rows, { line, from, to, bucket: q.bucket, bucketMs });
      if (q.format === 'csv') {
        const file = `osprey-${line.replace(/[^A-Za-z0-9_.-]/g, '_')}-stats.csv`;
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `inline; filename="${file}"`)
          .send(lineStatsCsv(rows, stats));
      }
      return reply.type('application/json; charset=utf-8').send(stats);
    },
  );
};

/** Parses a time query parameter; a malformed one is the sender's error, named. */
export function timeParam(name: string, text: string | undefined): number | null {
  if (text === undefined) return null;
  const ms = parseTime(text);
  if (ms === null) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/${name} must be an ISO 8601 date or epoch milliseconds`);
  return ms;
}
