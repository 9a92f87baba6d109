/**
 * Ingest: everything edges publish reaches the fleet here. Each payload is decoded and checked
 * against its schema, stored, and (for results) acknowledged with the highest contiguous seq.
 * A bad message is logged and dropped; nothing an edge sends can stop the fleet manager.
 */
import type { MqttClient, IPublishPacket } from 'mqtt';
import type { Logger } from 'pino';
import { allEdgesFilter, edgeTopic, parseEdgeTopic } from '../protocol/topics.js';
import { decodeMessage, encodeMessage, envelope } from '../protocol/validator.js';
import type { MessageByKind } from '../protocol/messages.js';
import type { FleetStore, ReportMeta } from './store.js';

/** The kinds of message edges send to the fleet. */
const INBOUND = ['results', 'state', 'telemetry', 'events'] as const;
type InboundKind = (typeof INBOUND)[number];

/**
 * With several fleet instances (`shareGroup`), which kinds each instance takes a share of
 * (`$share/<group>/…`: the broker gives each message to one instance, which stores it once):
 * - results: stored and acked once, by whichever instance got the batch (the bulk of the load);
 * - telemetry and events: stored once too (a second copy would count a minute twice or keep an
 *   event twice); every instance also sees them on a plain subscription, unstored, for its live
 *   views and, on the leader, the rollout engine and alert rules (see `onSeen`);
 * - state is NOT shared: it is retained, and a shared subscription gets no retained messages
 *   [MQTT-4.8.2], so a starting instance would not learn the edges' current states; storing the
 *   latest state is an idempotent upsert, so every instance stores and sees every state.
 */
const SHARED: readonly InboundKind[] = ['results', 'telemetry', 'events'];
/** Kinds seen on a plain subscription besides the shared one (not stored from it). */
const SEEN_ONLY: readonly InboundKind[] = ['telemetry', 'events'];
/** MQTT 5 subscription identifiers: which subscription a message came through. */
const SUB_STORE = 1;
const SUB_SEEN = 2;

/** A message from an edge, after it was stored. */
export type InboundReport = {
  [K in InboundKind]: { kind: K; edgeId: string; message: MessageByKind[K]; meta: ReportMeta };
}[InboundKind];

export interface IngestOptions {
  /** A connected mqtt.js client; ingest subscribes on it but does not own it. */
  client: MqttClient;
  store: FleetStore;
  logger: Logger;
  now?: () => number;
  /**
   * Called with every message once stored (the rollout engine watches states, telemetry, events and
   * results arriving). Synchronous and must not throw; it runs inside the edge's ordered chain.
   */
  onReport?: (report: InboundReport) => void;
  /** Told of each result batch stored, each ack sent and each message dropped (the fleet's /metrics). Must not throw. */
  observer?: IngestObserver;
  /**
   * MQTT 5 shared-subscription group (the client must have connected with protocolVersion 5):
   * results, telemetry and events are taken as `$share/<group>/<topic>`, so of several fleet
   * instances each message is stored by one. Absent: plain subscriptions (a single instance).
   */
  shareGroup?: string;
  /**
   * Called with every message this instance should know of for its live views and leader work,
   * stored here or not: without shareGroup, each message right after onReport; with it, states
   * and results this instance stored, and every edge's telemetry and events (from a plain
   * subscription, whichever instance stored them; in arrival order, possibly before that store
   * committed). Synchronous and must not throw.
   */
  onSeen?: (report: InboundReport) => void;
}

/** What the fleet's /metrics counts of ingest (fleet-manager/fleet-metrics.ts). */
export interface IngestObserver {
  /**
   * A result batch stored: the rows new in it by verdict (when only some rows were new, the
   * batch's last ones are taken for them: a resend overlaps rows stored before it) and the
   * seconds from its arrival to stored, queueing behind the edge's earlier messages included.
   */
  batchStored(edgeId: string, inserted: Record<string, number>, seconds: number): void;
  ackSent(): void;
  dropped(): void;
}

/** Counters since start, for /health and tests. */
export interface IngestCounters {
  messages: number;
  dropped: number;
  resultsStored: number;
  acksSent: number;
  storeErrors: number;
  /** Results whose (edge, store, seq) was already stored as another frame (see IngestOutcome). */
  conflicts: number;
}

export interface Ingest {
  /** Subscribes (QoS 1) to every inbound edge topic; retained states arrive right after. */
  start(): Promise<void>;
  /** Stops taking messages and waits for those being stored. Idempotent. */
  stop(): Promise<void>;
  counters(): IngestCounters;
}

/** Creates the ingest component on an existing MQTT connection. */
export function createIngest(opts: IngestOptions): Ingest {
  const { client, store } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const counters: IngestCounters = { messages: 0, dropped: 0, resultsStored: 0, acksSent: 0, storeErrors: 0, conflicts: 0 };
  // Messages of one edge are handled in arrival order, so two batches never race on its ack.
  const tails = new Map<string, Promise<void>>();
  let stopped = false;
  let stopping: Promise<void> | undefined;

  function drop(topic: string, reason: string, edgeId?: string): void {
    counters.dropped++;
    opts.observer?.dropped();
    log.warn({ topic, edgeId, reason }, 'message dropped');
  }

  function onMessage(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (stopped) return;
    try {
      if (opts.shareGroup !== undefined) {
        // One PUBLISH may carry the identifiers of both subscriptions or come once for each.
        const id = packet.properties?.subscriptionIdentifier;
        const ids = id === undefined ? [] : Array.isArray(id) ? id : [id];
        if (ids.includes(SUB_SEEN)) seen(topic, payload, packet);
        if (!ids.includes(SUB_STORE)) return;
      }
      counters.messages++;
      accept(topic, payload, packet);
    } catch (err) {
      // A throw here would escape into mqtt.js and stall every later message.
      counters.dropped++;
      opts.observer?.dropped();
      log.error({ err, topic }, 'message handling failed');
    }
  }

  /** A telemetry or events message another instance may store: told to onSeen only. */
  function seen(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const parsed = parseEdgeTopic(topic);
    if (!parsed || !(SEEN_ONLY as readonly string[]).includes(parsed.kind)) return;
    const kind = parsed.kind as InboundKind;
    const decoded = decodeMessage(kind, payload);
    // Dropped (and counted) by the instance that takes its share; here it is only not shown.
    if (!decoded.ok || decoded.value.edgeId !== parsed.edgeId) return;
    tell(opts.onSeen, { kind, edgeId: parsed.edgeId, message: decoded.value, meta: { receivedAt: now(), replay: packet.retain } } as InboundReport);
  }

  function tell(listener: ((report: InboundReport) => void) | undefined, report: InboundReport): void {
    try {
      listener?.(report);
    } catch (err) {
      log.error({ err, edgeId: report.edgeId, kind: report.kind }, 'report listener failed');
    }
  }

  function accept(topic: string, payload: Buffer, packet: IPublishPacket): void {
    const parsed = parseEdgeTopic(topic);
    if (!parsed || !(INBOUND as readonly string[]).includes(parsed.kind)) {
      drop(topic, 'not an inbound osprey edge topic');
      return;
    }
    const kind = parsed.kind as InboundKind;
    const { edgeId } = parsed;
    const decoded = decodeMessage(kind, payload);
    if (!decoded.ok) {
      drop(topic, decoded.error, edgeId);
      return;
    }
    const msg = decoded.value;
    // The topic is what the broker's ACL vouches for; an envelope naming another edge is forged or broken.
    if (msg.edgeId !== edgeId) {
      drop(topic, `envelope edgeId "${msg.edgeId}" does not match the topic`, edgeId);
      return;
    }
    // [MQTT-3.3.1-8] retain is set only on messages replayed because of our subscription.
    const meta: ReportMeta = { receivedAt: now(), replay: packet.retain };
    const arrived = performance.now();
    enqueue(edgeId, () => handle(kind, edgeId, msg, meta, topic, arrived));
  }

  function enqueue(edgeId: string, task: () => Promise<void>): void {
    const tail = (tails.get(edgeId) ?? Promise.resolve()).then(task);
    tails.set(edgeId, tail);
    void tail.then(() => {
      if (tails.get(edgeId) === tail) tails.delete(edgeId);
    });
  }

  async function handle(kind: InboundKind, edgeId: string, msg: MessageByKind[InboundKind], meta: ReportMeta, topic: string, arrived: number) {
    try {
      await record(kind, edgeId, msg, meta, topic, arrived);
    } catch (err) {
      // Not acked, so the edge sends the batch again; the fleet keeps serving.
      counters.storeErrors++;
      log.error({ err, edgeId, kind }, 'message not stored');
      return;
    }
    const report = { kind, edgeId, message: msg, meta } as InboundReport;
    tell(opts.onReport, report);
    // Shared: this instance's telemetry and events reach onSeen through the plain subscription.
    if (opts.shareGroup === undefined || !SEEN_ONLY.includes(kind)) tell(opts.onSeen, report);
  }

  /** Stores one message; throws when the store fails. */
  async function record(kind: InboundKind, edgeId: string, msg: MessageByKind[InboundKind], meta: ReportMeta, topic: string, arrived: number) {
    switch (kind) {
      case 'results':
        return await handleResults(edgeId, msg as MessageByKind['results'], meta, topic, arrived);
      case 'state': {
        const state = msg as MessageByKind['state'];
        await store.recordState(edgeId, state, meta);
        log.info({ edgeId, online: state.online, line: state.line, replay: meta.replay }, 'edge state');
        return;
      }
      case 'telemetry':
        return await store.recordTelemetry(edgeId, msg as MessageByKind['telemetry'], meta);
      case 'events': {
        const ev = msg as MessageByKind['events'];
        await store.recordEvent(edgeId, ev, meta);
        log.info({ edgeId, kind: ev.kind, level: ev.level, message: ev.message }, 'edge event');
        return;
      }
    }
  }

  async function handleResults(edgeId: string, msg: MessageByKind['results'], meta: ReportMeta, topic: string, arrived: number) {
    const outside = msg.results.find((r) => r.seq < msg.fromSeq || r.seq > msg.toSeq);
    if (outside || msg.fromSeq > msg.toSeq) {
      drop(topic, `seq ${outside?.seq ?? msg.fromSeq} outside the batch range ${msg.fromSeq}..${msg.toSeq}`, edgeId);
      return;
    }
    const { storeId } = msg;
    const { ackedSeq, inserted, conflicts } = await store.ingestResults(edgeId, msg.results, meta, storeId);
    counters.resultsStored += inserted;
    if (opts.observer) {
      const verdicts: Record<string, number> = {};
      for (const r of msg.results.slice(msg.results.length - inserted)) verdicts[r.verdict] = (verdicts[r.verdict] ?? 0) + 1;
      opts.observer.batchStored(edgeId, verdicts, (performance.now() - arrived) / 1000);
    }
    log.debug({ edgeId, storeId, fromSeq: msg.fromSeq, toSeq: msg.toSeq, inserted, ackedSeq }, 'results stored');
    if (conflicts > 0) {
      // Same (edge, store, seq), another frame: the edge's results.db was restored or copied.
      counters.conflicts += conflicts;
      log.error({ edgeId, storeId, fromSeq: msg.fromSeq, toSeq: msg.toSeq, conflicts }, 'results conflict with stored ones');
      // Kept with the edge's own events, so whoever looks at the edge sees it, not only the log.
      const alert = envelope('events', edgeId, {
        kind: 'alert',
        level: 'error',
        message: `${conflicts} results reuse stored (edge, store, seq) keys with other content: the edge's results.db was restored or copied; delete it so the edge starts a new store`,
        data: { storeId: storeId ?? null, fromSeq: msg.fromSeq, toSeq: msg.toSeq, conflicts },
      }, now());
      await store.recordEvent(edgeId, alert, meta);
    }
    // The ack names the store it is for, so an edge never takes another store's ack as its own.
    const ack = envelope('ack', edgeId, storeId === undefined ? { ackSeq: ackedSeq } : { ackSeq: ackedSeq, storeId }, now());
    // Not awaited: the PUBACK round trip must not hold up the next batch of this edge.
    client.publishAsync(edgeTopic(edgeId, 'ack'), encodeMessage(ack), { qos: 1 }).then(
      () => {
        counters.acksSent++;
        opts.observer?.ackSent();
      },
      (err: unknown) => log.warn({ err, edgeId, ackSeq: ackedSeq }, 'ack not sent'),
    );
  }

  return {
    async start() {
      client.on('message', onMessage);
      const group = opts.shareGroup;
      const filter = (kind: InboundKind) => (group !== undefined && SHARED.includes(kind) ? `$share/${group}/${allEdgesFilter(kind)}` : allEdgesFilter(kind));
      const grants = await client.subscribeAsync(
        Object.fromEntries(INBOUND.map((kind) => [filter(kind), { qos: 1 as const }])),
        group === undefined ? undefined : { properties: { subscriptionIdentifier: SUB_STORE } },
      );
      if (group !== undefined) {
        grants.push(
          ...(await client.subscribeAsync(Object.fromEntries(SEEN_ONLY.map((kind) => [allEdgesFilter(kind), { qos: 1 as const }])), {
            properties: { subscriptionIdentifier: SUB_SEEN },
          })),
        );
      }
      // [MQTT-3.9.3] return code 0x80 means the broker refused the subscription.
      const refused = grants.filter((g) => g.qos >= 128).map((g) => g.topic);
      if (refused.length > 0) throw new Error(`broker refused subscriptions: ${refused.join(', ')}`);
      log.info({ topics: grants.map((g) => g.topic) }, 'ingest subscribed');
    },
    stop() {
      stopping ??= (async () => {
        stopped = true;
        client.removeListener('message', onMessage);
        await Promise.all(tails.values());
      })();
      return stopping;
    },
    counters() {
      return { ...counters };
    },
  };
}
