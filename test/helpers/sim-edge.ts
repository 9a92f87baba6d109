/**
 * An edge played by a real mqtt.js client that follows its desired state the way the agent does
 * (without downloading or running anything): it reports the desired active and shadow models as
 * applied, keeps the previous one, and can send results, telemetry and events. For fleet-side
 * tests and the rollback benchmark, where many edges must run in one process.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { edgeTopic } from '../../protocol/topics.js';
import { withTimeout } from '../../protocol/timeout.js';
import { decodeMessage, encodeMessage, envelope } from '../../protocol/validator.js';
import type { DesiredMessage, EventMessage, ModelRef, ResultRecord, StateMessage, TelemetryMessage } from '../../protocol/messages.js';

export interface SimEdgeOptions {
  id: string;
  /** The edge's credential (`ospe_…`, from enrollment): its MQTT password; username and client id are the id. */
  credential: string;
  line: string;
  /** The model in its local config, reported until a desired state names another. */
  localModel: ModelRef;
  /** Apply desired states as they come (default true); false to hold them (a stuck download). */
  follow?: boolean;
  /** The last seq already sent (a reconnecting edge goes on from its store). */
  lastSeq?: number;
}

export interface SimEdge {
  readonly id: string;
  readonly client: MqttClient;
  /** The last seq sent. */
  readonly lastSeq: number;
  /** The last desired state received. */
  desired: DesiredMessage | null;
  active: ModelRef;
  previous: ModelRef | null;
  shadow: ModelRef | null;
  follow: boolean;
  /** Resolves with the first desired state (already received or future) that matches. */
  waitDesired(match: (d: DesiredMessage) => boolean, timeoutMs?: number): Promise<DesiredMessage>;
  /** Applies the last desired state now (after `follow` was false). */
  applyDesired(): void;
  /** Publishes the current state (retained, QoS 1). */
  publishState(extra?: Partial<StateMessage>): Promise<void>;
  /** Sends results and resolves once the fleet acked them (stored). */
  sendResults(records: Omit<ResultRecord, 'seq'>[]): Promise<void>;
  /** Sends a telemetry report; `extra` overrides or adds fields (e.g. `monitor`, `alarms`). */
  sendTelemetry(perModel: TelemetryMessage['perModel'], extra?: Partial<TelemetryMessage>): Promise<void>;
  sendEvent(kind: EventMessage['kind'], message: string, data?: Record<string, unknown>): Promise<void>;
  /** Resolves with the time the edge reports the model as active (after applying a desired state). */
  waitActive(model: string, timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
}

const ref = (a: { name: string; version: string; sha256?: string } | null | undefined): ModelRef | null =>
  a ? { name: a.name, version: a.version, ...(a.sha256 ? { sha256: a.sha256 } : {}) } : null;
const idOf = (r: ModelRef | null) => (r ? `${r.name}@${r.version}` : null);

/** Connects a simulated edge; it publishes its first state at once (so the fleet knows it). */
export async function connectSimEdge(mqttUrl: string, opts: SimEdgeOptions): Promise<SimEdge> {
  const { id, line } = opts;
  const client = await connectAsync(mqttUrl, {
    clientId: id,
    username: id,
    password: opts.credential,
    reconnectPeriod: 0,
    will: { topic: edgeTopic(id, 'state'), payload: encodeMessage(envelope('state', id, { online: false, line })), qos: 1, retain: true },
  });
  (client.stream as { setNoDelay?: (b: boolean) => void }).setNoDelay?.(true);
  let seq = opts.lastSeq ?? 0;
  let acked = seq;
  const ackWaiters: { seq: number; resolve: () => void }[] = [];
  const desiredWaiters: { match: (d: DesiredMessage) => boolean; resolve: (d: DesiredMessage) => void }[] = [];
  const activeWaiters: { model: string; resolve: (t: number) => void }[] = [];
  let configVersion = 0;

  const edge: SimEdge = {
    id,
    client,
    get lastSeq() {
      return seq;
    },
    desired: null,
    active: opts.localModel,
    previous: null,
    shadow: null,
    follow: opts.follow ?? true,
    waitDesired(match, timeoutMs = 10_000) {
      if (edge.desired && match(edge.desired)) return Promise.resolve(edge.desired);
      return timeLimit(new Promise((resolve) => desiredWaiters.push({ match, resolve })), timeoutMs, `${id}: no matching desired state`);
    },
    applyDesired() {
      if (edge.desired) apply(edge.desired);
    },
    async publishState(extra = {}) {
      const msg = envelope('state', id, {
        online: true,
        line,
        cameras: ['cam1'],
        agentVersion: 'sim',
        active: edge.active,
        previous: edge.previous,
        shadow: edge.shadow,
        configVersion,
        ...extra,
      });
      await client.publishAsync(edgeTopic(id, 'state'), encodeMessage(msg), { qos: 1, retain: true });
    },
    async sendResults(records) {
      const batch = records.map((r) => ({ ...r, seq: ++seq }));
      const msg = envelope('results', id, { fromSeq: batch[0]!.seq, toSeq: seq, results: batch });
      const done = new Promise<void>((resolve) => (acked >= seq ? resolve() : ackWaiters.push({ seq, resolve })));
      await client.publishAsync(edgeTopic(id, 'results'), encodeMessage(msg), { qos: 1 });
      await timeLimit(done, 10_000, `${id}: results not acked`);
    },
    async sendTelemetry(perModel, extra = {}) {
      const frames = Object.values(perModel).reduce((a, m) => a + m.frames, 0);
      const msg = envelope('telemetry', id, {
        intervalMs: 1000,
        frames,
        defects: 0,
        failed: 0,
        failures: {},
        fps: frames,
        latencyMs: { count: frames, p50: 5, p95: 8, p99: 9, max: 10 },
        queueDepth: 0,
        lastSeq: seq,
        ackedSeq: acked,
        pendingResults: seq - acked,
        cpuPercent: 10,
        rssBytes: 100_000_000,
        perModel,
        ...extra,
      });
      await client.publishAsync(edgeTopic(id, 'telemetry'), encodeMessage(msg), { qos: 1 });
    },
    async sendEvent(kind, message, data) {
      const msg = envelope('events', id, { kind, level: 'warn', message, ...(data && { data }) });
      await client.publishAsync(edgeTopic(id, 'events'), encodeMessage(msg), { qos: 1 });
    },
    waitActive(model, timeoutMs = 10_000) {
      if (idOf(edge.active) === model) return Promise.resolve(Date.now());
      return timeLimit(new Promise((resolve) => activeWaiters.push({ model, resolve })), timeoutMs, `${id}: ${model} never active`);
    },
    async close() {
      await client.endAsync(true);
    },
  };

  /** What the agent does with a desired state, minus the download: switch slots and report. */
  function apply(d: DesiredMessage): void {
    const wanted = ref(d.active) ?? opts.localModel;
    if (idOf(wanted) !== idOf(edge.active)) {
      edge.previous = edge.active;
      edge.active = wanted;
    }
    edge.shadow = ref(d.shadow);
    configVersion = d.configVersion;
    void edge.publishState().then(
      () => {
        const t = Date.now();
        for (const w of activeWaiters.splice(0)) {
          if (w.model === idOf(edge.active)) w.resolve(t);
          else activeWaiters.push(w);
        }
      },
      // A desired state that arrives as the test closes the edge: its state publish is cut short
      // (waitActive callers time out instead, naming the edge).
      () => undefined,
    );
  }

  client.on('message', (topic, payload) => {
    if (topic === edgeTopic(id, 'ack')) {
      const m = decodeMessage('ack', payload);
      if (!m.ok) return;
      acked = Math.max(acked, m.value.ackSeq);
      for (const w of ackWaiters.splice(0)) (acked >= w.seq ? w.resolve() : ackWaiters.push(w));
    } else if (topic === edgeTopic(id, 'desired')) {
      const m = decodeMessage('desired', payload);
      if (!m.ok) throw new Error(`${id}: invalid desired state: ${m.error}`);
      edge.desired = m.value;
      if (edge.follow) apply(m.value);
      for (const w of [...desiredWaiters]) {
        if (w.match(m.value)) {
          desiredWaiters.splice(desiredWaiters.indexOf(w), 1);
          w.resolve(m.value);
        }
      }
    }
  });
  await client.subscribeAsync([edgeTopic(id, 'ack'), edgeTopic(id, 'desired')], { qos: 1 });
  await edge.publishState();
  return edge;
}

/** `p`, or a rejection saying what did not happen in time. */
function timeLimit<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return withTimeout(p, ms, () => {
    throw new Error(`${what} within ${ms} ms`);
  });
}
