/**
 * HTTP schemas of the line page's routes (routes/line-series.ts): the series of a view, a
 * version's before/after comparison, the shift table.
 */
import { Type, type Static } from '@sinclair/typebox';
import { BUCKET_PATTERN } from './line-stats.js';

const strict = { additionalProperties: false } as const;
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });
const Nullable = <T extends ReturnType<typeof Type.Number>>(t: T) => Type.Union([t, Type.Null()]);
const Time = (description: string) => Type.Optional(Type.String({ minLength: 1, maxLength: 40, description }));

export const SeriesQuerySchema = Type.Object(
  {
    from: Time('inclusive; ISO 8601 or epoch ms; default to − 24 h; widened down to a whole bucket'),
    to: Time('exclusive; ISO 8601 or epoch ms; default now; widened up to a whole bucket'),
    bucket: Type.Union([Type.Literal('auto'), Type.String({ pattern: BUCKET_PATTERN })], {
      default: 'auto',
      description: 'a whole number of minutes (1m, 5m, 1h, 1d); auto: the smallest of 1m…7d giving at most 300 buckets',
    }),
    by: Type.Union([Type.Literal('total'), Type.Literal('label'), Type.Literal('version')], { default: 'total' }),
    compare: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'a second line, its series overlaid' })),
    format: Type.Union([Type.Literal('json'), Type.Literal('csv')], { default: 'json' }),
  },
  strict,
);
export type SeriesQueryString = Static<typeof SeriesQuerySchema>;

const VersionSpanSchema = Type.Object(
  { line: Type.String(), model: Type.String({ description: 'name@version' }), first: EpochMs, last: EpochMs, count: Type.Integer() },
  strict,
);

export const LineSeriesSchema = Type.Object(
  {
    line: Type.String(),
    compare: Type.Union([Type.String(), Type.Null()]),
    from: EpochMs,
    to: EpochMs,
    bucket: Type.String(),
    bucketMs: Type.Integer(),
    by: Type.Union([Type.Literal('total'), Type.Literal('label'), Type.Literal('version')]),
    starts: Type.Array(EpochMs, { description: 'every bucket start in [from, to), empty buckets included' }),
    series: Type.Array(
      Type.Object(
        {
          line: Type.String(),
          key: Type.String({ description: 'all, a label or name@version; (other) sums the rest beyond 20' }),
          total: Type.Array(Type.Integer(), { description: 'results per bucket' }),
          defect: Type.Array(Type.Integer(), { description: 'defect verdicts per bucket' }),
        },
        strict,
      ),
    ),
    versions: Type.Array(VersionSpanSchema, { description: "each model version's first and last result on the line(s)" }),
    rollouts: Type.Array(
      Type.Object({ id: Type.String(), model: Type.String(), version: Type.String(), status: Type.String(), createdAt: EpochMs }, strict),
      { description: 'rollouts whose target includes the line' },
    ),
  },
  strict,
);

export type LineSeriesView = Static<typeof LineSeriesSchema>;

export const CompareQuerySchema = Type.Object(
  {
    version: Type.String({ minLength: 3, maxLength: 200, description: 'name@version; its first result on the line splits before from after' }),
    from: Time('start of "before"; ISO 8601 or epoch ms; default the split − (to − split)'),
    to: Time('end of "after" (exclusive); default now'),
  },
  strict,
);
export type CompareQueryString = Static<typeof CompareQuerySchema>;

const CountsSchema = Type.Object(
  {
    from: EpochMs,
    to: EpochMs,
    total: Type.Integer(),
    defect: Type.Integer(),
    defectRate: Nullable(Type.Number({ description: 'defect / total; null with no result' })),
    byLabel: Type.Record(Type.String(), Type.Integer()),
  },
  strict,
);

export const CompareSchema = Type.Object(
  { line: Type.String(), version: Type.String(), start: EpochMs, before: CountsSchema, after: CountsSchema },
  strict,
);

export type CompareView = Static<typeof CompareSchema>;

export const ShiftQuerySchema = Type.Object({ from: Time('inclusive; default to − 7 d'), to: Time('exclusive; default now') }, strict);
export type ShiftQueryString = Static<typeof ShiftQuerySchema>;

const ShiftCellSchema = Type.Object({ shift: Type.String(), total: Type.Integer(), defect: Type.Integer() }, strict);

export const ShiftTableSchema = Type.Object(
  {
    line: Type.String(),
    from: EpochMs,
    to: EpochMs,
    shifts: Type.Array(Type.Object({ name: Type.String(), start: Type.String({ description: 'local HH:MM' }) }, strict)),
    days: Type.Array(Type.Object({ day: Type.String({ description: 'local date the shifts began' }), shifts: Type.Array(ShiftCellSchema) }, strict)),
    totals: Type.Array(ShiftCellSchema),
  },
  strict,
);
export type ShiftTableView = Static<typeof ShiftTableSchema>;
