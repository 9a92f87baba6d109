/**
 * The fleet manager's storage: one narrow, asynchronous interface (`FleetStore`) so that a
 * PostgreSQL implementation can replace SQLite for multi-instance deployments without touching
 * ingest or the HTTP API, and its better-sqlite3 implementation (`openSqliteStore`).
 */
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { migrateToStoreIds } from './store-migrations.js';
import type {
  EventMessage,
  ResultRecord,
  StateMessage,
  TelemetryMessage,
  Verdict,
} from '../protocol/messages.js';

/** The line recorded for results that arrive before the edge has reported its line. */
export const UNKNOWN_LINE = 'unknown';

/** An edge as the fleet knows it. Times are epoch ms on the fleet's clock. */
export interface EdgeRecord {
  id: string;
  line: string | null;
  cameras: string[];
  firstSeen: number;
  lastSeen: number;
  online: boolean;
  /** Last reported state, merged field by field (a last-will message carries only a few). */
  state: Partial<StateMessage> | null;
  telemetry: TelemetryMessage | null;
  telemetryAt: number | null;
  /** Highest contiguous seq stored for this edge's current store (0 before any). */
  ackedSeq: number;
  /** The edge's current result store ('' for edges that send no storeId). */
  storeId: string;
}

export interface LineSummary {
  line: string;
  edges: number;
  online: number;
}

/** One group of the stats query: results of one bucket × verdict × label × model. */
export interface StatsRow {
  bucket: number;
  verdict: Verdict;
  label: string;
  model: string;
  count: number;
}

/** A stored result: the edge's record plus where it came from. */
export interface StoredResult extends ResultRecord {
  /** Storage-assigned id; only used to page stably, never exposed as a key. */
  id: number;
  edgeId: string;
  line: string;
  /** The edge result store the row came from; absent for edges that send no storeId. */
  storeId?: string;
}

/** Keyset position for newest-first paging: the last item of the previous page. */
export interface ResultsCursor {
  ts: number;
  id: number;
}

export interface ResultsQuery {
  edge?: string;
  line?: string;
  verdict?: Verdict;
  label?: string;
  model?: string;
  /** Inclusive epoch ms. */
  from?: number;
  /** Exclusive epoch ms. */
  to?: number;
  limit: number;
  after?: ResultsCursor;
  offset?: number;
}

export interface ResultsPage {
  items: StoredResult[];
  /** Where the next page starts, or null when this page is the last. */
  next: ResultsCursor | null;
}

export interface IngestOutcome {
  /** Highest contiguous seq stored for the edge after this batch: what the edge may forget. */
  ackedSeq: number;
  /** Rows new in this batch (the rest were duplicates of rows already stored). */
  inserted: number;
  /**
   * Rows whose key (edge, store, seq) was already stored with different content (ts, model,
   * verdict): the edge's store went back in time (a restored or copied results.db). The stored
   * row is kept; the caller must raise it, never treat it as a harmless duplicate.
   */
  conflicts: number;
}

export interface ReportMeta {
  /** Fleet clock when the message arrived. */
  receivedAt: number;
  /** True for a retained message replayed by the broker on subscribe, not a live report. */
  replay?: boolean;
}

/**
 * Everything the fleet manager stores. Async so that a networked database fits; callers must
 * not run two `ingestResults` for the same edge concurrently (ingest serialises per edge).
 */
export interface FleetStore {
  /** Records a reported state; the edge appears if unknown. */
  recordState(edgeId: string, state: StateMessage, meta: ReportMeta): Promise<void>;
  /** Records the latest telemetry; the edge appears if unknown. */
  recordTelemetry(edgeId: string, telemetry: TelemetryMessage, meta: ReportMeta): Promise<void>;
  /** Appends an event; the edge appears if unknown. */
  recordEvent(edgeId: string, event: EventMessage, meta: ReportMeta): Promise<void>;
  /**
   * Stores a batch in one transaction, idempotently on (edgeId, seq). Each row gets the edge's
   * known line (UNKNOWN_LINE before the edge has reported one).
   */
  ingestResults(edgeId: string, results: readonly ResultRecord[], meta: ReportMeta, storeId?: string): Promise<IngestOutcome>;
  /** Marks every edge offline; returns how many were online. */
  markAllOffline(): Promise<number>;
  /** One edge, or null when it never reported. */
  getEdge(edgeId: string): Promise<EdgeRecord | null>;
  listEdges(): Promise<EdgeRecord[]>;
  listLines(): Promise<LineSummary[]>;
  /** True when any edge reports this line or any result carries it. */
  hasLine(line: string): Promise<boolean>;
  /** Counts per bucket × verdict × label × model, buckets aligned to epoch multiples of bucketMs. */
  lineStats(line: string, from: number, to: number, bucketMs: number): Promise<StatsRow[]>;
  /** Results newest first (ts, then arrival), filtered and paged. */
  listResults(query: ResultsQuery): Promise<ResultsPage>;
  /** Throws when the database cannot answer (for /health). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface SqliteStoreOptions {
  /** Database file path (':memory:' is allowed but loses everything on close). */
  file: string;
  logger: Logger;
}

// 2: results keyed by (edge_id, store_id, seq), per-store acks in edge_stores (issue 5).
const SCHEMA_VERSION = 2;

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
-- One row per result store an edge has had (a wiped edge database is a new store): its ack.
CREATE TABLE IF NOT EXISTS edge_stores (
  edge_id TEXT NOT NULL,
  store_id TEXT NOT NULL,
  acked_seq INTEGER NOT NULL DEFAULT 0,
  first_seen INTEGER NOT NULL,
  last_seen INTEGER NOT NULL,
  PRIMARY KEY (edge_id, store_id)
) WITHOUT ROWID;
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
  -- '' for edges that send no storeId (stores created before storeIds existed).
  store_id TEXT NOT NULL DEFAULT '',
  UNIQUE (edge_id, store_id, seq)
);
-- Covering index for the per-line stats query: the GROUP BY never touches the table.
CREATE INDEX IF NOT EXISTS results_line_ts ON results (line, ts, verdict, label, model);
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

interface EdgeRow {
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

interface ResultRow {
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

type ResultFilterKey = 'edge' | 'line' | 'verdict' | 'label' | 'model' | 'from' | 'to';
const FILTER_SQL: Record<ResultFilterKey, string> = {
  edge: 'edge_id = @edge',
  line: 'line = @line',
  verdict: 'verdict = @verdict',
  label: 'label = @label',
  model: 'model = @model',
  from: 'ts >= @from',
  to: 'ts < @to',
};
const FILTER_KEYS = Object.keys(FILTER_SQL) as ResultFilterKey[];

/**
 * Opens (creating if needed) the fleet database: WAL, synchronous=FULL because an ack tells the
 * edge it may delete its copy, so a committed batch must survive a power cut.
 */
export function openSqliteStore(opts: SqliteStoreOptions): FleetStore {
  const log = opts.logger;
  const db = new Database(opts.file);
  // 8 KiB pages for a new database (an existing one keeps its own): about 15 % less CPU per
  // stored result, fewer B-tree levels and splits in the result indexes (bench/fleet-ingest.ts).
  // It has to come before WAL mode, which fixes the page size.
  db.pragma('page_size = 8192');
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  // Checkpoint every ~40 MB of WAL (5000 pages of 8 KiB) instead of SQLite's 1000 pages: an index
  // page rewritten by many batches is copied into the database once per checkpoint rather than
  // again and again (bench/fleet-ingest.ts: about +40 % ingest rate on a large database).
  db.pragma('wal_autocheckpoint = 5000');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    db.close();
    throw new Error(`fleet database ${opts.file} has schema version ${version}, newer than this build (${SCHEMA_VERSION})`);
  }
  const createTables = () => {
    db.exec(SCHEMA);
    addShadowColumns(db);
  };
  createTables();
  migrateToStoreIds(db, createTables, log);
  db.pragma(`user_version = ${SCHEMA_VERSION}`);

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
    insertResult: db.prepare(
      `INSERT OR IGNORE INTO results
         (edge_id, seq, ts, line, camera, source, frame, model, verdict, label, score, latency_ms, detections,
          shadow_model, shadow_verdict, shadow_label, shadow_score, shadow_latency_ms, shadow_error, store_id)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // Walks stored seqs upward from the ack; the UNIQUE (edge_id, store_id, seq) index keeps it ordered.
    seqsAfter: db.prepare<[string, string, number], number>(
      'SELECT seq FROM results WHERE edge_id = ? AND store_id = ? AND seq > ? ORDER BY seq',
    ).pluck(),
    storedRow: db.prepare<[string, string, number], { ts: number; model: string; verdict: string; label: string }>(
      'SELECT ts, model, verdict, label FROM results WHERE edge_id = ? AND store_id = ? AND seq = ?',
    ),
    touchStore: db.prepare<{ edgeId: string; storeId: string; seen: number }>(
      `INSERT INTO edge_stores (edge_id, store_id, first_seen, last_seen) VALUES (@edgeId, @storeId, @seen, @seen)
       ON CONFLICT (edge_id, store_id) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`,
    ),
    storeAcked: db.prepare<[string, string], number>('SELECT acked_seq FROM edge_stores WHERE edge_id = ? AND store_id = ?').pluck(),
    setStoreAcked: db.prepare<[number, string, string]>('UPDATE edge_stores SET acked_seq = ? WHERE edge_id = ? AND store_id = ?'),
    // The edge's own row follows the store it reports from, for /api/edges.
    setAcked: db.prepare<[number, string, string]>('UPDATE edges SET acked_seq = ?, store_id = ? WHERE id = ?'),
    markAllOffline: db.prepare('UPDATE edges SET online = 0 WHERE online = 1'),
    listEdges: db.prepare<[], EdgeRow>('SELECT * FROM edges ORDER BY id'),
    listLines: db.prepare<[string], LineSummary>(
      `SELECT coalesce(line, ?) AS line, count(*) AS edges, sum(online) AS online
       FROM edges GROUP BY 1 ORDER BY 1`,
    ),
    hasLine: db.prepare<[string, string], number>(
      `SELECT EXISTS (SELECT 1 FROM edges WHERE line = ?) OR EXISTS (SELECT 1 FROM results WHERE line = ?)`,
    ).pluck(),
    lineStats: db.prepare<{ line: string; from: number; to: number; b: number }, StatsRow>(
      // better-sqlite3 binds JS numbers as REAL; the CAST keeps the division integral.
      `SELECT (ts / CAST(@b AS INTEGER)) * CAST(@b AS INTEGER) AS bucket, verdict, label, model, count(*) AS count
       FROM results WHERE line = @line AND ts >= @from AND ts < @to
       GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`,
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
        `SELECT * FROM results${where.length ? ` WHERE ${where.join(' AND ')}` : ''}` +
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
      const fixed = st.fixUnknownLine.run({ id: edgeId, line }).changes;
      if (fixed > 0) log.info({ edgeId, line, results: fixed }, 'line assigned to earlier results');
    }
  });

  const recordTelemetry = db.transaction((edgeId: string, telemetry: TelemetryMessage, meta: ReportMeta) => {
    touch(edgeId, meta);
    st.writeTelemetry.run({ id: edgeId, telemetry: JSON.stringify(telemetry), at: meta.receivedAt });
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

  const ingest = db.transaction(
    (edgeId: string, results: readonly ResultRecord[], meta: ReportMeta, storeId: string): IngestOutcome => {
      const edge = touch(edgeId, meta);
      const line = edge.line ?? UNKNOWN_LINE;
      st.touchStore.run({ edgeId, storeId, seen: meta.receivedAt });
      const before = st.storeAcked.get(edgeId, storeId) ?? 0;
      let acked = before;
      let inserted = 0;
      let conflicts = 0;
      let fillsAck = false;
      for (const r of results) {
        if (r.seq === acked + 1) fillsAck = true;
        const added = st.insertResult.run(
          edgeId,
          r.seq,
          r.ts,
          line,
          r.camera,
          r.source,
          r.frame ?? null,
          r.model,
          r.verdict,
          r.label,
          r.score,
          r.latencyMs,
          r.detections === undefined ? null : JSON.stringify(r.detections),
          r.shadow?.model ?? null,
          r.shadow?.verdict ?? null,
          r.shadow?.label ?? null,
          r.shadow?.score ?? null,
          r.shadow?.latencyMs ?? null,
          r.shadow?.error ?? null,
          storeId,
        ).changes;
        inserted += added;
        if (added === 0) {
          // A resend carries the same row; anything else under the same key is another frame.
          const stored = st.storedRow.get(edgeId, storeId, r.seq);
          if (stored && (stored.ts !== r.ts || stored.model !== r.model || stored.verdict !== r.verdict || stored.label !== r.label)) {
            conflicts++;
          }
        }
      }
      // Only a batch holding acked+1 can move the ack: otherwise the gap after it is still open.
      if (fillsAck) {
        for (const seq of st.seqsAfter.iterate(edgeId, storeId, acked)) {
          if (seq !== acked + 1) break;
          acked = seq;
        }
        if (acked !== before) st.setStoreAcked.run(acked, edgeId, storeId);
      }
      if (acked !== edge.acked_seq || storeId !== edge.store_id) st.setAcked.run(acked, storeId, edgeId);
      return { ackedSeq: acked, inserted, conflicts };
    },
  );

  let closed = false;

  /**
   * Group commit: batches handed in during one event-loop turn (from different edges, since
   * ingest serialises each edge) are stored in one transaction, so they share one WAL fsync and
   * write each index page once. Under a backlog from many edges this is what keeps ingest from
   * being bound by commits (bench/fleet-ingest.ts); a lone batch waits one setImmediate. Each
   * batch is still its own savepoint with its own outcome, and acks still follow the commit. A
   * group that fails is retried batch by batch, so a bad batch fails alone.
   */
  interface QueuedBatch {
    edgeId: string;
    results: readonly ResultRecord[];
    meta: ReportMeta;
    storeId: string;
    resolve: (outcome: IngestOutcome) => void;
    reject: (err: unknown) => void;
  }
  let queued: QueuedBatch[] = [];
  const ingestGroup = db.transaction((batches: QueuedBatch[]) => batches.map((b) => ingest(b.edgeId, b.results, b.meta, b.storeId)));
  function flushQueued(): void {
    const batches = queued;
    queued = [];
    if (batches.length === 0) return;
    if (closed) {
      for (const b of batches) b.reject(new Error('fleet database is closed'));
      return;
    }
    let outcomes: IngestOutcome[] | undefined;
    try {
      outcomes = batches.length > 1 ? ingestGroup(batches) : undefined;
    } catch {
      outcomes = undefined;
    }
    if (outcomes) {
      batches.forEach((b, i) => b.resolve(outcomes[i]!));
      return;
    }
    for (const b of batches) {
      try {
        b.resolve(ingest(b.edgeId, b.results, b.meta, b.storeId));
      } catch (err) {
        b.reject(err);
      }
    }
  }

  return {
    async recordState(edgeId, state, meta) {
      recordState(edgeId, state, meta);
    },
    async recordTelemetry(edgeId, telemetry, meta) {
      recordTelemetry(edgeId, telemetry, meta);
    },
    async recordEvent(edgeId, event, meta) {
      recordEvent(edgeId, event, meta);
    },
    ingestResults(edgeId, results, meta, storeId) {
      return new Promise<IngestOutcome>((resolve, reject) => {
        if (queued.length === 0) setImmediate(flushQueued);
        queued.push({ edgeId, results, meta, storeId: storeId ?? '', resolve, reject });
      });
    },
    async markAllOffline() {
      return st.markAllOffline.run().changes;
    },
    async getEdge(edgeId) {
      const row = st.getEdge.get(edgeId);
      return row ? toEdgeRecord(row) : null;
    },
    async listEdges() {
      return st.listEdges.all().map(toEdgeRecord);
    },
    async listLines() {
      return st.listLines.all(UNKNOWN_LINE).map((l) => ({ line: l.line, edges: l.edges, online: l.online ?? 0 }));
    },
    async hasLine(line) {
      return st.hasLine.get(line, line) === 1;
    },
    async lineStats(line, from, to, bucketMs) {
      return st.lineStats.all({ line, from, to, b: bucketMs });
    },
    async listResults(q) {
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
    async ping() {
      if (closed || st.ping.get() !== 1) throw new Error('fleet database is closed');
    },
    async close() {
      if (closed) return;
      // Batches already handed in are stored (and answered) before the database goes.
      flushQueued();
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
  const have = new Set((db.prepare('PRAGMA table_info(results)').all() as { name: string }[]).map((c) => c.name));
  const columns: [string, string][] = [
    ['shadow_model', 'TEXT'],
    ['shadow_verdict', 'TEXT'],
    ['shadow_label', 'TEXT'],
    ['shadow_score', 'REAL'],
    ['shadow_latency_ms', 'REAL'],
    ['shadow_error', 'TEXT'],
  ];
  for (const [name, type] of columns) if (!have.has(name)) db.exec(`ALTER TABLE results ADD COLUMN ${name} ${type}`);
}

function toEdgeRecord(row: EdgeRow): EdgeRecord {
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

function toStoredResult(row: ResultRow): StoredResult {
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
