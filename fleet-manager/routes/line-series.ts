/**
 * The line page's routes (fleet:read), all answered from the per-minute line aggregate:
 * `GET /api/lines/:line/series` (JSON, or the same view as CSV with `format=csv`),
 * `GET /api/lines/:line/compare` (before/after a version), `GET /api/lines/:line/shifts`.
 * Documented in docs/fleet-manager.md ("Line series").
 */
import type { FastifyPluginAsync } from 'fastify';
import { Type } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses, LineParamsSchema } from '../http-schemas.js';
import {
  CompareQuerySchema,
  CompareSchema,
  LineSeriesSchema,
  SeriesQuerySchema,
  ShiftQuerySchema,
  ShiftTableSchema,
  type CompareQueryString,
  type SeriesQueryString,
  type ShiftQueryString,
} from '../line-series-schemas.js';
import { parseBucket } from '../line-stats.js';
import {
  MAX_SERIES_BUCKETS,
  MINUTE_MS,
  alignRange,
  autoBucket,
  buildSeries,
  seriesCsv,
  shiftGrainMs,
  shiftTable,
  sumRows,
  type LineSeries,
  type Shift,
} from '../line-series.js';
import type { RouteDeps } from './deps.js';
import { timeParam } from './stats.js';

const DAY_MS = 86_400_000;
/** One bucket spanning any comparison window: the rows are summed whatever their bucket. */
const WHOLE_MS = 400 * DAY_MS;

export interface LineSeriesDeps extends RouteDeps {
  shifts: readonly Shift[];
}

type LineReq<Q> = { Params: { line: string }; Querystring: Q };

/** Registers the line page's routes. */
export const lineSeriesRoutes: FastifyPluginAsync<LineSeriesDeps> = async (app, deps) => {
  async function knownLine(line: string, field = 'line'): Promise<void> {
    if (!(await deps.store.hasLine(line))) throw new OspreyError('OSP_ERR_NOT_FOUND', `${field} ${line} not found`);
  }

  app.get<LineReq<SeriesQueryString>>(
    '/api/lines/:line/series',
    {
      config: { permission: 'fleet:read' },
      schema: {
        params: LineParamsSchema,
        querystring: SeriesQuerySchema,
        response: {
          200: {
            content: {
              'application/json': { schema: LineSeriesSchema },
              'text/csv': { schema: Type.String({ description: 'one row per bucket × series, with a header row' }) },
            },
          },
          ...errorResponses,
        },
      },
    },
    async (req, reply) => {
      const { line } = req.params;
      const q = req.query;
      const to0 = timeParam('to', q.to) ?? deps.now();
      const from0 = timeParam('from', q.from) ?? to0 - DAY_MS;
      if (from0 >= to0) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from must be before to');
      const bucket = q.bucket === 'auto' ? autoBucket(to0 - from0, parseBucket) : q.bucket;
      const bucketMs = parseBucket(bucket)!; // the schema's pattern guarantees it parses
      if (bucketMs % MINUTE_MS !== 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/bucket ${bucket} must be a whole number of minutes`);
      const { from, to } = alignRange(from0, to0, bucketMs);
      const count = (to - from) / bucketMs;
      if (count > MAX_SERIES_BUCKETS) {
        throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/bucket ${bucket} gives ${count} buckets over this range; at most ${MAX_SERIES_BUCKETS}`);
      }
      await knownLine(line);
      const lines = [line];
      if (q.compare !== undefined && q.compare !== line) {
        await knownLine(q.compare, 'querystring/compare: line');
        lines.push(q.compare);
      }
      const starts = Array.from({ length: count }, (_, i) => from + i * bucketMs);
      const view: LineSeries = { line, compare: lines[1] ?? null, from, to, bucket, bucketMs, by: q.by, starts, series: [], versions: [] };
      for (const l of lines) {
        view.series.push(...buildSeries(l, await deps.store.lineStats(l, from, to, bucketMs), starts, bucketMs, q.by));
        view.versions.push(...(await deps.store.lineVersions(l)).map((v) => ({ line: l, ...v })));
      }
      if (q.format === 'csv') {
        const name = lines.map((l) => l.replace(/[^A-Za-z0-9_.-]/g, '_')).join('-vs-');
        return reply
          .type('text/csv; charset=utf-8')
          .header('content-disposition', `attachment; filename="osprey-${name}-${q.by}-${bucket}.csv"`)
          .send(seriesCsv(view));
      }
      return reply.type('application/json; charset=utf-8').send({ ...view, rollouts: await lineRollouts(lines) });
    },
  );

  app.get<LineReq<CompareQueryString>>(
    '/api/lines/:line/compare',
    {
      config: { permission: 'fleet:read' },
      schema: { params: LineParamsSchema, querystring: CompareQuerySchema, response: { 200: CompareSchema, ...errorResponses } },
    },
    async (req) => {
      const { line } = req.params;
      await knownLine(line);
      const version = (await deps.store.lineVersions(line)).find((v) => v.model === req.query.version);
      if (!version) throw new OspreyError('OSP_ERR_NOT_FOUND', `querystring/version ${req.query.version} has no result on line ${line}`);
      const start = version.first;
      const to = timeParam('to', req.query.to) ?? Math.max(deps.now(), start + 1);
      const from = timeParam('from', req.query.from) ?? Math.max(0, start - (to - start));
      if (!(from <= start && start < to)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `querystring/from and to must enclose the version's start (${new Date(start).toISOString()})`);
      const counts = async (a: number, b: number) => ({ from: a, to: b, ...(a < b ? sumRows(await deps.store.lineStats(line, a, b, WHOLE_MS)) : sumRows([])) });
      return { line, version: version.model, start, before: await counts(from, start), after: await counts(start, to) };
    },
  );

  app.get<LineReq<ShiftQueryString>>(
    '/api/lines/:line/shifts',
    {
      config: { permission: 'fleet:read' },
      schema: { params: LineParamsSchema, querystring: ShiftQuerySchema, response: { 200: ShiftTableSchema, ...errorResponses } },
    },
    async (req) => {
      const { line } = req.params;
      const to = timeParam('to', req.query.to) ?? deps.now();
      const from = timeParam('from', req.query.from) ?? to - 7 * DAY_MS;
      if (from >= to) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from must be before to');
      if (to - from > 400 * DAY_MS) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'querystring/from and to span more than 400 days');
      await knownLine(line);
      const grain = shiftGrainMs(deps.shifts, -new Date(from).getTimezoneOffset());
      const table = shiftTable(await deps.store.lineStats(line, from, to, grain), deps.shifts);
      return { line, from, to, shifts: deps.shifts.map((s) => ({ name: s.name, start: s.start })), ...table };
    },
  );

  /** Rollouts whose target names the line, one of its edges, or every edge; oldest first. */
  async function lineRollouts(lines: string[]) {
    if (!deps.control) return [];
    const edges = new Set((await deps.store.listEdges()).filter((e) => e.line !== null && lines.includes(e.line)).map((e) => e.id));
    return (await deps.control.engine.list())
      .filter(({ spec: { target: t } }) => t.all === true || t.lines?.some((l) => lines.includes(l)) || t.edges?.some((e) => edges.has(e)))
      .sort((a, b) => a.createdAt - b.createdAt)
      .map((r) => ({ id: r.id, model: r.model, version: r.version, status: r.status, createdAt: r.createdAt }));
  }
};
