/**
 * The world of the MQTT attack tests, on either broker: a real fleet manager (startFleet) with
 * its embedded aedes broker, or the same fleet on a real Mosquitto configured by `osprey fleet
 * broker-config` (password and ACL files). Edges are enrolled through the identity store, as
 * `osprey edge enroll` does; attackers are raw mqtt.js clients.
 */
import type { TestContext } from 'node:test';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import { startFleet, type TestFleet } from '../fleet-manager/control-helpers.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { openTestIdentity } from '../helpers/identity.js';
import { mosquittoSkip, startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { writeBrokerConfig } from '../../cli/broker-config.js';

export type BrokerKind = 'aedes' | 'mosquitto';

/** The brokers to run on, each with its skip reason (Mosquitto missing: skipped, or failed under CI). */
export function brokerKinds(): { kind: BrokerKind; skip: string | false }[] {
  return [
    { kind: 'aedes', skip: false },
    { kind: 'mosquitto', skip: mosquittoSkip() },
  ];
}

export interface MqttWorld {
  kind: BrokerKind;
  fleet: TestFleet;
  mqttUrl: string;
  mosquitto?: Mosquitto;
  /** The credential each enrolled edge got. */
  credentials: Map<string, string>;
  /** The login of an enrolled edge: username and client id are its id. */
  login(edgeId: string): { clientId: string; username: string; password: string };
  /** A raw client (no reconnect), ended after the test. Rejects when the broker refuses it. */
  connect(opts: IClientOptions): Promise<MqttClient>;
  /** The CONNACK return code a CONNECT with these options gets: 0 accepted, else the refusal. */
  connackCode(opts: IClientOptions): Promise<number>;
}

/** A fleet on `kind`, with `edges` enrolled before the broker starts (Mosquitto reads them at start). */
export async function startMqttWorld(t: TestContext, kind: BrokerKind, edges: readonly string[]): Promise<MqttWorld> {
  const dataDir = await tempDir(t);
  const credentials = new Map<string, string>();
  let fleet: TestFleet;
  let mosquitto: Mosquitto | undefined;
  if (kind === 'aedes') {
    fleet = await startFleet(t, { dataDir });
    for (const id of edges) credentials.set(id, await fleet.creds.enrollEdge(id));
  } else {
    const ids = openTestIdentity(t, join(dataDir, 'fleet.db'));
    for (const id of edges) credentials.set(id, await ids.enrollEdge(id));
    const files = await writeBrokerConfig(dataDir, join(dataDir, 'mosquitto'));
    const broker = await startMosquitto({ accessConfig: await readFile(files.confFile, 'utf8') });
    t.after(() => broker.close());
    mosquitto = broker;
    // The fleet finds its password in dataDir/keys/broker-fleet.secret, written by broker-config.
    fleet = await startFleet(t, { dataDir, brokerUrl: broker.url });
  }
  const connect = async (opts: IClientOptions) => {
    const client = await connectAsync(fleet.mqttUrl, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
    t.after(() => client.endAsync(true));
    return client;
  };
  return {
    kind,
    fleet,
    mqttUrl: fleet.mqttUrl,
    ...(mosquitto && { mosquitto }),
    credentials,
    login(edgeId) {
      const password = credentials.get(edgeId);
      if (!password) throw new Error(`${edgeId} is not enrolled in this world`);
      return { clientId: edgeId, username: edgeId, password };
    },
    connect,
    async connackCode(opts) {
      try {
        const client = await connect(opts);
        await client.endAsync(true);
        return 0;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (typeof code !== 'number') throw err;
        return code;
      }
    },
  };
}

/**
 * Publishes and resolves with what the broker did: 'acked' (PUBACK: accepted, or, on Mosquitto,
 * silently dropped by its ACL), or 'closed' (aedes drops a client whose publish it refuses).
 * Either way the broker has finished with the message when this resolves.
 */
export function publishOutcome(client: MqttClient, topic: string, payload: Buffer | string, opts: { qos: 0 | 1; retain?: boolean }): Promise<'acked' | 'closed'> {
  return new Promise((resolve) => {
    const onClose = () => resolve('closed');
    client.once('close', onClose);
    client.publish(topic, payload, { qos: opts.qos, retain: opts.retain ?? false }, (err) => {
      if (err) return; // the close settles it
      client.off('close', onClose);
      resolve('acked');
    });
  });
}

/** Subscribes to one filter and resolves with the QoS the broker granted (128: refused). */
export function grantedQos(client: MqttClient, filter: string): Promise<number> {
  return new Promise((resolve, reject) => {
    client.subscribe(filter, { qos: 1 }, (err, granted) => {
      // mqtt.js turns a SUBACK 128 into an error that carries the SUBACK.
      const refused = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted?.[0];
      if (err) return refused === undefined ? reject(err) : resolve(refused);
      resolve(granted?.find((g) => g.topic === filter)?.qos ?? -1);
    });
  });
}
