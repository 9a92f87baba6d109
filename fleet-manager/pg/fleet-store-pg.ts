/**
 * FleetStore on PostgreSQL (issue 18): the same tables and behaviour as the SQLite store
 * (store-db.ts, edge-history-db.ts), correct when several fleet instances write at once.
 *
 * Concurrency, by row locks: every write of an edge starts with an upsert of its `edges` row
 * (INSERT … ON CONFLICT DO UPDATE), which locks that row until commit; ingest then upserts the
 * (edge, store) row of `edge_stores` the same way. So two instances' batches of one edge run one
 * after the other, and the second reads the ack and the rows the first committed (READ COMMITTED
 * takes a new snapshot per statement, and ON CONFLICT DO UPDATE works on the latest committed
 * row). The ack walk and the unknown-line move thus never race. `line_minutes` and the gate
 * counters (`edge_model_counts`) change only by single-statement upserts (count = count + n), in
 * key order, so concurrent batches of different edges on one line add up exactly and cannot
 * deadlock each other; a transaction that still meets a deadlock or serialization failure is
 * retried whole.
 *
 * Ingest is a few round trips per batch, whatever its size: lock the edge (one statement), insert
 * every row from one JSON parameter (json_to_recordset … ON CONFLICT DO NOTHING RETURNING) with
 * the line_minutes and gate counter upserts in the same statement, look up the rows that were
 * already there (only when some were), then walk the ack and store it (one statement).
 *
 * Times are BIGINT epoch ms, JSON kept whole is TEXT, text keys use COLLATE "C" so listings sort
 * as SQLite's binary order does. Migrations are FLEET_PG_MIGRATIONS, run by the storage factory.
 */
import type pg from 'pg';
import { hasNul, noNul, withTransaction, type PgMigration } from './pg-db.js';
import {
  MINUTE_MS,
  UNKNOWN_LINE,
  toEdgeRecord,
  toStoredEvent,
  toStoredResult,
  type EdgeRow,
  type EventRow,
  type ResultRow,
  type StoreLog,
} from '../store-db.js';
import { MONITOR_COLUMNS, TELEMETRY_RETENTION_MS, toTelemetryMinute, type TelemetryMinuteRow } from '../edge-history-db.js';
import type { CandidateCounts, FleetStore, IngestOutcome, LineVersion, ReportMeta, ResultsQuery, StatsRow, VerdictScore } from '../store.js';
import type { ResultRecord, StateMessage } from '../../protocol/messages.js';

const MONITOR_SQL = MONITOR_COLUMNS.map(([column]) => `,\n  ${column} DOUBLE PRECISION`).join('');

/** The fleet's tables, at the shape the SQLite schema has reached (store-migrations.ts is SQLite history). */
export const FLEET_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'fleet-1',
    sql: `
CREATE TABLE edges (
  id TEXT COLLATE "C" PRIMARY KEY,
  line TEXT COLLATE "C",
  cameras TEXT NOT NULL DEFAULT '[]',
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  online BOOLEAN NOT NULL DEFAULT false,
  state TEXT,
  telemetry TEXT,
  telemetry_at BIGINT,
  acked_seq BIGINT NOT NULL DEFAULT 0,
  store_id TEXT COLLATE "C" NOT NULL DEFAULT ''
);
-- One row per result store an edge has had (a wiped edge database is a new store): its ack.
CREATE TABLE edge_stores (
  edge_id TEXT COLLATE "C" NOT NULL,
  store_id TEXT COLLATE "C" NOT NULL,
  acked_seq BIGINT NOT NULL DEFAULT 0,
  first_seen BIGINT NOT NULL,
  last_seen BIGINT NOT NULL,
  PRIMARY KEY (edge_id, store_id)
);
-- id only orders rows of equal ts for stable paging (PostgreSQL does not assign it in commit order),
-- so it needs no index of its own; the key is (edge_id, store_id, seq). Three B-trees a row, not four.
CREATE TABLE results (
  id BIGINT GENERATED ALWAYS AS IDENTITY (CACHE 100) NOT NULL,
  edge_id TEXT COLLATE "C" NOT NULL,
  store_id TEXT COLLATE "C" NOT NULL DEFAULT '',
  seq BIGINT NOT NULL,
  ts BIGINT NOT NULL,
  line TEXT COLLATE "C" NOT NULL,
  camera TEXT NOT NULL,
  source TEXT NOT NULL,
  frame TEXT,
  model TEXT COLLATE "C" NOT NULL,
  verdict TEXT COLLATE "C" NOT NULL,
  label TEXT COLLATE "C" NOT NULL,
  score DOUBLE PRECISION NOT NULL,
  latency_ms DOUBLE PRECISION NOT NULL,
  detections TEXT,
  shadow_model TEXT,
  shadow_verdict TEXT,
  shadow_label TEXT,
  shadow_score DOUBLE PRECISION,
  shadow_latency_ms DOUBLE PRECISION,
  shadow_error TEXT,
  PRIMARY KEY (edge_id, store_id, seq)
);
-- (ts, id) and (edge_id, ts, id): newest-first keyset paging, as SQLite's indexes carry the rowid.
CREATE INDEX results_ts ON results (ts, id);
CREATE INDEX results_edge_ts ON results (edge_id, ts, id);
-- Per-line statistics, counted at ingest (see store-db.ts). Split into shards by edge (shardOf):
-- a line's edges would otherwise all update the same few rows of the current minute, and each
-- batch holds those row locks until it commits; readers sum over the shards.
CREATE TABLE line_minutes (
  line TEXT COLLATE "C" NOT NULL,
  minute BIGINT NOT NULL,
  verdict TEXT COLLATE "C" NOT NULL,
  label TEXT COLLATE "C" NOT NULL,
  model TEXT COLLATE "C" NOT NULL,
  shard SMALLINT NOT NULL,
  count BIGINT NOT NULL,
  PRIMARY KEY (line, minute, verdict, label, model, shard)
);
-- Rollout gate counters per edge × model × mode, kept at ingest (fleet-manager/gate-counts.ts).
CREATE TABLE edge_model_counts (
  edge_id TEXT COLLATE "C" NOT NULL,
  model TEXT COLLATE "C" NOT NULL,
  mode TEXT COLLATE "C" NOT NULL,
  frames BIGINT NOT NULL,
  defects BIGINT NOT NULL,
  paired BIGINT NOT NULL,
  agree BIGINT NOT NULL,
  base_defects BIGINT NOT NULL,
  errors BIGINT NOT NULL,
  PRIMARY KEY (edge_id, model, mode)
);
CREATE TABLE events (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  edge_id TEXT COLLATE "C" NOT NULL,
  ts BIGINT NOT NULL,
  received_at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
);
CREATE INDEX events_edge_ts ON events (edge_id, ts, id);
CREATE TABLE telemetry_minutes (
  edge_id TEXT COLLATE "C" NOT NULL,
  minute BIGINT NOT NULL,
  samples BIGINT NOT NULL,
  at BIGINT NOT NULL,
  fps DOUBLE PRECISION NOT NULL,
  p50 DOUBLE PRECISION NOT NULL,
  p95 DOUBLE PRECISION NOT NULL,
  queue BIGINT NOT NULL,
  cpu DOUBLE PRECISION NOT NULL,
  rss BIGINT NOT NULL,
  frames BIGINT NOT NULL,
  failed BIGINT NOT NULL,
  result_bytes BIGINT,
  image_bytes BIGINT${MONITOR_SQL},
  PRIMARY KEY (edge_id, minute)
);
`,
  },
];

export interface PgFleetStoreOptions {
  logger: StoreLog;
}

const UNKNOWN = `'${UNKNOWN_LINE}'`;

/** Shards of a line's minute counts: edges of one line update different rows (FNV-1a of the edge id). */
const LINE_SHARDS = 16;
export function shardOf(edgeId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < edgeId.length; i++) h = Math.imul(h ^ edgeId.charCodeAt(i), 0x01000193);
  return (h >>> 0) % LINE_SHARDS;
}
const EDGE_COLUMNS = 'id, line, cameras, first_seen, last_seen, online::int AS online, state, telemetry, telemetry_at, acked_seq, store_id';
// The upsert that starts every write of an edge: it locks the edge's row until commit.
const TOUCH_EDGE = `INSERT INTO edges (id, first_seen, last_seen) VALUES ($1, $2, $2)
  ON CONFLICT (id) DO UPDATE SET last_seen = greatest(edges.last_seen, excluded.last_seen)`;

/**
 * PostgreSQL text cannot hold NUL (U+0000): one in a result's text (a model's label, a camera name,
 * a detection's label; PostgreSQL refuses it even inside JSON it converts)
 * would fail its batch on every resend and stall the edge's sync behind it. Such text is stored
 * with U+FFFD in its place, before anything else reads the batch, so a resend compares equal.
 */
function holdsNul(r: ResultRecord): boolean {
  return (
    hasNul(r.camera) ||
    hasNul(r.frame) ||
    hasNul(r.model) ||
    hasNul(r.label) ||
    (r.shadow != null && (hasNul(r.shadow.model) || hasNul(r.shadow.label) || hasNul(r.shadow.error))) ||
    (Array.isArray(r.detections) && r.detections.some((d) => hasNul(d?.label)))
  );
}
function withoutNul(r: ResultRecord): ResultRecord {
  if (!holdsNul(r)) return r;
  const out: ResultRecord = { ...r, camera: noNul(r.camera), model: noNul(r.model), label: noNul(r.label) };
  if (r.frame !== undefined) out.frame = noNul(r.frame);
  if (Array.isArray(r.detections)) out.detections = r.detections.map((d) => (hasNul(d?.label) ? { ...d, label: noNul(d.label) } : d));
  if (r.shadow != null) {
    out.shadow = { ...r.shadow, model: noNul(r.shadow.model) };
    if (r.shadow.label !== undefined) out.shadow.label = noNul(r.shadow.label);
    if (r.shadow.error !== undefined) out.shadow.error = noNul(r.shadow.error);
  }
  return out;
}

/** The store's statements (exported for the plan test: test/fleet-manager/fleet-store-pg.test.ts). */
export const FLEET_PG_SQL = {
  touchEdge: `${TOUCH_EDGE} RETURNING ${EDGE_COLUMNS}`,
  // The edge row first, then its store row: `s` reads `e`'s row, so it cannot lock before `e` has.
  touchForIngest: `WITH e AS (
      INSERT INTO edges (id, first_seen, last_seen) VALUES ($1, $3, $3)
      ON CONFLICT (id) DO UPDATE SET last_seen = greatest(edges.last_seen, excluded.last_seen)
      RETURNING line, acked_seq, store_id
    ), s AS (
      INSERT INTO edge_stores (edge_id, store_id, first_seen, last_seen) SELECT $1, $2, $3, $3 FROM e
      ON CONFLICT (edge_id, store_id) DO UPDATE SET last_seen = greatest(edge_stores.last_seen, excluded.last_seen)
      RETURNING acked_seq
    )
    SELECT e.line, e.acked_seq AS edge_acked, e.store_id AS edge_store, s.acked_seq AS store_acked FROM e, s`,
  // Every row of the batch from one JSON parameter. Rows with a NULL in a NOT NULL column are
  // skipped (never acked), as SQLite's INSERT OR IGNORE does. The rows inserted are counted into
  // line_minutes and the gate counters in the same statement, in key order.
  insertResults: `WITH input AS (
      SELECT * FROM json_to_recordset($4::json) AS x(seq bigint, ts bigint, camera text, source text, frame text, model text,
        verdict text, label text, score float8, "latencyMs" float8, detections text, shadow json)
    ), ins AS (
      INSERT INTO results (edge_id, store_id, seq, ts, line, camera, source, frame, model, verdict, label, score, latency_ms, detections,
        shadow_model, shadow_verdict, shadow_label, shadow_score, shadow_latency_ms, shadow_error)
      SELECT $1, $2, seq, ts, $3, camera, source, frame, model, verdict, label, score, "latencyMs", detections,
        shadow->>'model', shadow->>'verdict', shadow->>'label', (shadow->>'score')::float8, (shadow->>'latencyMs')::float8, shadow->>'error'
      FROM input
      WHERE seq IS NOT NULL AND ts IS NOT NULL AND camera IS NOT NULL AND source IS NOT NULL AND model IS NOT NULL
        AND verdict IS NOT NULL AND label IS NOT NULL AND score IS NOT NULL AND "latencyMs" IS NOT NULL
      ORDER BY seq
      ON CONFLICT (edge_id, store_id, seq) DO NOTHING
      RETURNING seq, ts, verdict, label, model, shadow_model, shadow_verdict, shadow_error
    ), minutes AS (
      INSERT INTO line_minutes AS m (line, minute, verdict, label, model, shard, count)
      SELECT $3, (ts / ${MINUTE_MS}) * ${MINUTE_MS}, verdict, label, model, $5::smallint, count(*) FROM ins
      GROUP BY 2, 3, 4, 5 ORDER BY 2, verdict COLLATE "C", label COLLATE "C", model COLLATE "C"
      ON CONFLICT (line, minute, verdict, label, model, shard) DO UPDATE SET count = m.count + excluded.count
    ), gates AS (
      -- The same rows tallied for the rollout gates, as gate-counts.ts tallyResult does.
      INSERT INTO edge_model_counts AS c (edge_id, model, mode, frames, defects, paired, agree, base_defects, errors)
      SELECT $1, model, mode, count(*), sum(defect), sum(paired), sum(agree), sum(base_defect), sum(error) FROM (
        SELECT model, 'live' AS mode, (verdict = 'defect')::int AS defect, 0 AS paired, 0 AS agree, 0 AS base_defect, 0 AS error FROM ins
        UNION ALL
        SELECT shadow_model, 'shadow', coalesce((shadow_verdict = 'defect')::int, 0), (shadow_verdict IS NOT NULL)::int,
          coalesce((shadow_verdict = verdict)::int, 0), (shadow_verdict IS NOT NULL AND verdict = 'defect')::int, (shadow_error IS NOT NULL)::int
        FROM ins WHERE shadow_model IS NOT NULL
      ) AS g
      GROUP BY 2, 3 ORDER BY model COLLATE "C", mode COLLATE "C"
      ON CONFLICT (edge_id, model, mode) DO UPDATE SET
        frames = c.frames + excluded.frames, defects = c.defects + excluded.defects, paired = c.paired + excluded.paired,
        agree = c.agree + excluded.agree, base_defects = c.base_defects + excluded.base_defects, errors = c.errors + excluded.errors
    )
    SELECT seq FROM ins`,
  storedRows: `SELECT seq, ts, model, verdict, label FROM results WHERE edge_id = $1 AND store_id = $2 AND seq = ANY($3::bigint[])`,
  // From the ack walked through the batch: on through the stored seqs after it (usually none), one
  // index probe each, then both acks written where they changed. Only a batch holding ack+1 ($4)
  // can move it. The probe is a LATERAL subquery with LIMIT 1, which the planner cannot turn into
  // a join: as a join, a table without statistics yet got a hash join that read every row of the
  // edge on each batch.
  walkAndAck: `WITH RECURSIVE walk(seq) AS (
      SELECT $3::bigint
      UNION ALL
      SELECT n.seq FROM walk w CROSS JOIN LATERAL (
        SELECT r.seq FROM results r WHERE r.edge_id = $1 AND r.store_id = $2 AND r.seq = w.seq + 1 LIMIT 1
      ) AS n WHERE $4::boolean
    ), acked AS (SELECT max(seq) AS seq FROM walk),
    s AS (UPDATE edge_stores SET acked_seq = acked.seq FROM acked
          WHERE edge_id = $1 AND store_id = $2 AND edge_stores.acked_seq <> acked.seq),
    e AS (UPDATE edges SET acked_seq = acked.seq, store_id = $2 FROM acked
          WHERE id = $1 AND (edges.acked_seq <> acked.seq OR edges.store_id <> $2))
    SELECT seq FROM acked`,
  writeState: 'UPDATE edges SET line = $2, cameras = $3, online = $4, state = $5 WHERE id = $1',
  switchStore: `UPDATE edges SET store_id = $2,
      acked_seq = coalesce((SELECT acked_seq FROM edge_stores WHERE edge_id = $1 AND store_id = $2), 0) WHERE id = $1`,
  // An edge's early results move to its line: their counts are added under the line and taken from
  // the unknown one in one upsert, in key order (see above), emptied groups removed, then the rows.
  moveUnknownMinutes: `INSERT INTO line_minutes AS m (line, minute, verdict, label, model, shard, count)
    SELECT l.line, g.minute, g.verdict, g.label, g.model, $3::smallint, g.n * l.sign
    FROM (SELECT (ts / ${MINUTE_MS}) * ${MINUTE_MS} AS minute, verdict, label, model, count(*) AS n
          FROM results WHERE edge_id = $1 AND line = ${UNKNOWN} GROUP BY 1, 2, 3, 4) AS g
    CROSS JOIN (VALUES ($2::text COLLATE "C", 1), (${UNKNOWN} COLLATE "C", -1)) AS l(line, sign)
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (line, minute, verdict, label, model, shard) DO UPDATE SET count = m.count + excluded.count`,
  pruneUnknownMinutes: `DELETE FROM line_minutes WHERE line = ${UNKNOWN} AND count <= 0`,
  fixUnknownLine: `UPDATE results SET line = $2 WHERE edge_id = $1 AND line = ${UNKNOWN}`,
  writeTelemetry: `INSERT INTO edges (id, first_seen, last_seen, telemetry, telemetry_at) VALUES ($1, $2, $2, $3, $2)
    ON CONFLICT (id) DO UPDATE SET last_seen = greatest(edges.last_seen, excluded.last_seen),
      telemetry = excluded.telemetry, telemetry_at = excluded.telemetry_at`,
  // Folds a report into its minute (see edge-history-db.ts for the rules) and drops the edge's
  // minutes past retention ($14), in one statement: they are different rows.
  telemetryMinute: `WITH prune AS (DELETE FROM telemetry_minutes WHERE edge_id = $1 AND minute < $14)
    INSERT INTO telemetry_minutes AS t (edge_id, minute, samples, at, fps, p50, p95, queue, cpu, rss, frames, failed, result_bytes, image_bytes
      ${MONITOR_COLUMNS.map(([column]) => `, ${column}`).join('')})
    VALUES ($1, $2, 1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 ${MONITOR_COLUMNS.map((_, i) => `, $${15 + i}`).join('')})
    ON CONFLICT (edge_id, minute) DO UPDATE SET
      fps = (t.fps * t.samples + excluded.fps) / (t.samples + 1),
      p50 = (t.p50 * t.samples + excluded.p50) / (t.samples + 1),
      cpu = (t.cpu * t.samples + excluded.cpu) / (t.samples + 1),
      p95 = greatest(t.p95, excluded.p95),
      queue = greatest(t.queue, excluded.queue),
      rss = greatest(t.rss, excluded.rss),
      frames = t.frames + excluded.frames,
      failed = t.failed + excluded.failed,
      result_bytes = coalesce(excluded.result_bytes, t.result_bytes),
      image_bytes = coalesce(excluded.image_bytes, t.image_bytes),
      ${MONITOR_COLUMNS.map(([column]) => `${column} = coalesce(excluded.${column}, t.${column}),`).join('\n      ')}
      at = greatest(t.at, excluded.at),
      samples = t.samples + 1`,
  // The edge row is locked before the event is added: `events` reads `e`.
  insertEvent: `WITH e AS (${TOUCH_EDGE} RETURNING id)
    INSERT INTO events (edge_id, ts, received_at, kind, level, message, data) SELECT id, $3, $2, $4, $5, $6, $7 FROM e`,
  markAllOffline: 'UPDATE edges SET online = false WHERE online',
  getEdge: `SELECT ${EDGE_COLUMNS} FROM edges WHERE id = $1`,
  storeAcked: 'SELECT acked_seq FROM edge_stores WHERE edge_id = $1 AND store_id = $2',
  listEdges: `SELECT ${EDGE_COLUMNS} FROM edges ORDER BY id`,
  listLines: `SELECT coalesce(line, $1) AS line, count(*) AS edges, count(*) FILTER (WHERE online) AS online
    FROM edges GROUP BY 1 ORDER BY 1`,
  listEvents: 'SELECT ts, received_at, kind, level, message, data FROM events WHERE edge_id = $1 ORDER BY ts DESC, id DESC LIMIT $2',
  hasLine: 'SELECT EXISTS (SELECT 1 FROM edges WHERE line = $1) OR EXISTS (SELECT 1 FROM line_minutes WHERE line = $1) AS has',
  // As in store-db.ts: whole minutes from line_minutes, the partial minutes at either end from the rows.
  lineStatsMinutes: `SELECT (m / $6::bigint) * $6::bigint AS bucket, verdict, label, model, sum(n) AS count
    FROM (SELECT minute AS m, verdict, label, model, count AS n FROM line_minutes
          WHERE line = $1 AND minute >= $4 AND minute < $5
          UNION ALL
          SELECT ts, verdict, label, model, 1 FROM results WHERE line = $1 AND ts >= $2 AND ts < $4
          UNION ALL
          SELECT ts, verdict, label, model, 1 FROM results WHERE line = $1 AND ts >= $5 AND ts < $3) AS x
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
  lineStatsRows: `SELECT (ts / $4::bigint) * $4::bigint AS bucket, verdict, label, model, count(*) AS count
    FROM results WHERE line = $1 AND ts >= $2 AND ts < $3
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
  // Each model's first and last minute on the line, then the exact ts from the rows of those minutes.
  lineVersions: `SELECT v.model,
      coalesce((SELECT min(ts) FROM results WHERE line = $1 AND model = v.model AND ts >= v.first AND ts < v.first + ${MINUTE_MS}), v.first) AS first,
      coalesce((SELECT max(ts) FROM results WHERE line = $1 AND model = v.model AND ts >= v.last AND ts < v.last + ${MINUTE_MS}), v.last) AS last,
      v.count
    FROM (SELECT model, min(minute) AS first, max(minute) AS last, sum(count) AS count
          FROM line_minutes WHERE line = $1 GROUP BY model HAVING sum(count) > 0) AS v
    ORDER BY v.first, v.model`,
  telemetryRange: 'SELECT * FROM telemetry_minutes WHERE edge_id = $1 AND minute >= $2 AND minute < $3 ORDER BY minute',
  recentVerdicts: 'SELECT verdict, label, score FROM results WHERE edge_id = $1 ORDER BY ts DESC, id DESC LIMIT $2',
  getResult: 'SELECT * FROM results WHERE edge_id = $1 AND store_id = $2 AND seq = $3',
  candidateCounters: `SELECT edge_id AS "edgeId", frames, defects, paired, agree, base_defects AS "baseDefects", errors
    FROM edge_model_counts WHERE edge_id = ANY($1::text[]) AND model = $2 AND mode = $3 ORDER BY edge_id`,
  // The edge's newest results (results_edge_ts, newest first), skipping one model's rows.
  recentDefectRate: `SELECT count(*) AS frames, count(*) FILTER (WHERE verdict = 'defect') AS defects
    FROM (SELECT verdict FROM results WHERE edge_id = $1 AND model <> $2 ORDER BY ts DESC, id DESC LIMIT $3) AS r`,
};

/** A listing filter's condition, its value bound as parameter `p`. */
const FILTERS: [key: 'edge' | 'line' | 'verdict' | 'label' | 'model' | 'from' | 'to', sql: (p: string) => string][] = [
  ['edge', (p) => `edge_id = ${p}`],
  // No index leads with line: the line's first and last minute bound the walk of results_ts.
  [
    'line',
    (p) =>
      `line = ${p} AND ts >= (SELECT min(minute) FROM line_minutes WHERE line = ${p})` +
      ` AND ts < (SELECT max(minute) FROM line_minutes WHERE line = ${p}) + ${MINUTE_MS}`,
  ],
  ['verdict', (p) => `verdict = ${p}`],
  ['label', (p) => `label = ${p}`],
  ['model', (p) => `model = ${p}`],
  ['from', (p) => `ts >= ${p}`],
  ['to', (p) => `ts < ${p}`],
];

/** A deadlock or serialization failure: the transaction did nothing and may simply run again. */
function retryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === '40P01' || code === '40001';
}

/** Integral ms bounds: `ts >= x` and `ts < x` mean the same with ceil(x) for integer ts, and bind as BIGINT. */
const bound = (ms: number) => Math.ceil(ms);

/**
 * FleetStore on a PostgreSQL pool whose database has FLEET_PG_MIGRATIONS applied. `close()` waits
 * for the calls in flight and refuses later ones; the pool belongs to the caller.
 */
export function pgFleetStore(pool: pg.Pool, opts: PgFleetStoreOptions): FleetStore {
  const log = opts.logger;
  let closed = false;
  const inFlight = new Set<Promise<unknown>>();

  /** Runs one call of the store, refused once closed, and tracked so that close() can wait for it. */
  function call<T>(fn: () => Promise<T>): Promise<T> {
    if (closed) return Promise.reject(new Error('fleet database is closed'));
    const p = fn();
    inFlight.add(p);
    const done = () => inFlight.delete(p);
    p.then(done, done);
    return p;
  }

  async function transaction<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await withTransaction(pool, fn);
      } catch (err) {
        if (attempt >= 3 || !retryable(err)) throw err;
      }
    }
  }

  async function ingest(edgeId: string, sent: readonly ResultRecord[], meta: ReportMeta, storeId: string): Promise<IngestOutcome> {
    const results = sent.some(holdsNul) ? sent.map(withoutNul) : sent;
    // A seq twice in one batch is sent once; the second copy is compared with what got stored.
    const bySeq = new Map<number, ResultRecord>();
    for (const r of results) if (!bySeq.has(r.seq)) bySeq.set(r.seq, r);
    const payload = JSON.stringify([...bySeq.values()]);
    return transaction(async (c) => {
      const head = (await c.query(FLEET_PG_SQL.touchForIngest, [edgeId, storeId, meta.receivedAt])).rows[0] as {
        line: string | null;
        edge_acked: number;
        edge_store: string;
        store_acked: number;
      };
      const line = head.line ?? UNKNOWN_LINE;
      const before = head.store_acked;
      const insertedSeqs = new Set((await c.query<{ seq: number }>(FLEET_PG_SQL.insertResults, [edgeId, storeId, line, payload, shardOf(edgeId)])).rows.map((r) => r.seq));
      // The first copy of each inserted seq is new; every other row is compared with the stored one.
      const firstCopies = new Set<ResultRecord>();
      for (const [seq, r] of bySeq) if (insertedSeqs.has(seq)) firstCopies.add(r);
      const storedRows = new Map<number, { ts: number; model: string; verdict: string; label: string }>();
      if (firstCopies.size < results.length) {
        const lookup = [...new Set(results.filter((r) => !firstCopies.has(r)).map((r) => r.seq))];
        for (const row of (await c.query(FLEET_PG_SQL.storedRows, [edgeId, storeId, lookup])).rows) storedRows.set(row.seq, row);
      }
      let conflicts = 0;
      let fillsAck = false;
      const stored = new Set<number>();
      for (const r of results) {
        if (r.seq === before + 1) fillsAck = true;
        if (firstCopies.has(r)) {
          stored.add(r.seq);
          continue;
        }
        const row = storedRows.get(r.seq);
        if (row) {
          stored.add(r.seq);
          if (row.ts !== r.ts || row.model !== r.model || row.verdict !== r.verdict || row.label !== r.label) conflicts++;
        }
      }
      let acked = before;
      if (fillsAck) while (stored.has(acked + 1)) acked++;
      const walked = (await c.query<{ seq: number }>(FLEET_PG_SQL.walkAndAck, [edgeId, storeId, acked, fillsAck])).rows[0]!.seq;
      return { ackedSeq: walked, inserted: firstCopies.size, conflicts };
    });
  }

  return {
    recordState: (edgeId, state, meta) =>
      call(() =>
        transaction(async (c) => {
          // A replayed retained state says when the edge last spoke, not that it speaks now.
          const seenAt = meta.replay ? Math.min(state.ts, meta.receivedAt) : meta.receivedAt;
          const row = (await c.query<EdgeRow>(FLEET_PG_SQL.touchEdge, [edgeId, seenAt])).rows[0]!;
          const previous = row.state ? (JSON.parse(row.state) as Partial<StateMessage>) : {};
          const line = noNul(state.line) ?? row.line;
          await c.query(FLEET_PG_SQL.writeState, [
            edgeId,
            line,
            state.cameras ? JSON.stringify(state.cameras) : row.cameras,
            Boolean(state.online),
            JSON.stringify({ ...previous, ...state }),
          ]);
          // A state naming another store (a wiped edge database) switches the edge's view to that store's ack.
          if (state.storeId !== undefined && state.storeId !== row.store_id && !meta.replay) {
            await c.query(FLEET_PG_SQL.switchStore, [edgeId, state.storeId]);
          }
          if (row.line === null && line !== null) {
            await c.query(FLEET_PG_SQL.moveUnknownMinutes, [edgeId, line, shardOf(edgeId)]);
            await c.query(FLEET_PG_SQL.pruneUnknownMinutes);
            const fixed = (await c.query(FLEET_PG_SQL.fixUnknownLine, [edgeId, line])).rowCount ?? 0;
            if (fixed > 0) log.info({ edgeId, line, results: fixed }, 'line assigned to earlier results');
          }
        }),
      ),
    recordTelemetry: (edgeId, t, meta) =>
      call(() =>
        transaction(async (c) => {
          const at = meta.receivedAt;
          await c.query(FLEET_PG_SQL.writeTelemetry, [edgeId, at, JSON.stringify(t)]);
          const minute = Math.floor(at / MINUTE_MS) * MINUTE_MS;
          await c.query(FLEET_PG_SQL.telemetryMinute, [
            edgeId,
            minute,
            at,
            t.fps,
            t.latencyMs.p50,
            t.latencyMs.p95,
            t.queueDepth,
            t.cpuPercent,
            t.rssBytes,
            t.frames,
            t.failed,
            t.storage?.resultBytes ?? null,
            t.storage?.imageBytes ?? null,
            minute - TELEMETRY_RETENTION_MS,
            ...MONITOR_COLUMNS.map(([, , field]) => t.monitor?.[field] ?? null),
          ]);
        }),
      ),
    recordEvent: (edgeId, ev, meta) =>
      call(async () => {
        await pool.query(FLEET_PG_SQL.insertEvent, [
          edgeId,
          meta.receivedAt,
          ev.ts,
          ev.kind,
          ev.level,
          noNul(ev.message),
          ev.data === undefined ? null : JSON.stringify(ev.data),
        ]);
      }),
    ingestResults: (edgeId, results, meta, storeId) => call(() => ingest(edgeId, results, meta, storeId ?? '')),
    markAllOffline: () => call(async () => (await pool.query(FLEET_PG_SQL.markAllOffline)).rowCount ?? 0),
    getEdge: (edgeId) =>
      call(async () => {
        const row = (await pool.query<EdgeRow>(FLEET_PG_SQL.getEdge, [edgeId])).rows[0];
        return row ? toEdgeRecord(row) : null;
      }),
    storeAckedSeq: (edgeId, storeId) =>
      call(async () => (await pool.query<{ acked_seq: number }>(FLEET_PG_SQL.storeAcked, [edgeId, storeId])).rows[0]?.acked_seq ?? null),
    listEdges: () => call(async () => (await pool.query<EdgeRow>(FLEET_PG_SQL.listEdges)).rows.map(toEdgeRecord)),
    listLines: () => call(async () => (await pool.query<{ line: string; edges: number; online: number }>(FLEET_PG_SQL.listLines, [UNKNOWN_LINE])).rows),
    listEvents: (edgeId, limit) => call(async () => (await pool.query<EventRow>(FLEET_PG_SQL.listEvents, [edgeId, limit])).rows.map(toStoredEvent)),
    hasLine: (line) => call(async () => (await pool.query<{ has: boolean }>(FLEET_PG_SQL.hasLine, [line])).rows[0]!.has),
    lineStats: (line, from, to, bucketMs) =>
      call(async () => {
        const aFrom = Math.ceil(from / MINUTE_MS) * MINUTE_MS;
        const aTo = Math.floor(to / MINUTE_MS) * MINUTE_MS;
        const b = Math.trunc(bucketMs);
        if (bucketMs % MINUTE_MS === 0 && aFrom < aTo) {
          return (await pool.query<StatsRow>(FLEET_PG_SQL.lineStatsMinutes, [line, bound(from), bound(to), aFrom, aTo, b])).rows;
        }
        return (await pool.query<StatsRow>(FLEET_PG_SQL.lineStatsRows, [line, bound(from), bound(to), b])).rows;
      }),
    lineVersions: (line) => call(async () => (await pool.query<LineVersion>(FLEET_PG_SQL.lineVersions, [line])).rows),
    listResults: (q: ResultsQuery) =>
      call(async () => {
        const params: unknown[] = [];
        const param = (v: unknown) => {
          params.push(v);
          return `$${params.length}`;
        };
        const where: string[] = [];
        for (const [key, sql] of FILTERS) {
          const v = q[key];
          if (v !== undefined) where.push(sql(param(key === 'from' || key === 'to' ? bound(v as number) : v)));
        }
        if (q.after) where.push(`(ts, id) < (${param(q.after.ts)}::bigint, ${param(q.after.id)}::bigint)`);
        // One row more than asked tells whether there is a next page without a count query.
        let sql = `SELECT * FROM results${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY ts DESC, id DESC LIMIT ${param(q.limit + 1)}`;
        if (q.offset !== undefined) sql += ` OFFSET ${param(q.offset)}`;
        const rows = (await pool.query<ResultRow>(sql, params)).rows;
        const items = rows.slice(0, q.limit).map(toStoredResult);
        const last = items[items.length - 1];
        return { items, next: rows.length > q.limit && last ? { ts: last.ts, id: last.id } : null };
      }),
    telemetryHistory: (edgeId, from, to) =>
      call(async () => (await pool.query<TelemetryMinuteRow>(FLEET_PG_SQL.telemetryRange, [edgeId, bound(from), bound(to)])).rows.map(toTelemetryMinute)),
    recentVerdicts: (edgeId, limit) => call(async () => (await pool.query<VerdictScore>(FLEET_PG_SQL.recentVerdicts, [edgeId, limit])).rows),
    candidateCounters: (edges, model, mode) =>
      call(async () => (edges.length === 0 ? [] : (await pool.query<CandidateCounts>(FLEET_PG_SQL.candidateCounters, [edges, model, mode])).rows)),
    recentDefectRate: (edgeId, excludeModel, limit) =>
      call(async () => (await pool.query<{ frames: number; defects: number }>(FLEET_PG_SQL.recentDefectRate, [edgeId, excludeModel, limit])).rows[0]!),
    getResult: (edgeId, storeId, seq) =>
      call(async () => {
        const row = (await pool.query<ResultRow>(FLEET_PG_SQL.getResult, [edgeId, storeId, seq])).rows[0];
        return row ? toStoredResult(row) : null;
      }),
    ping: () =>
      call(async () => {
        await pool.query('SELECT 1');
      }),
    async close() {
      if (closed) return;
      // Calls already handed in are answered before the store refuses new ones.
      closed = true;
      await Promise.allSettled([...inFlight]);
    },
  };
}
