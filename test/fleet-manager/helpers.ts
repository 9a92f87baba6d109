/**
 * Shared helpers of the fleet-manager tests: temp dirs, a logger whose lines can be awaited,
 * result records, and an MQTT edge that awaits its acks. (Runs as an empty test file too.)
 */
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import { makeTempDir } from '../helpers/temp-dir.js';
import { pino, type Logger } from 'pino';
import { connectAsync, type MqttClient } from 'mqtt';
import { edgeTopic } from '../../protocol/topics.js';
import { decodeMessage, encodeMessage, envelope } from '../../protocol/validator.js';
import type { ResultRecord, StateMessage } from '../../protocol/messages.js';

/** A fresh directory removed after the test. */
export function tempDir(t: TestContext): Promise<string> {
  return makeTempDir(t, 'osprey-fleet-');
}

export type LogLine = Record<string, unknown> & { msg: string; level: number };

export interface CapturedLogger {
  logger: Logger;
  lines: LogLine[];
  /** Resolves with the first line (already written or future) that matches. */
  waitFor(match: (line: LogLine) => boolean): Promise<LogLine>;
}

/** A pino logger writing into memory, so tests can assert on and await log lines. */
export function captureLogger(level = 'debug'): CapturedLogger {
  const lines: LogLine[] = [];
  const waiters: { match: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString('utf8').split('\n')) {
        if (!text) continue;
        const line = JSON.parse(text) as LogLine;
        lines.push(line);
        for (const w of [...waiters]) {
          if (w.match(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
      done();
    },
  });
  return {
    logger: pino({ level }, stream),
    lines,
    waitFor(match) {
      const seen = lines.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve) => waiters.push({ match, resolve }));
    },
  };
}

export const T0 = Date.UTC(2025, 0, 1, 8, 0, 0);

/** A valid result record; fields overridable. */
export function result(seq: number, over: Partial<ResultRecord> = {}): ResultRecord {
  return {
    seq,
    ts: T0 + seq * 1000,
    camera: 'cam-1',
    source: 'simulated',
    model: 'builtin-anomaly@1',
    verdict: 'ok',
    label: 'good',
    score: 0.1,
    latencyMs: 4.5,
    ...over,
  };
}

/** Records seq from..to inclusive. */
export function results(from: number, to: number, over: Partial<ResultRecord> = {}): ResultRecord[] {
  return Array.from({ length: to - from + 1 }, (_, i) => result(from + i, over));
}

export interface TestEdge {
  id: string;
  client: MqttClient;
  publishState(body: Partial<Omit<StateMessage, 'v' | 'id' | 'ts' | 'edgeId'>>): Promise<void>;
  publishResults(batch: ResultRecord[]): Promise<void>;
  publishRaw(kind: string, payload: string | Buffer): Promise<void>;
  /** The next ack the fleet sends this edge (acks already received are queued). */
  nextAck(): Promise<number>;
}

/**
 * An edge played by a real mqtt.js client: subscribed to its acks, with a last will saying
 * offline, like the real agent.
 */
export async function connectEdge(t: TestContext, url: string, id: string, credential: string): Promise<TestEdge> {
  const client = await connectAsync(url, {
    clientId: id,
    username: id,
    password: credential,
    reconnectPeriod: 0,
    will: {
      topic: edgeTopic(id, 'state'),
      payload: encodeMessage(envelope('state', id, { online: false })),
      qos: 1,
      retain: true,
    },
  });
  t.after(() => client.endAsync(true));
  const acks: number[] = [];
  const waiting: ((n: number) => void)[] = [];
  const ackTopic = edgeTopic(id, 'ack');
  client.on('message', (topic, payload) => {
    if (topic !== ackTopic) return;
    const decoded = decodeMessage('ack', payload);
    if (!decoded.ok || decoded.value.edgeId !== id) throw new Error(`bad ack: ${payload.toString()}`);
    const waiter = waiting.shift();
    if (waiter) waiter(decoded.value.ackSeq);
    else acks.push(decoded.value.ackSeq);
  });
  await client.subscribeAsync(ackTopic, { qos: 1 });
  return {
    id,
    client,
    async publishState(body) {
      const msg = envelope('state', id, { online: true, ...body });
      await client.publishAsync(edgeTopic(id, 'state'), encodeMessage(msg), { qos: 1, retain: true });
    },
    async publishResults(batch) {
      const msg = envelope('results', id, { fromSeq: batch[0]!.seq, toSeq: batch[batch.length - 1]!.seq, results: batch });
      await client.publishAsync(edgeTopic(id, 'results'), encodeMessage(msg), { qos: 1 });
    },
    async publishRaw(kind, payload) {
      await client.publishAsync(`osprey/v1/edges/${id}/${kind}`, payload, { qos: 1 });
    },
    nextAck() {
      const queued = acks.shift();
      if (queued !== undefined) return Promise.resolve(queued);
      return new Promise((resolve) => waiting.push(resolve));
    },
  };
}
