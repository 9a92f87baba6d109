/**
 * The edges' reported states as the broker holds them (retained `state` messages): which model
 * each edge runs, and a way to await "N edges report model X active" without polling.
 */
import { performance } from 'node:perf_hooks';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { decodeMessage } from '../protocol/validator.js';

export interface StateWatch {
  readonly client: MqttClient;
  /** Active model per online edge, as `name@version`. */
  readonly active: ReadonlyMap<string, string>;
  /** Resolves with performance.now() once `count` edges report `model` (`name@version`) active. */
  allOn(model: string, count: number, timeoutMs?: number): Promise<number>;
  close(): Promise<void>;
}

/** `login`: a client that may read every edge's state (the fleet identity: bench/fleet-access.ts fleetMqttOptions). */
export async function watchStates(mqttUrl: string, login: IClientOptions): Promise<StateWatch> {
  const client = await connectAsync(mqttUrl, login);
  const active = new Map<string, string>();
  let waiter: { model: string; count: number; resolve: (t: number) => void } | undefined;
  const check = () => {
    if (!waiter) return;
    let n = 0;
    for (const v of active.values()) if (v === waiter.model) n++;
    if (n >= waiter.count) {
      const w = waiter;
      waiter = undefined;
      w.resolve(performance.now());
    }
  };
  client.on('message', (_topic, payload) => {
    const m = decodeMessage('state', payload);
    if (!m.ok) return;
    if (!m.value.online || !m.value.active) active.delete(m.value.edgeId);
    else active.set(m.value.edgeId, `${m.value.active.name}@${m.value.active.version}`);
    check();
  });
  await client.subscribeAsync('osprey/v1/edges/+/state', { qos: 1 });
  return {
    client,
    active,
    allOn(model, count, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = undefined;
          reject(new Error(`not ${count} edges on ${model} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = { model, count, resolve: (t) => (clearTimeout(timer), resolve(t)) };
        check();
      });
    },
    close: () => client.endAsync(true),
  };
}
