/**
 * The fleet manager's storage: one narrow, asynchronous interface (`FleetStore`) so that the
 * PostgreSQL implementation (pg/fleet-store-pg.ts) can replace SQLite for multi-instance
 * deployments without touching ingest or the HTTP API, and its better-sqlite3 implementation
 * (`openSqliteStore`) over the synchronous database code of store-db.ts.
 */
import type { Logger } from 'pino';
import type { MonitorMinute } from './http-schemas.js';
import type Database from 'better-sqlite3';
import { createFleetDb, openFleetDatabase, UNKNOWN_LINE, type FleetDb, type IngestRequest, type StoreLog } from './store-db.js';
import type { CandidateCounts, GateMode } from './gate-counts.js';
import type {
  EventMessage,
  ResultRecord,
  StateMessage,
  TelemetryMessage,
  Verdict,
} from '../protocol/messages.js';

/** The line recorded for results that arrive before the edge has reported its line. */
export { UNKNOWN_LINE };
export type { CandidateCounts, CandidateTotals, GateMode } from './gate-counts.js';

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

/** One event in an edge's event log (its own, and the fleet's alerts about it). */
export interface StoredEvent {
  /** When it happened (epoch ms, the sender's clock). */
  ts: number;
  receivedAt: number;
  kind: EventMessage['kind'];
  level: EventMessage['level'];
  message: string;
  data: Record<string, unknown> | null;
}

/** One group of the stats query: results of one bucket × verdict × label × model. */
/** A model version on a line: when its first and last results were inspected, and how many. */
export interface LineVersion {
  model: string;
  first: number;
  last: number;
  count: number;
}

export interface StatsRow {
  bucket: number;
  verdict: Verdict;
  label: string;
  model: string;
  count: number;
}

/** One minute of an edge's telemetry (edge-history-db.ts says how reports are folded). */
export interface TelemetryMinute {
  /** Start of the minute (epoch ms, fleet clock). */
  minute: number;
  /** Reports folded into it. */
  samples: number;
  /** When its latest report arrived. */
  at: number;
  fps: number;
  latencyP50Ms: number;
  latencyP95Ms: number;
  queueDepth: number;
  cpuPercent: number;
  rssBytes: number;
  frames: number;
  failed: number;
  resultBytes: number | null;
  imageBytes: number | null;
  /** The latest image health and score drift figures of the minute (telemetry `monitor`); null when none was reported. */
  monitor: MonitorMinute | null;
}

export type { MonitorMinute };

/** A stored result's decision, for threshold previews. */
export interface VerdictScore {
  verdict: Verdict;
  label: string;
  score: number;
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
  /** Highest contiguous seq stored from one of the edge's result stores; null when none came from it. */
  storeAckedSeq(edgeId: string, storeId: string): Promise<number | null>;
  listEdges(): Promise<EdgeRecord[]>;
  listLines(): Promise<LineSummary[]>;
  /** The edge's latest events, newest first (at most `limit`). */
  listEvents(edgeId: string, limit: number): Promise<StoredEvent[]>;
  /** True when any edge reports this line or any result carries it. */
  hasLine(line: string): Promise<boolean>;
  /** Counts per bucket × verdict × label × model, buckets aligned to epoch multiples of bucketMs. */
  lineStats(line: string, from: number, to: number, bucketMs: number): Promise<StatsRow[]>;
  /** Each model version seen on the line: its first and last result (epoch ms), oldest first. */
  lineVersions(line: string): Promise<LineVersion[]>;
  /** Results newest first (ts, then arrival), filtered and paged. */
  listResults(query: ResultsQuery): Promise<ResultsPage>;
  /** The edge's telemetry, one row per minute in [from, to), oldest first (bounded retention). */
  telemetryHistory(edgeId: string, from: number, to: number): Promise<TelemetryMinute[]>;
  /** The edge's latest `limit` results (verdict, label, score), newest first. */
  recentVerdicts(edgeId: string, limit: number): Promise<VerdictScore[]>;
  /**
   * Rollout gates: each edge's cumulative counts of `model`'s results in `mode` (gate-counts.ts
   * says what each counts), kept at ingest in the same transaction as the rows, so a redelivered
   * duplicate never counts. An edge with none is absent from the answer.
   */
  candidateCounters(edges: readonly string[], model: string, mode: GateMode): Promise<CandidateCounts[]>;
  /**
   * A live rollout stage's baseline: of the edge's latest `limit` results (newest first by ts) not
   * produced by `excludeModel`, how many there are and how many are defects.
   */
  recentDefectRate(edgeId: string, excludeModel: string, limit: number): Promise<{ frames: number; defects: number }>;
  /** One result by its key (`storeId` '' for edges that send none), or null. */
  getResult(edgeId: string, storeId: string, seq: number): Promise<StoredResult | null>;
  /** Throws when the database cannot answer (for /health). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Rows of one group commit at most; a larger batch is a group of its own. bench/fleet-ingest.ts
 * (100 edges × 2 batches of 500 in flight, 1M results, same-load pairs): 40,000 about 63k
 * results/s, 10,000 46k (a commit and its fsync per 10,000 rows), 80,000 56k, no cap 40k.
 */
const GROUP_ROWS = 40_000;

export interface SqliteStoreOptions {
  /** Database file path (':memory:' is allowed but loses everything on close). */
  file: string;
  logger: Logger;
}

/**
 * Opens (creating or upgrading if needed) the fleet database on a connection of its own: WAL,
 * synchronous=FULL because an ack tells the edge it may delete its copy, so a committed batch
 * must survive a power cut. Throws at once on a file this build cannot use. The fleet manager
 * uses the storage factory (storage.ts) instead.
 */
export function openSqliteStore(opts: SqliteStoreOptions): FleetStore {
  const db = createFleetDb(openFleetDatabase(opts.file, opts.logger), opts.logger);
  return fleetStoreOver(db, () => db.close());
}

/**
 * The FleetStore over a connection the storage factory opened and migrated (migrateFleetSchema);
 * its close stores what was handed in but leaves the connection to the factory.
 */
export function createSqliteFleetStore(conn: Database.Database, logger: StoreLog): FleetStore {
  return fleetStoreOver(createFleetDb(conn, logger), () => undefined);
}

function fleetStoreOver(db: FleetDb, closeDb: () => void): FleetStore {
  let closed = false;

  /**
   * Group commit: batches handed in during one event-loop turn (from different edges, since
   * ingest serialises each edge) are stored in one transaction, so they share one WAL fsync and
   * write each index page once. Under a backlog from many edges this is what keeps ingest from
   * being bound by commits (bench/fleet-ingest.ts); a lone batch waits one setImmediate. Each
   * batch is still its own savepoint with its own outcome, and acks still follow the commit. A
   * group that fails is retried batch by batch, so a bad batch fails alone.
   */
  interface QueuedBatch extends IngestRequest {
    resolve: (outcome: IngestOutcome) => void;
    reject: (err: Error) => void;
  }
  let queued: QueuedBatch[] = [];
  function flushQueued(): void {
    // At most GROUP_ROWS rows a commit, the rest on the next turn: on the storage thread the
    // answers of a group go back (and the edges send again) while the next group is written.
    let rows = 0;
    let take = 0;
    while (take < queued.length && (take === 0 || rows + queued[take]!.results.length <= GROUP_ROWS)) rows += queued[take++]!.results.length;
    const batches = take === queued.length ? queued : queued.slice(0, take);
    queued = take === queued.length ? [] : queued.slice(take);
    if (queued.length > 0) setImmediate(flushQueued);
    if (batches.length === 0) return;
    const outcomes = db.ingestBatches(batches);
    batches.forEach((b, i) => {
      const outcome = outcomes[i]!;
      if (outcome instanceof Error) b.reject(outcome);
      else b.resolve(outcome);
    });
  }

  return {
    async recordState(edgeId, state, meta) {
      db.recordState(edgeId, state, meta);
    },
    async recordTelemetry(edgeId, telemetry, meta) {
      db.recordTelemetry(edgeId, telemetry, meta);
    },
    async recordEvent(edgeId, event, meta) {
      db.recordEvent(edgeId, event, meta);
    },
    ingestResults(edgeId, results, meta, storeId) {
      return new Promise<IngestOutcome>((resolve, reject) => {
        if (queued.length === 0) setImmediate(flushQueued);
        queued.push({ edgeId, results, meta, storeId: storeId ?? '', resolve, reject });
      });
    },
    async markAllOffline() {
      return db.markAllOffline();
    },
    async getEdge(edgeId) {
      return db.getEdge(edgeId);
    },
    async storeAckedSeq(edgeId, storeId) {
      return db.storeAckedSeq(edgeId, storeId);
    },
    async listEdges() {
      return db.listEdges();
    },
    async listLines() {
      return db.listLines();
    },
    async listEvents(edgeId, limit) {
      return db.listEvents(edgeId, limit);
    },
    async hasLine(line) {
      return db.hasLine(line);
    },
    async lineStats(line, from, to, bucketMs) {
      return db.lineStats(line, from, to, bucketMs);
    },
    async lineVersions(line) {
      return db.lineVersions(line);
    },
    async listResults(q) {
      return db.listResults(q);
    },
    async telemetryHistory(edgeId, from, to) {
      return db.telemetryHistory(edgeId, from, to);
    },
    async recentVerdicts(edgeId, limit) {
      return db.recentVerdicts(edgeId, limit);
    },
    async candidateCounters(edges, model, mode) {
      return db.candidateCounters(edges, model, mode);
    },
    async recentDefectRate(edgeId, excludeModel, limit) {
      return db.recentDefectRate(edgeId, excludeModel, limit);
    },
    async getResult(edgeId, storeId, seq) {
      return db.getResult(edgeId, storeId, seq);
    },
    async ping() {
      db.ping();
    },
    async close() {
      if (closed) return;
      // Batches already handed in are stored (and answered) before the database goes.
      while (queued.length > 0) flushQueued();
      closed = true;
      closeDb();
    },
  };
}
