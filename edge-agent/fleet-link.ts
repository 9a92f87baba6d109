/**
 * The edge's link to the fleet manager over MQTT: reported state (retained, with an offline last
 * will), store-and-forward sync of results with application-level acks, telemetry and events,
 * and the desired state handed to a callback.
 *
 * Delivery never relies on the broker or on persistent sessions (DESIGN "Store and forward"):
 * the result store is the queue, the fleet's ack is the only proof of delivery, and anything not
 * acked in time or in flight across a reconnect is sent again (the fleet stores idempotently).
 * Inspection never waits on this link.
 */
import { connect, type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import type { DesiredMessage, EventMessage } from '../protocol/messages.js';
import { edgeTopic, parseEdgeTopic, type MessageKind } from '../protocol/topics.js';
import { decodeMessage, encodeMessage, envelope } from '../protocol/validator.js';
import type { MessageByKind } from '../protocol/messages.js';
import { withTimeout } from '../protocol/timeout.js';
import { DEFAULT_MAX_PACKET_BYTES, limitClientPackets } from '../protocol/mqtt-packet-limit.js';
import { createRateLimiter } from './rate-limiter.js';
import { certificateRefusal, type EdgeFleetTls } from './fleet-tls.js';
import type { ResultStore } from './result-store.js';

type Body<K extends MessageKind> = Omit<MessageByKind[K], 'v' | 'id' | 'ts' | 'edgeId'>;

/** Reported-state fields the agent supplies; online/lastSeq/ackedSeq/storeId are added by the link. */
export type StateFields = Omit<Body<'state'>, 'online' | 'lastSeq' | 'ackedSeq' | 'storeId'>;

export interface FleetLinkOptions {
  edgeId: string;
  mqttUrl: string;
  store: ResultStore;
  /**
   * `maxResultsPerSecond` caps what is sent (0 or absent: no cap), so a catch-up after an outage
   * leaves the main thread to live inspection; live results arrive far below any sensible cap.
   */
  sync: { batchSize: number; window: number; intervalMs: number; ackTimeoutMs: number; maxResultsPerSecond?: number };
  telemetryIntervalMs: number;
  logger: Logger;
  state(): StateFields;
  /** Builds one telemetry body; called every interval (also offline, so intervals don't pile up). */
  telemetry(): Body<'telemetry'>;
  /** A valid desired-state message for this edge (issue 4 acts on it). */
  onDesired?: (desired: DesiredMessage) => void | Promise<void>;
  /** mqtt.js reconnect period (default 1000 ms). */
  reconnectPeriodMs?: number;
  /** Largest MQTT packet sent or accepted (default 4 MiB): result batches are split to fit. */
  maxPacketBytes?: number;
  /** The link is up (connected, subscribed, state published). Must not throw. */
  onUp?: () => void;
  /** MQTT username and password (the edge id and its credential: fleet-credential.ts). */
  credentials?: { username: string; password: string };
  /** Events kept while offline and sent on reconnect (default 100; oldest dropped first). */
  maxBufferedEvents?: number;
  /** mqtts:// verified against this CA (fleet-tls.ts); absent: mqtt.js defaults. */
  tls?: Pick<EdgeFleetTls, 'caFile' | 'mqtt'>;
}

export interface FleetLinkStats {
  batchesSent: number;
  resultsSent: number;
  acks: number;
  resends: number;
  /** Acks naming another result store (one from before this database was wiped): ignored. */
  foreignAcks: number;
  /**
   * Acks ignored in whole or in part: a retained ack (a replay by the broker, not the fleet's
   * answer to anything sent now) is ignored; an ack above the highest seq this link has sent is
   * taken only up to that seq, so nothing never sent is ever marked acked.
   */
  acksRejected: number;
  /** Times the sync loop waited for the catch-up rate cap. */
  rateLimited: number;
  messagesDropped: number;
  eventsDropped: number;
  connects: number;
}

export interface FleetLink {
  /** Starts connecting (in the background, retrying forever); returns at once. */
  start(): void;
  /** Connected, subscribed and state published. */
  readonly connected: boolean;
  /** New results were stored: sync them soon. Cheap; call it for every result. */
  notifyResults(): void;
  /** Publishes the reported state again (after a model switch, config change...). */
  publishState(): void;
  /** Sends an event now, or when the link is next up (bounded buffer). */
  publishEvent(kind: EventMessage['kind'], level: EventMessage['level'], message: string, data?: Record<string, unknown>): void;
  /** Resolves true once every result up to `seq` is acked, false after `timeoutMs`. */
  waitForAck(seq: number, timeoutMs: number): Promise<boolean>;
  readonly stats: Readonly<FleetLinkStats>;
  /** Why the link is not up, one line (e.g. the fleet's certificate was refused); undefined once connected. */
  readonly lastError: string | undefined;
  /** Final sync (bounded by finalSyncMs), offline state, disconnect. Idempotent. */
  close(opts?: { finalSyncMs?: number }): Promise<void>;
}

interface Batch {
  fromSeq: number;
  toSeq: number;
  sentAt: number;
}

/** Creates the link; nothing happens until start(). */
export function createFleetLink(opts: FleetLinkOptions): FleetLink {
  const { edgeId, store, sync } = opts;
  const log = opts.logger;
  const topic = (kind: MessageKind) => edgeTopic(edgeId, kind);
  const maxEvents = opts.maxBufferedEvents ?? 100;
  const maxPacketBytes = opts.maxPacketBytes ?? DEFAULT_MAX_PACKET_BYTES;
  const stats: FleetLinkStats = {
    batchesSent: 0,
    resultsSent: 0,
    acks: 0,
    resends: 0,
    foreignAcks: 0,
    acksRejected: 0,
    rateLimited: 0,
    messagesDropped: 0,
    eventsDropped: 0,
    connects: 0,
  };

  let client: MqttClient | undefined;
  let ready = false;
  let closing = false;
  let closed: Promise<void> | undefined;
  let inflight: Batch[] = [];
  // Highest seq handed to MQTT in the current flight; restarts at ackedSeq on every reset.
  let sentUpTo = 0;
  // Highest seq ever handed to MQTT by this link (never lowered): no ack may go beyond it.
  let highestSent = 0;
  let ackTimer: NodeJS.Timeout | undefined;
  let tickTimer: NodeJS.Timeout | undefined;
  let telemetryTimer: NodeJS.Timeout | undefined;
  let pumpScheduled = false;
  let rateTimer: NodeJS.Timeout | undefined;
  const limiter = createRateLimiter(sync.maxResultsPerSecond ?? 0, Math.max(sync.batchSize, sync.maxResultsPerSecond ?? 0));
  let lastErrorCode: string | undefined;
  let lastError: string | undefined;
  const events: Body<'events'>[] = [];
  const ackWaiters = new Set<() => void>();

  function offlineWill(): NonNullable<IClientOptions['will']> {
    const { line, cameras, agentVersion } = opts.state();
    const body: Body<'state'> = { online: false };
    if (line !== undefined) body.line = line;
    if (cameras !== undefined) body.cameras = cameras;
    if (agentVersion !== undefined) body.agentVersion = agentVersion;
    // [MQTT-3.1.2-8] the broker publishes this if we vanish without a DISCONNECT.
    return { topic: topic('state'), payload: encodeMessage(envelope('state', edgeId, body)), qos: 1, retain: true };
  }

  function publish<K extends MessageKind>(kind: K, body: Body<K> | Buffer, qos: 0 | 1, retain = false): Promise<unknown> {
    if (!client) return Promise.reject(new Error('not started'));
    const payload = Buffer.isBuffer(body) ? body : encodeMessage(envelope(kind, edgeId, body));
    return client.publishAsync(topic(kind), payload, { qos, retain });
  }

  /** A results payload that fits one packet: fewer rows until it does (one row always fits). */
  function resultsPayload(rows: ReturnType<ResultStore['pendingAfter']>): { rows: typeof rows; payload: Buffer } {
    for (;;) {
      const body: Body<'results'> = { fromSeq: rows[0]!.seq, toSeq: rows[rows.length - 1]!.seq, results: rows };
      if (store.storeId !== undefined) body.storeId = store.storeId;
      const payload = encodeMessage(envelope('results', edgeId, body));
      // Topic and headers take well under 1 KiB of the packet.
      if (payload.length + 1024 <= maxPacketBytes || rows.length === 1) return { rows, payload };
      rows = rows.slice(0, Math.ceil(rows.length / 2));
    }
  }

  function stateBody(online: boolean): Body<'state'> {
    const body: Body<'state'> = { ...opts.state(), online, lastSeq: store.lastSeq, ackedSeq: store.ackedSeq };
    if (store.storeId !== undefined) body.storeId = store.storeId;
    return body;
  }

  function resetFlight(): void {
    inflight = [];
    sentUpTo = store.ackedSeq;
    clearTimeout(ackTimer);
    ackTimer = undefined;
  }

  function armAckTimer(): void {
    if (ackTimer || inflight.length === 0) return;
    const wait = Math.max(0, inflight[0]!.sentAt + sync.ackTimeoutMs - Date.now());
    ackTimer = setTimeout(() => {
      ackTimer = undefined;
      const oldest = inflight[0];
      if (!oldest || !ready) return;
      if (Date.now() - oldest.sentAt >= sync.ackTimeoutMs) {
        stats.resends++;
        log.warn({ fromSeq: store.ackedSeq + 1, toSeq: sentUpTo, ackTimeoutMs: sync.ackTimeoutMs }, 'no ack in time; resending');
        resetFlight();
        pump();
      } else armAckTimer();
    }, wait);
  }

  /** Sends batches after the acked seq until the window is full or the backlog is empty. */
  function pump(): void {
    if (!ready || !client) return;
    const acked = store.ackedSeq;
    inflight = inflight.filter((b) => b.toSeq > acked);
    if (sentUpTo < acked) sentUpTo = acked;
    while (inflight.length < sync.window) {
      const wait = limiter.delayMs();
      if (wait > 0) {
        // Over the catch-up cap: look again once the budget allows one more batch.
        if (!rateTimer) {
          stats.rateLimited++;
          rateTimer = setTimeout(() => {
            rateTimer = undefined;
            pump();
          }, wait);
        }
        break;
      }
      let rows;
      try {
        rows = store.pendingAfter(sentUpTo, sync.batchSize);
      } catch (err) {
        log.error({ err }, 'cannot read pending results');
        break;
      }
      if (rows.length === 0) break;
      let payload: Buffer;
      ({ rows, payload } = resultsPayload(rows));
      const fromSeq = rows[0]!.seq;
      const toSeq = rows[rows.length - 1]!.seq;
      limiter.take(rows.length);
      publish('results', payload, 1).catch((err: unknown) => {
        // The ack timer or the next reconnect sends it again.
        log.debug({ err, fromSeq, toSeq }, 'results publish failed');
      });
      inflight.push({ fromSeq, toSeq, sentAt: Date.now() });
      sentUpTo = toSeq;
      if (toSeq > highestSent) highestSent = toSeq;
      stats.batchesSent++;
      stats.resultsSent += rows.length;
    }
    armAckTimer();
  }

  function schedulePump(): void {
    if (pumpScheduled || !ready) return;
    pumpScheduled = true;
    // Coalesces a burst of results into one look at the store.
    setImmediate(() => {
      pumpScheduled = false;
      pump();
    });
  }

  function resolveAckWaiters(): void {
    for (const w of [...ackWaiters]) w();
  }

  function waitForAck(seq: number, timeoutMs: number): Promise<boolean> {
    if (store.ackedSeq >= seq) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        ackWaiters.delete(check);
        resolve(ok);
      };
      const check = () => {
        if (store.ackedSeq >= seq) done(true);
      };
      const timer = setTimeout(() => done(false), timeoutMs);
      ackWaiters.add(check);
    });
  }

  function onAck(ackSeq: number, retained: boolean): void {
    stats.acks++;
    const before = store.ackedSeq;
    if (retained) {
      // [MQTT-3.3.1-8] a retained message replayed on subscribe: whoever left it there, it answers
      // nothing this link sent, so it proves nothing about delivery.
      stats.acksRejected++;
      log.warn({ ackSeq, ackedSeq: before }, 'retained ack ignored');
      return;
    }
    if (ackSeq > highestSent) {
      // An ack is cumulative, so what it says about seqs we did send still holds; beyond them it
      // would mark results acked that never left this edge. (After a restart the fleet may hold
      // more than this process sent: taking the sent part keeps the sync moving.)
      stats.acksRejected++;
      log.warn({ ackSeq, highestSent, lastSeq: store.lastSeq }, 'ack beyond the highest seq sent; taken only up to it');
      ackSeq = highestSent;
    }
    let acked: number;
    try {
      acked = store.markAcked(ackSeq);
    } catch (err) {
      log.error({ err, ackSeq }, 'cannot record ack');
      return;
    }
    if (acked <= before) return; // stale or duplicate ack: the ack timer decides about resends
    log.debug({ ackedSeq: acked }, 'results acked');
    clearTimeout(ackTimer);
    ackTimer = undefined;
    resolveAckWaiters();
    pump();
  }

  function onMessage(topicName: string, payload: Buffer, packet: { retain?: boolean }): void {
    const parsed = parseEdgeTopic(topicName);
    if (!parsed || parsed.edgeId !== edgeId || (parsed.kind !== 'ack' && parsed.kind !== 'desired')) {
      stats.messagesDropped++;
      log.warn({ topic: topicName }, 'message on unexpected topic dropped');
      return;
    }
    const decoded = decodeMessage(parsed.kind, payload);
    if (!decoded.ok) {
      stats.messagesDropped++;
      log.warn({ topic: topicName, error: decoded.error, bytes: payload.length }, 'invalid message dropped');
      return;
    }
    if (decoded.value.edgeId !== edgeId) {
      stats.messagesDropped++;
      log.warn({ topic: topicName, edgeId: decoded.value.edgeId }, 'message for another edge dropped');
      return;
    }
    if (parsed.kind === 'ack') {
      const ack = decoded.value as MessageByKind['ack'];
      // An ack for another store (the one before this database was wiped) says nothing about ours.
      // Acks without a storeId come from fleets older than storeIds and are taken as before.
      if (ack.storeId !== undefined && ack.storeId !== store.storeId) {
        stats.foreignAcks++;
        log.debug({ storeId: ack.storeId, ackSeq: ack.ackSeq }, 'ack for another result store ignored');
        return;
      }
      onAck(ack.ackSeq, packet.retain === true);
      return;
    }
    const desired = decoded.value as DesiredMessage;
    log.info({ configVersion: desired.configVersion, active: desired.active?.version ?? null }, 'desired state received');
    try {
      Promise.resolve(opts.onDesired?.(desired)).catch((err: unknown) => log.error({ err }, 'desired-state handler failed'));
    } catch (err) {
      log.error({ err }, 'desired-state handler failed');
    }
  }

  async function onConnect(): Promise<void> {
    if (!client || closing) return;
    stats.connects++;
    lastErrorCode = undefined;
    lastError = undefined;
    // Nagle would hold each small batch back for the peer's delayed ACK (~40 ms per round trip).
    (client.stream as { setNoDelay?: (on: boolean) => unknown } | undefined)?.setNoDelay?.(true);
    try {
      // Subscribe before anything is sent, so no ack for what we send can be missed.
      await client.subscribeAsync([topic('ack'), topic('desired')], { qos: 1 });
      await publish('state', stateBody(true), 1, true);
    } catch (err) {
      log.warn({ err }, 'fleet link set-up failed; waiting for the next connection');
      return;
    }
    if (!client.connected || closing) return;
    ready = true;
    log.info({ lastSeq: store.lastSeq, ackedSeq: store.ackedSeq, pending: store.pending }, 'fleet link up');
    try {
      opts.onUp?.();
    } catch (err) {
      log.error({ err }, 'link-up hook threw');
    }
    // What was in flight before may be lost: start again from the ack.
    resetFlight();
    pump();
    while (events.length > 0 && ready) {
      const ev = events.shift()!;
      publish('events', ev, 1).catch((err: unknown) => log.debug({ err }, 'event publish failed'));
    }
  }

  function onDown(): void {
    if (ready) log.warn({ pending: store.pending }, 'fleet link down; results accumulate locally');
    ready = false;
    resetFlight();
  }

  return {
    start() {
      if (client) return;
      client = connect(opts.mqttUrl, {
        // The edge id: the broker binds an edge's client id to its identity.
        clientId: edgeId,
        ...opts.credentials,
        clean: true,
        keepalive: 30,
        connectTimeout: 10_000,
        reconnectPeriod: opts.reconnectPeriodMs ?? 1000,
        // We resubscribe on every connect ourselves, and never queue while offline: the store is the queue.
        resubscribe: false,
        queueQoSZero: false,
        will: offlineWill(),
        ...opts.tls?.mqtt,
      });
      // A packet over the limit drops the connection before it is buffered (see mqtt-packet-limit).
      limitClientPackets(client, maxPacketBytes, (bytes) => log.warn({ bytes, maxPacketBytes }, 'mqtt packet over maxPacketBytes; reconnecting'));
      client.on('connect', () => void onConnect());
      client.on('close', onDown);
      client.on('message', onMessage);
      client.on('reconnect', () => {
        if (client) client.options.will = offlineWill();
      });
      client.on('error', (err: Error) => {
        // While the fleet is down mqtt.js reports every attempt; log each kind of failure once.
        const code = String((err as NodeJS.ErrnoException).code ?? err.message);
        const refused = certificateRefusal(err, opts.tls?.caFile);
        lastError = refused ?? err.message;
        if (code !== lastErrorCode) log.warn({ err, url: opts.mqttUrl }, refused ?? 'fleet link error');
        lastErrorCode = code;
      });
      tickTimer = setInterval(() => pump(), sync.intervalMs);
      telemetryTimer = setInterval(() => {
        let body: Body<'telemetry'>;
        try {
          body = opts.telemetry();
        } catch (err) {
          log.error({ err }, 'telemetry failed');
          return;
        }
        if (ready) publish('telemetry', body, 0).catch((err: unknown) => log.debug({ err }, 'telemetry publish failed'));
      }, opts.telemetryIntervalMs);
    },
    get connected() {
      return ready;
    },
    get lastError() {
      return lastError;
    },
    notifyResults() {
      if (inflight.length < sync.window) schedulePump();
    },
    publishState() {
      if (ready) publish('state', stateBody(true), 1, true).catch((err: unknown) => log.warn({ err }, 'state publish failed'));
    },
    publishEvent(kind, level, message, data) {
      const body: Body<'events'> = { kind, level, message: message.slice(0, 1000) };
      if (data) body.data = data;
      if (ready) {
        publish('events', body, 1).catch((err: unknown) => log.debug({ err, kind }, 'event publish failed'));
        return;
      }
      if (closing) return;
      events.push(body);
      if (events.length > maxEvents) {
        events.shift();
        stats.eventsDropped++;
      }
    },
    waitForAck,
    get stats() {
      return stats;
    },
    close(closeOpts = {}) {
      closed ??= (async () => {
        const finalSyncMs = closeOpts.finalSyncMs ?? 2000;
        clearInterval(tickTimer);
        clearInterval(telemetryTimer);
        clearTimeout(rateTimer);
        rateTimer = undefined;
        if (!client) return;
        if (ready && store.pending > 0 && finalSyncMs > 0) {
          pump();
          const ok = await waitForAck(store.lastSeq, finalSyncMs);
          if (!ok) log.warn({ pending: store.pending }, 'final sync incomplete; the rest goes at next start');
        }
        closing = true;
        if (ready) {
          // Clean DISCONNECT suppresses the will, so say offline ourselves (retained).
          const r = await withTimeout(publish('state', stateBody(false), 1, true).catch(() => undefined), 1000, () => 'timeout' as const);
          if (r === 'timeout') log.warn('offline state not confirmed');
        }
        ready = false;
        clearTimeout(ackTimer);
        const c = client;
        const ended = await withTimeout(c.endAsync(false).catch(() => undefined), 1000, () => 'timeout' as const);
        if (ended === 'timeout') await c.endAsync(true).catch(() => undefined);
      })();
      return closed;
    },
  };
}
