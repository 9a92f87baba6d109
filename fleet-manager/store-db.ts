/**
 * The fleet database itself: schema, migrations and every statement, synchronous
 * (better-sqlite3). `openSqliteStore` (store.ts) puts FleetStore's asynchronous interface and the
 * group commit on top of it.
 */
import Database from 'better-sqlite3';
import { addMissingColumns, migrateToGateCounts, migrateToLineMinutes, migrateToStoreIds, migrateToStoreKeys } from './store-migrations.js';
import { createEdgeHistoryDb, migrateEdgeHistorySchema, type EdgeHistoryDb } from './edge-history-db.js';
import { createGateCountsDb, type GateCountsDb } from './gate-counts-db.js';
import { newGateTally, tallyResult } from './gate-counts.js';
import { withNewConnection } from './sqlite-db.js';
import { BulkShortfall, createResultInserter, ROWS_PER_STATEMENT } from './result-insert.js';
import type {
  EdgeRecord,
  IngestOutcome,
  LineSummary,
  ReportMeta,
  ResultsPage,
  ResultsQuery,
  StatsRow,
  LineVersion,
  StoredEvent,
  StoredResult,
} from './store.js';
import type {
  EventMessage,
  ResultRecord,
  StateMessage,
  TelemetryMessage,
  Verdict,
} from '../protocol/messages.js';

/** The line recorded for results that arrive before the edge has reported its line. */
export const UNKNOWN_LINE = 'unknown';

/** Granularity of the line statistics aggregate (`line_minutes`). */
export const MINUTE_MS = 60_000;

/** What the database code logs through: pino's shape, so a pino logger fits as is. */
export interface StoreLog {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

// 2: results keyed by (edge_id, store_id, seq), per-store acks in edge_stores (issue 5).
// 3: per-minute line statistics in line_minutes instead of the covering index results_line_ts.
// 4: rollout gate counters per edge × model × mode in edge_model_counts, kept at ingest (an older
//    build would store results without counting them, so it must refuse the file).
// 5: results keyed by (store_key, seq), store_key an integer naming the edge × store row of
//    edge_stores, instead of (edge_id, store_id, seq) with the store's 36-character id in every row.
export const SCHEMA_VERSION = 5;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS edges (
  id TEXT PRIMARY KEY,
  line TEXT,
  cameras TEXT NOT NULL DEFAULT '[]',
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  online INTEGER NOT NULL DEFAULT 0,
  state TEXT,
  telemetry TEXT,
  telemetry_at INTEGER,
  acked_seq INTEGER NOT NULL DEFAULT 0,
  store_id TEXT NOT NULL DEFAULT ''
);
-- One row per result store an edge has had (a wiped edge database is a new store): its ack, and
-- the key its results are stored under.
CREATE TABLE IF NOT EXISTS edge_stores (
  key INTEGER PRIMARY KEY,
  edge_id TEXT NOT NULL,
  store_id TEXT NOT NULL,
  acked_seq INTEGER NOT NULL DEFAULT 0,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  UNIQUE (edge_id, store_id)
);
CREATE TABLE IF NOT EXISTS results (
  id INTEGER PRIMARY KEY,
  edge_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  line TEXT NOT NULL,
  camera TEXT NOT NULL,
  source TEXT NOT NULL,
  frame TEXT,
  model TEXT NOT NULL,
  verdict TEXT NOT NULL,
  label TEXT NOT NULL,
  score REAL NOT NULL,
  latency_ms REAL NOT NULL,
  detections TEXT,
  -- edge_stores.key of the edge and the result store the row came from. An integer rather than
  -- the store's id: the UNIQUE key is an entry of every insert, and a narrow one took a third more
  -- rows/s in a raw insert test (docs/BENCHMARKS.md, fleet ingest).
  store_key INTEGER NOT NULL,
  UNIQUE (store_key, seq)
);
CREATE INDEX IF NOT EXISTS results_ts ON results (ts);
CREATE INDEX IF NOT EXISTS results_edge_ts ON results (edge_id, ts);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,
  edge_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  kind TEXT NOT NULL,
  level TEXT NOT NULL,
  message TEXT NOT NULL,
  data TEXT
);
CREATE INDEX IF NOT EXISTS events_edge_ts ON events (edge_id, ts);
`;

/** A row of `events` (shared with the PostgreSQL store). */
export interface EventRow {
  ts: number;
  received_at: number;
  kind: string;
  level: string;
  message: string;
  data: string | null;
}

/** A row of `edges`, online as 0/1 (shared with the PostgreSQL store). */
export interface EdgeRow {
  id: string;
  line: string | null;
  cameras: string;
  first_seen: number;
  last_seen: number;
  online: number;
  state: string | null;
  telemetry: string | null;
  telemetry_at: number | null;
  acked_seq: number;
  store_id: string;
}

/** A row of `results` with its store's id (shared with the PostgreSQL store). */
export interface ResultRow {
  id: number;
  edge_id: string;
  seq: number;
  ts: number;
  line: string;
  camera: string;
  source: ResultRecord['source'];
  frame: string | null;
  model: string;
  verdict: Verdict;
  label: string;
  score: number;
  latency_ms: number;
  detections: string | null;
  store_id: string;
}

/** A results row with its store's id (the store_key's edge_stores row) for `ResultRow`. */
const RESULT_COLUMNS = 'results.*, (SELECT store_id FROM edge_stores WHERE key = results.store_key) AS store_id';

type ResultFilterKey = 'edge' | 'line' | 'verdict' | 'label' | 'model' | 'from' | 'to';
const FILTER_SQL: Record<ResultFilterKey, string> = {
  edge: 'edge_id = @edge',
  // No index leads with line: the line's first and last minute (line_minutes) bound the walk of
  // results_ts, so a line quiet for long does not make the query read every newer row.
  line:
    'line = @line AND ts >= (SELECT min(minute) FROM line_minutes WHERE line = @line)' +
    ` AND ts < (SELECT max(minute) FROM line_minutes WHERE line = @line) + ${MINUTE_MS}`,
  verdict: 'verdict = @verdict',
  label: 'label = @label',
  model: 'model = @model',
  from: 'ts >= @from',
  to: 'ts < @to',
};
const FILTER_KEYS = Object.keys(FILTER_SQL) as ResultFilterKey[];

/** One batch handed to `ingestBatches`. */
export interface IngestRequest {
  edgeId: string;
  results: readonly ResultRecord[];
  meta: ReportMeta;
  storeId: string;
}

/** The synchronous fleet database: FleetStore's operations (store.ts documents them). */
export interface FleetDb extends Pick<EdgeHistoryDb, 'telemetryHistory' | 'recentVerdicts' | 'recentDefectRate'>, Pick<GateCountsDb, 'candidateCounters'> {
  recordState(edgeId: string, state: StateMessage, meta: ReportMeta): void;
  recordTelemetry(edgeId: string, telemetry: TelemetryMessage, meta: ReportMeta): void;
  recordEvent(edgeId: string, event: EventMessage, meta: ReportMeta): void;
  /**
   * Stores the batches in one transaction (one commit, one fsync), each batch its own savepoint
   * with its own outcome. When the group fails it is retried batch by batch, so a bad batch fails
   * alone: its entry is the error, the others' their outcomes.
   */
  ingestBatches(batches: readonly IngestRequest[]): (IngestOutcome | Error)[];
  markAllOffline(): number;
  getEdge(edgeId: string): EdgeRecord | null;
  storeAckedSeq(edgeId: string, storeId: string): number | null;
  listEdges(): EdgeRecord[];
  listLines(): LineSummary[];
  listEvents(edgeId: string, limit: number): StoredEvent[];
  hasLine(line: string): boolean;
  lineStats(line: string, from: number, to: number, bucketMs: number): StatsRow[];
  lineVersions(line: string): LineVersion[];
  listResults(query: ResultsQuery): ResultsPage;
  getResult(edgeId: string, storeId: string, seq: number): StoredResult | null;
  ping(): void;
  close(): void;
}

/**
 * Opens (creating or upgrading if needed) the fleet database on a connection of its own
 * (sqlite-db.ts: WAL, synchronous=FULL). Throws on a database newer than this build.
 */
export function openFleetDatabase(file: string, log: StoreLog): Database.Database {
  return withNewConnection(file, {}, (db) => {
    migrateFleetSchema(db, file, log);
    return db;
  });
}

/**
 * Creates or upgrades the fleet tables (edges, results, events, line statistics, telemetry
 * history) on an open connection. Throws on a database newer than this build.
 */
export function migrateFleetSchema(db: Database.Database, file: string, log: StoreLog): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new Error(`fleet database ${file} has schema version ${version}, newer than this build (${SCHEMA_VERSION})`);
  }
  // Every step is idempotent and checks the shape it finds, so files of any age converge.
  const createTables = () => {
    db.exec(SCHEMA);
    addShadowColumns(db);
  };
  createTables();
  migrateToStoreIds(db);
  migrateToStoreKeys(db, createTables, log);
  migrateToLineMinutes(db, log);
  migrateToGateCounts(db, log);
  migrateEdgeHistorySchema(db);
  if (version !== SCHEMA_VERSION) db.pragma(`user_version = ${SCHEMA_VERSION}`);
}

/** Prepares every statement on an open fleet database (openFleetDatabase) and returns its operations. */
export function createFleetDb(db: Database.Database, log: StoreLog): FleetDb {
  const history = createEdgeHistoryDb(db);
  const gates = createGateCountsDb(db);
  const rows = createResultInserter(db);
  const st = {
    getEdge: db.prepare<[string], EdgeRow>('SELECT * FROM edges WHERE id = ?'),
    // One upsert for every kind of report; line and cameras only ever move from unknown to known.
    touchEdge: db.prepare<{ id: string; seen: number }>(
      `INSERT INTO edges (id, first_seen, last_seen) VALUES (@id, @seen, @seen)
       ON CONFLICT (id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`,
    ),
    writeState: db.prepare<{ id: string; line: string | null; cameras: string; online: number; state: string }>(
      'UPDATE edges SET line = @line, cameras = @cameras, online = @online, state = @state WHERE id = @id',
    ),
    // Re-assigning an edge's early results moves their counts in line_minutes too: added under the
    // new line, taken from the unknown one (emptied groups removed), then the rows themselves.
    unknownMinutesAdd: db.prepare<{ id: string; line: string }>(
      `INSERT INTO line_minutes (line, minute, verdict, label, model, count)
       SELECT @line, (ts / ${MINUTE_MS}) * ${MINUTE_MS}, verdict, label, model, count(*)
       FROM results WHERE edge_id = @id AND line = '${UNKNOWN_LINE}' GROUP BY 2, 3, 4, 5
       ON CONFLICT (line, minute, verdict, label, model) DO UPDATE SET count = count + excluded.count`,
    ),
    unknownMinutesTake: db.prepare<{ id: string }>(
      `UPDATE line_minutes SET count = count - g.n
       FROM (SELECT (ts / ${MINUTE_MS}) * ${MINUTE_MS} AS minute, verdict, label, model, count(*) AS n
             FROM results WHERE edge_id = @id AND line = '${UNKNOWN_LINE}' GROUP BY 1, 2, 3, 4) AS g
       WHERE line_minutes.line = '${UNKNOWN_LINE}' AND line_minutes.minute = g.minute
         AND line_minutes.verdict = g.verdict AND line_minutes.label = g.label AND line_minutes.model = g.model`,
    ),
    unknownMinutesPrune: db.prepare(`DELETE FROM line_minutes WHERE line = '${UNKNOWN_LINE}' AND count <= 0`),
    fixUnknownLine: db.prepare<{ id: string; line: string }>(
      `UPDATE results SET line = @line WHERE edge_id = @id AND line = '${UNKNOWN_LINE}'`,
    ),
    writeTelemetry: db.prepare<{ id: string; telemetry: string; at: number }>(
      'UPDATE edges SET telemetry = @telemetry, telemetry_at = @at WHERE id = @id',
    ),
    insertEvent: db.prepare(
      `INSERT INTO events (edge_id, ts, received_at, kind, level, message, data)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ),
    addMinute: db.prepare<[string, number, string, string, string, number]>(
      `INSERT INTO line_minutes (line, minute, verdict, label, model, count) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (line, minute, verdict, label, model) DO UPDATE SET count = count + excluded.count`,
    ),
    // Walks stored seqs upward from the ack; the UNIQUE (store_key, seq) index keeps it ordered.
    seqsAfter: db.prepare<[number, number], number>('SELECT seq FROM results WHERE store_key = ? AND seq > ? ORDER BY seq').pluck(),
    storedRow: db.prepare<[number, number], { ts: number; model: string; verdict: string; label: string }>(
      'SELECT ts, model, verdict, label FROM results WHERE store_key = ? AND seq = ?',
    ),
    touchStore: db.prepare<{ edgeId: string; storeId: string; seen: number }, { key: number; acked_seq: number }>(
      `INSERT INTO edge_stores (edge_id, store_id, first_seen, last_seen) VALUES (@edgeId, @storeId, @seen, @seen)
       ON CONFLICT (edge_id, store_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)
       RETURNING key, acked_seq`,
    ),
    storeAcked: db.prepare<[string, string], number>('SELECT acked_seq FROM edge_stores WHERE edge_id = ? AND store_id = ?').pluck(),
    setStoreAcked: db.prepare<[number, number]>('UPDATE edge_stores SET acked_seq = ? WHERE key = ?'),
    // The edge's own row follows the store it reports from, for /api/edges.
    setAcked: db.prepare<[number, string, string]>('UPDATE edges SET acked_seq = ?, store_id = ? WHERE id = ?'),
    markAllOffline: db.prepare('UPDATE edges SET online = 0 WHERE online = 1'),
    listEdges: db.prepare<[], EdgeRow>('SELECT * FROM edges ORDER BY id'),
    listEvents: db.prepare<[string, number], EventRow>(
      'SELECT ts, received_at, kind, level, message, data FROM events WHERE edge_id = ? ORDER BY ts DESC, id DESC LIMIT ?',
    ),
    listLines: db.prepare<[string], LineSummary>(
      `SELECT coalesce(line, ?) AS line, count(*) AS edges, sum(online) AS online
       FROM edges GROUP BY 1 ORDER BY 1`,
    ),
    // Every stored result is counted in line_minutes under its line, so the aggregate answers
    // "does any result carry this line" from its primary key.
    hasLine: db.prepare<[string, string], number>(
      `SELECT EXISTS (SELECT 1 FROM edges WHERE line = ?) OR EXISTS (SELECT 1 FROM line_minutes WHERE line = ?)`,
    ).pluck(),
    // Buckets of whole minutes: the minutes inside [from, to) come from line_minutes; the partial
    // minutes at either end (from..aFrom, aTo..to) from the rows themselves (results_ts). A bucket
    // of k minutes groups minute m as (m / b) * b, the same bucket as any ts of that minute.
    // better-sqlite3 binds JS numbers as REAL; the CASTs keep the divisions integral.
    lineStatsMinutes: db.prepare<{ line: string; from: number; to: number; aFrom: number; aTo: number; b: number }, StatsRow>(
      `SELECT (m / CAST(@b AS INTEGER)) * CAST(@b AS INTEGER) AS bucket, verdict, label, model, sum(n) AS count
       FROM (SELECT minute AS m, verdict, label, model, count AS n FROM line_minutes
             WHERE line = @line AND minute >= @aFrom AND minute < @aTo
             UNION ALL
             SELECT ts, verdict, label, model, 1 FROM results WHERE line = @line AND ts >= @from AND ts < @aFrom
             UNION ALL
             SELECT ts, verdict, label, model, 1 FROM results WHERE line = @line AND ts >= @aTo AND ts < @to)
       GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
    ),
    // Buckets finer than a minute, or a window within one minute: the rows themselves.
    lineStatsRows: db.prepare<{ line: string; from: number; to: number; b: number }, StatsRow>(
      `SELECT (ts / CAST(@b AS INTEGER)) * CAST(@b AS INTEGER) AS bucket, verdict, label, model, count(*) AS count
       FROM results WHERE line = @line AND ts >= @from AND ts < @to
       GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
    ),
    // Each model's first and last minute on the line (line_minutes' primary key leads with line),
    // then the exact first and last ts from the rows of those two minutes (results_ts).
    lineVersionMinutes: db.prepare<[string], { model: string; first: number; last: number; count: number }>(
      `SELECT model, min(minute) AS first, max(minute) AS last, sum(count) AS count
       FROM line_minutes WHERE line = ? GROUP BY model HAVING sum(count) > 0 ORDER BY first, model`,
    ),
    modelFirstTs: db.prepare<[string, string, number, number], number | null>(
      'SELECT min(ts) FROM results WHERE line = ? AND model = ? AND ts >= ? AND ts < ?',
    ).pluck(),
    modelLastTs: db.prepare<[string, string, number, number], number | null>(
      'SELECT max(ts) FROM results WHERE line = ? AND model = ? AND ts >= ? AND ts < ?',
    ).pluck(),
    getResult: db.prepare<[string, string, number], ResultRow>(
      `SELECT results.*, s.store_id FROM edge_stores s JOIN results ON results.store_key = s.key
       WHERE s.edge_id = ? AND s.store_id = ? AND results.seq = ?`,
    ),
    ping: db.prepare<[], number>('SELECT 1').pluck(),
  };

  // Result listings are prepared once per combination of filters, on first use.
  const listStatements = new Map<string, Database.Statement<Record<string, unknown>, ResultRow>>();
  function listStatement(keys: ResultFilterKey[], keyset: boolean, offset: boolean) {
    const cacheKey = `${keys.join(',')}|${keyset}|${offset}`;
    let stmt = listStatements.get(cacheKey);
    if (!stmt) {
      const where = keys.map((k) => FILTER_SQL[k]);
      if (keyset) where.push('(ts < @afterTs OR (ts = @afterTs AND id < @afterId))');
      const sql =
        `SELECT ${RESULT_COLUMNS} FROM results${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
        ` ORDER BY ts DESC, id DESC LIMIT @limit${offset ? ' OFFSET @offset' : ''}`;
      stmt = db.prepare<Record<string, unknown>, ResultRow>(sql);
      listStatements.set(cacheKey, stmt);
    }
    return stmt;
  }

  function touch(edgeId: string, meta: ReportMeta, seenAt = meta.receivedAt): EdgeRow {
    st.touchEdge.run({ id: edgeId, seen: seenAt });
    return st.getEdge.get(edgeId)!;
  }

  const recordState = db.transaction((edgeId: string, state: StateMessage, meta: ReportMeta) => {
    // A replayed retained state says when the edge last spoke, not that it speaks now.
    const row = touch(edgeId, meta, meta.replay ? Math.min(state.ts, meta.receivedAt) : meta.receivedAt);
    const previous = row.state ? (JSON.parse(row.state) as Partial<StateMessage>) : {};
    const merged = { ...previous, ...state };
    const line = state.line ?? row.line;
    st.writeState.run({
      id: edgeId,
      line,
      cameras: state.cameras ? JSON.stringify(state.cameras) : row.cameras,
      online: state.online ? 1 : 0,
      state: JSON.stringify(merged),
    });
    // A state naming another store (a wiped edge database) switches the edge's view to that store's ack.
    if (state.storeId !== undefined && state.storeId !== row.store_id && !meta.replay) {
      st.setAcked.run(st.storeAcked.get(edgeId, state.storeId) ?? 0, state.storeId, edgeId);
    }
    if (row.line === null && line !== null) {
      st.unknownMinutesAdd.run({ id: edgeId, line });
      st.unknownMinutesTake.run({ id: edgeId });
      st.unknownMinutesPrune.run();
      const fixed = st.fixUnknownLine.run({ id: edgeId, line }).changes;
      if (fixed > 0) log.info({ edgeId, line, results: fixed }, 'line assigned to earlier results');
    }
  });

  const recordTelemetry = db.transaction((edgeId: string, telemetry: TelemetryMessage, meta: ReportMeta) => {
    touch(edgeId, meta);
    st.writeTelemetry.run({ id: edgeId, telemetry: JSON.stringify(telemetry), at: meta.receivedAt });
    history.recordTelemetry(edgeId, telemetry, meta.receivedAt);
  });

  const recordEvent = db.transaction((edgeId: string, ev: EventMessage, meta: ReportMeta) => {
    touch(edgeId, meta);
    st.insertEvent.run(
      edgeId,
      ev.ts,
      meta.receivedAt,
      ev.kind,
      ev.level,
      ev.message,
      ev.data === undefined ? null : JSON.stringify(ev.data),
    );
  });

  interface MinuteCount {
    minute: number;
    verdict: string;
    label: string;
    model: string;
    count: number;
  }

  // Its own savepoint: a shortfall rolls back only the chunks, inside the batch's transaction.
  const insertAll = db.transaction((edgeId: string, storeKey: number, line: string, results: readonly ResultRecord[]) =>
    rows.all(edgeId, storeKey, line, results),
  );

  const ingest = db.transaction(({ edgeId, results, meta, storeId }: IngestRequest): IngestOutcome => {
    const edge = touch(edgeId, meta);
    const line = edge.line ?? UNKNOWN_LINE;
    const { key: storeKey, acked_seq: before } = st.touchStore.get({ edgeId, storeId, seen: meta.receivedAt })!;
    let acked = before;
    let inserted = 0;
    let conflicts = 0;
    let fillsAck = false;
    // The rows this batch adds, counted per minute × verdict × label × model for line_minutes.
    const minutes = new Map<string, MinuteCount>();
    let last: MinuteCount | undefined;
    // The same rows counted per model × mode for the rollout gates (edge_model_counts).
    const tally = newGateTally();
    // Seqs of this batch now stored (inserted, or there before), for the ack walk.
    const stored = new Set<number>();
    // Rows new to the fleet (a backlog) go in chunks; if any was there already, row by row.
    let allNew = false;
    if (results.length >= ROWS_PER_STATEMENT && (results[0]?.seq ?? 0) > before) {
      try {
        insertAll(edgeId, storeKey, line, results);
        allNew = true;
      } catch (err) {
        if (!(err instanceof BulkShortfall)) throw err;
      }
    }
    for (const r of results) {
      if (r.seq === acked + 1) fillsAck = true;
      const added = allNew ? 1 : rows.one(edgeId, storeKey, line, r);
      inserted += added;
      if (added === 0) {
        // A resend carries the same row; anything else under the same key is another frame.
        const row = st.storedRow.get(storeKey, r.seq);
        if (row) {
          stored.add(r.seq);
          if (row.ts !== r.ts || row.model !== r.model || row.verdict !== r.verdict || row.label !== r.label) conflicts++;
        }
      } else {
        stored.add(r.seq);
        // ts is an integer >= 0 (protocol), so this is SQLite's (ts / 60000) * 60000.
        const minute = Math.floor(r.ts / MINUTE_MS) * MINUTE_MS;
        // Neighbouring rows mostly share all four: the last group is checked before a key is built.
        if (last?.minute === minute && last.verdict === r.verdict && last.label === r.label && last.model === r.model) {
          last.count++;
        } else {
          const key = `${minute}\u0000${r.verdict}\u0000${r.label}\u0000${r.model}`;
          last = minutes.get(key);
          if (last) last.count++;
          else minutes.set(key, (last = { minute, verdict: r.verdict, label: r.label, model: r.model, count: 1 }));
        }
        tallyResult(tally, r);
      }
    }
    for (const m of minutes.values()) st.addMinute.run(line, m.minute, m.verdict, m.label, m.model, m.count);
    gates.add(edgeId, tally);
    // Only a batch holding acked+1 can move the ack: otherwise the gap after it is still open.
    if (fillsAck) {
      // Walk the batch's stored seqs first, then the stored seqs after them (usually none): the
      // walk stays O(batch) without reading back the rows just written.
      while (stored.has(acked + 1)) acked++;
      for (const seq of st.seqsAfter.iterate(storeKey, acked)) {
        if (seq !== acked + 1) break;
        acked = seq;
      }
      if (acked !== before) st.setStoreAcked.run(acked, storeKey);
    }
    if (acked !== edge.acked_seq || storeId !== edge.store_id) st.setAcked.run(acked, storeId, edgeId);
    return { ackedSeq: acked, inserted, conflicts };
  });

  const ingestGroup = db.transaction((batches: readonly IngestRequest[]) => batches.map((b) => ingest(b)));

  let closed = false;
  function open(): void {
    if (closed) throw new Error('fleet database is closed');
  }

  return {
    recordState(edgeId, state, meta) {
      open();
      recordState(edgeId, state, meta);
    },
    recordTelemetry(edgeId, telemetry, meta) {
      open();
      recordTelemetry(edgeId, telemetry, meta);
    },
    recordEvent(edgeId, event, meta) {
      open();
      recordEvent(edgeId, event, meta);
    },
    ingestBatches(batches) {
      if (closed) return batches.map(() => new Error('fleet database is closed'));
      if (batches.length > 1) {
        try {
          return ingestGroup(batches);
        } catch {
          // Some batch failed and rolled the group back: store them one by one, so it fails alone.
        }
      }
      return batches.map((b) => {
        try {
          return ingest(b);
        } catch (err) {
          return err instanceof Error ? err : new Error(String(err));
        }
      });
    },
    markAllOffline() {
      open();
      return st.markAllOffline.run().changes;
    },
    getEdge(edgeId) {
      open();
      const row = st.getEdge.get(edgeId);
      return row ? toEdgeRecord(row) : null;
    },
    storeAckedSeq(edgeId, storeId) {
      open();
      return st.storeAcked.get(edgeId, storeId) ?? null;
    },
    listEdges() {
      open();
      return st.listEdges.all().map(toEdgeRecord);
    },
    listEvents(edgeId, limit) {
      open();
      return st.listEvents.all(edgeId, limit).map(toStoredEvent);
    },
    listLines() {
      open();
      return st.listLines.all(UNKNOWN_LINE).map((l) => ({ line: l.line, edges: l.edges, online: l.online ?? 0 }));
    },
    hasLine(line) {
      open();
      return st.hasLine.get(line, line) === 1;
    },
    lineStats(line, from, to, bucketMs) {
      open();
      const aFrom = Math.ceil(from / MINUTE_MS) * MINUTE_MS;
      const aTo = Math.floor(to / MINUTE_MS) * MINUTE_MS;
      if (bucketMs % MINUTE_MS === 0 && aFrom < aTo) {
        return st.lineStatsMinutes.all({ line, from, to, aFrom, aTo, b: bucketMs });
      }
      return st.lineStatsRows.all({ line, from, to, b: bucketMs });
    },
    lineVersions(line) {
      open();
      return st.lineVersionMinutes.all(line).map((v) => ({
        model: v.model,
        first: st.modelFirstTs.get(line, v.model, v.first, v.first + MINUTE_MS) ?? v.first,
        last: st.modelLastTs.get(line, v.model, v.last, v.last + MINUTE_MS) ?? v.last,
        count: v.count,
      }));
    },
    listResults(q) {
      open();
      const keys = FILTER_KEYS.filter((k) => q[k] !== undefined);
      const params: Record<string, unknown> = { limit: q.limit + 1 };
      for (const k of keys) params[k] = q[k];
      if (q.after) {
        params.afterTs = q.after.ts;
        params.afterId = q.after.id;
      }
      if (q.offset !== undefined) params.offset = q.offset;
      // One row more than asked tells whether there is a next page without a count query.
      const rows = listStatement(keys, q.after !== undefined, q.offset !== undefined).all(params);
      const items = rows.slice(0, q.limit).map(toStoredResult);
      const last = items[items.length - 1];
      return { items, next: rows.length > q.limit && last ? { ts: last.ts, id: last.id } : null };
    },
    telemetryHistory(edgeId, from, to) {
      open();
      return history.telemetryHistory(edgeId, from, to);
    },
    recentVerdicts(edgeId, limit) {
      open();
      return history.recentVerdicts(edgeId, limit);
    },
    recentDefectRate(edgeId, excludeModel, limit) {
      open();
      return history.recentDefectRate(edgeId, excludeModel, limit);
    },
    candidateCounters(edges, model, mode) {
      open();
      return gates.candidateCounters(edges, model, mode);
    },
    getResult(edgeId, storeId, seq) {
      open();
      const row = st.getResult.get(edgeId, storeId, seq);
      return row ? toStoredResult(row) : null;
    },
    ping() {
      if (closed || st.ping.get() !== 1) throw new Error('fleet database is closed');
    },
    close() {
      if (closed) return;
      closed = true;
      db.close();
    },
  };
}

/**
 * The shadow candidate's outcome per result (rollout gates: agreement, defect-rate change) as
 * columns rather than JSON, so gates aggregate in SQL. Added by column check rather than a schema
 * version bump, so databases of either age converge on the same shape.
 */
function addShadowColumns(db: Database.Database): void {
  addMissingColumns(db, 'results', [
    ['shadow_model', 'TEXT'],
    ['shadow_verdict', 'TEXT'],
    ['shadow_label', 'TEXT'],
    ['shadow_score', 'REAL'],
    ['shadow_latency_ms', 'REAL'],
    ['shadow_error', 'TEXT'],
  ]);
}

/** An `edges` row as FleetStore answers it. */
export function toEdgeRecord(row: EdgeRow): EdgeRecord {
  return {
    id: row.id,
    line: row.line,
    cameras: JSON.parse(row.cameras) as string[],
    firstSeen: row.first_seen,
    lastSeen: row.last_seen,
    online: row.online === 1,
    state: row.state ? (JSON.parse(row.state) as Partial<StateMessage>) : null,
    telemetry: row.telemetry ? (JSON.parse(row.telemetry) as TelemetryMessage) : null,
    telemetryAt: row.telemetry_at,
    ackedSeq: row.acked_seq,
    storeId: row.store_id,
  };
}

/** A `results` row as FleetStore answers it. */
export function toStoredResult(row: ResultRow): StoredResult {
  const r: StoredResult = {
    id: row.id,
    edgeId: row.edge_id,
    line: row.line,
    seq: row.seq,
    ts: row.ts,
    camera: row.camera,
    source: row.source,
    model: row.model,
    verdict: row.verdict,
    label: row.label,
    score: row.score,
    latencyMs: row.latency_ms,
  };
  if (row.frame !== null) r.frame = row.frame;
  if (row.detections !== null) r.detections = JSON.parse(row.detections) as StoredResult['detections'];
  if (row.store_id) r.storeId = row.store_id;
  return r;
}

/** An `events` row as FleetStore answers it. */
export function toStoredEvent(r: EventRow): StoredEvent {
  return {
    ts: r.ts,
    receivedAt: r.received_at,
    kind: r.kind as StoredEvent['kind'],
    level: r.level as StoredEvent['level'],
    message: r.message,
    data: r.data === null ? null : (JSON.parse(r.data) as Record<string, unknown>),
  };
}
