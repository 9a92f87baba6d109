/**
 * A tiny fleet for edge tests: a real mqtt.js client that stores results by seq, acks the highest
 * contiguous seq (as the real fleet does), records every other message, and lets a test await
 * messages instead of sleeping.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import type { MessageByKind, ResultRecord } from '../../protocol/messages.js';
import { allEdgesFilter, parseEdgeTopic, type MessageKind } from '../../protocol/topics.js';
import { decodeMessage, encodeMessage, envelope } from '../../protocol/validator.js';

export interface Received<K extends MessageKind = MessageKind> {
  kind: K;
  retain: boolean;
  msg: MessageByKind[K];
}

export interface FakeFleet {
  client: MqttClient;
  /** Results by seq (duplicates collapse, as with the fleet's unique (edge, seq)). */
  results: Map<number, ResultRecord>;
  /** Every results message as received (duplicates included). */
  batches: { fromSeq: number; toSeq: number; count: number }[];
  messages: Received[];
  /** Payloads that failed validation. */
  invalid: number;
  /** Results messages to ignore (no store, no ack) before behaving normally. */
  dropResults: number;
  readonly contiguous: number;
  /** The first message of `kind` at index ≥ `since` matching `match`, now or when it arrives. */
  next<K extends MessageKind>(kind: K, match?: (m: Received<K>) => boolean, opts?: { since?: number; timeoutMs?: number }): Promise<Received<K>>;
  close(): Promise<void>;
}

/** Connects a fake fleet to `url` and subscribes to every edge's outgoing topics. */
export async function startFakeFleet(url: string): Promise<FakeFleet> {
  const client = await connectAsync(url, { clientId: `fake-fleet-${process.pid}-${Date.now()}`, reconnectPeriod: 100 });
  const waiters = new Set<() => void>();
  let contiguous = 0;
  const fleet: FakeFleet = {
    client,
    results: new Map(),
    batches: [],
    messages: [],
    invalid: 0,
    dropResults: 0,
    get contiguous() {
      return contiguous;
    },
    next(kind, match = () => true, opts = {}) {
      const since = opts.since ?? 0;
      return new Promise((resolve, reject) => {
        const find = () => {
          for (let i = since; i < fleet.messages.length; i++) {
            const m = fleet.messages[i]!;
            if (m.kind === kind && match(m as Received<typeof kind>)) return m as Received<typeof kind>;
          }
          return undefined;
        };
        const found = find();
        if (found) return resolve(found);
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching ${kind} message within ${opts.timeoutMs ?? 15_000} ms`));
        }, opts.timeoutMs ?? 15_000);
        const check = () => {
          const m = find();
          if (!m) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve(m);
        };
        waiters.add(check);
      });
    },
    async close() {
      await client.endAsync(true);
    },
  };

  client.on('message', (topic, payload, packet) => {
    const parsed = parseEdgeTopic(topic);
    if (!parsed) return;
    const decoded = decodeMessage(parsed.kind, payload);
    if (!decoded.ok) {
      fleet.invalid++;
      return;
    }
    if (parsed.kind === 'results') {
      const msg = decoded.value as MessageByKind['results'];
      if (fleet.dropResults > 0) {
        fleet.dropResults--;
        return;
      }
      fleet.batches.push({ fromSeq: msg.fromSeq, toSeq: msg.toSeq, count: msg.results.length });
      for (const r of msg.results) fleet.results.set(r.seq, r);
      while (fleet.results.has(contiguous + 1)) contiguous++;
      const ack = envelope('ack', parsed.edgeId, { ackSeq: contiguous });
      void client.publishAsync(topic.replace(/results$/, 'ack'), encodeMessage(ack), { qos: 1 });
    }
    fleet.messages.push({ kind: parsed.kind, retain: packet.retain, msg: decoded.value } as Received);
    for (const w of [...waiters]) w();
  });
  await client.subscribeAsync(
    (['results', 'state', 'events', 'telemetry'] as const).map((k) => allEdgesFilter(k)),
    { qos: 1 },
  );
  return fleet;
}
