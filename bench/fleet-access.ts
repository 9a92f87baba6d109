/**
 * How the benchmarks reach a fleet run by bench/fleet-child.ts with its security on, through the
 * real paths: people's HTTP calls carry an admin's API token, observers connect to the broker as
 * the fleet identity (`osprey-fleet`), and simulated edges are enrolled on the fleet's database
 * (simulator/simulate.ts enrollSimEdges: a one-time token redeemed for the edge's credential).
 * With TLS every client trusts the fleet's private CA.
 */
import { readFile } from 'node:fs/promises';
import type { IClientOptions } from 'mqtt';
import { Agent } from 'undici';
import { FLEET_CLIENT_ID_PREFIX, FLEET_MQTT_USERNAME } from '../fleet-manager/broker-auth.js';
import { enrollSimEdges } from '../simulator/simulate.js';
import { simCredentialFile, type SimEdgeSpec } from '../simulator/sim-edges.js';
import { benchScript, startChild, type BenchChild, type StartOptions } from './child.js';

/** What the fleet child runs with (argv[4] of fleet-child.js). */
export interface FleetChildSecurity {
  /** Config auth.enabled (false: anonymous everywhere, loopback only). */
  auth: boolean;
  /** HTTPS and MQTTS with a private CA made in the fleet's data directory. */
  tls: boolean;
}

/** What the fleet child hands its parent (secrets stay in these two processes). */
export interface FleetAccess {
  auth: boolean;
  /** An admin's API token; null with authentication off. */
  apiToken: string | null;
  /** The password of `osprey-fleet` on the embedded broker. */
  fleetSecret: string;
  /** The private CA's ca.pem with TLS; null without. */
  caFile: string | null;
}

export interface FleetReady {
  httpUrl: string;
  mqttUrl: string;
  access: FleetAccess;
}

export interface BenchFleetOptions extends Partial<FleetChildSecurity> {
  /** registry.publisherKeys: the benchmark publisher's public key file. */
  publisherKeyFile?: string;
  /** More fleet options (plain JSON), e.g. `{ storage: { url }, brokerUrl }` (bench/pg-ingest.ts). */
  fleetOptions?: Record<string, unknown>;
  start?: StartOptions;
}

/** Starts bench/fleet-child.js on `dataDir` (default: authentication on, plain TCP). */
export function startBenchFleet(dataDir: string, opts: BenchFleetOptions = {}): Promise<BenchChild<FleetReady>> {
  const security: FleetChildSecurity = { auth: opts.auth ?? true, tls: opts.tls ?? false };
  return startChild<FleetReady>(benchScript('fleet-child.js'), [dataDir, opts.publisherKeyFile ?? '', JSON.stringify(security), JSON.stringify(opts.fleetOptions ?? {})], opts.start);
}

/** `Authorization` for a person's HTTP call (none with authentication off). */
export function apiHeaders(access: FleetAccess): Record<string, string> {
  return access.apiToken ? { authorization: `Bearer ${access.apiToken}` } : {};
}

/** An undici dispatcher trusting the fleet's CA (undefined without TLS: the global one). The caller closes it. */
export async function fleetDispatcher(access: FleetAccess): Promise<Agent | undefined> {
  return access.caFile ? new Agent({ connect: { ca: await readFile(access.caFile), rejectUnauthorized: true } }) : undefined;
}

/** mqtt.js options of an observer that reads every edge's topics: the fleet identity (`name` makes its client id). */
export async function fleetMqttOptions(access: FleetAccess, name: string): Promise<IClientOptions> {
  return {
    clientId: `${FLEET_CLIENT_ID_PREFIX}${name}`,
    username: FLEET_MQTT_USERNAME,
    password: access.fleetSecret,
    ...(access.caFile ? { ca: await readFile(access.caFile), rejectUnauthorized: true } : {}),
  };
}

/**
 * Enrolls these edges on the fleet's database (its data directory): their credentials are written
 * under `credentialDir` (0600) and returned as edge id → file; undefined with authentication off.
 */
export async function enrollBenchEdges(access: FleetAccess, fleetDataDir: string, credentialDir: string, edges: readonly SimEdgeSpec[]): Promise<Record<string, string> | undefined> {
  if (!access.auth) return undefined;
  await enrollSimEdges(fleetDataDir, credentialDir, edges);
  return Object.fromEntries(edges.map((e) => [e.id, simCredentialFile(credentialDir, e.id)]));
}
