/**
 * Helpers of the registry, config and rollout tests: a real fleet manager on port 0 in a temp
 * dir that trusts the test publisher key, JSON over real HTTP, and real (tiny) model packages,
 * signed by the test publisher on upload, that pass the registry's checks (it runs each model once).
 */
import type { TestContext } from 'node:test';
import { pino, type Logger } from 'pino';
import { createFleetManager, type FleetManager, type FleetManagerOptions } from '../../fleet-manager/fleet-manager.js';
import { packArchive } from '../../models/package-archive.js';
import { sha256Hex } from '../../models/package-reader.js';
import { parseManifest } from '../../models/manifest-check.js';
import { tempDir } from './helpers.js';
import mqtt from 'mqtt';
import { edgeTopic } from '../../protocol/topics.js';
import { encodeMessage, envelope } from '../../protocol/validator.js';
import { waitFor } from '../helpers/wait-for.js';
import { join } from 'node:path';
import { openTestIdentity, type TestIdentity } from '../helpers/identity.js';
import { signedArchive, testPublisherKey, tinyAnomalyModel } from '../helpers/publisher.js';

export interface TestFleet {
  fm: FleetManager;
  httpUrl: string;
  mqttUrl: string;
  dataDir: string;
  /** Users, tokens and edge enrollment on this fleet's database. */
  creds: TestIdentity;
  /** `Authorization` of an admin's API token, for raw fetch calls. */
  admin: { authorization: string };
  /** JSON (or text) over real HTTP, as an admin (API token). */
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- bodies are checked by the asserts
  api(method: string, path: string, body?: unknown): Promise<{ status: number; headers: Headers; body: any }>;
}

/** Starts a fleet manager (HTTP and MQTT on port 0) closed after the test. */
export async function startFleet(
  t: TestContext,
  opts: Partial<FleetManagerOptions> & { logger?: Logger } = {},
): Promise<TestFleet> {
  const dataDir = opts.dataDir ?? (await tempDir(t));
  const fm = createFleetManager({
    http: { host: '127.0.0.1', port: 0 },
    mqtt: { host: '127.0.0.1', port: 0 },
    rollouts: { tickMs: 50 },
    logger: pino({ level: 'silent' }),
    ...opts,
    registry: { publisherKeys: [testPublisherKey()], ...opts.registry },
    dataDir,
  });
  const { httpUrl, mqttUrl } = await fm.start();
  t.after(() => fm.close());
  const creds = openTestIdentity(t, join(dataDir, 'fleet.db'));
  const admin = await creds.headers('admin');
  return {
    fm,
    httpUrl,
    mqttUrl,
    dataDir,
    creds,
    admin,
    async api(method, path, body) {
      const init: RequestInit = { method, headers: admin };
      if (body !== undefined) {
        init.body = JSON.stringify(body);
        init.headers = { ...admin, 'content-type': 'application/json' };
      }
      const res = await fetch(`${httpUrl}${path}`, init);
      const text = await res.text();
      const json = (res.headers.get('content-type') ?? '').includes('json') && text ? (JSON.parse(text) as unknown) : text;
      return { status: res.status, headers: res.headers, body: json };
    },
  };
}

/** The files of a valid anomaly-model package whose model bytes are `modelBytes` (default: a real tiny model, distinct per name@version). */
export function packageFiles(name: string, version: string, modelBytes: Uint8Array = tinyAnomalyModel({ offset: offsetOf(`${name}@${version}`) })): Map<string, Uint8Array> {
  return new Map<string, Uint8Array>([
    ['manifest.json', manifestBytes(name, version, sha256Hex(modelBytes), modelBytes.length)],
    ['model.onnx', modelBytes],
  ]);
}

/** A small number derived from a string: models of different versions differ in bytes. */
function offsetOf(text: string): number {
  let h = 0;
  for (const c of text) h = (h * 31 + c.charCodeAt(0)) % 1000;
  return h / 1000;
}

/** The manifest.json of a test package whose model.onnx has this sha256 and size. */
export function manifestBytes(name: string, version: string, modelSha256: string, modelSize: number): Buffer {
  const manifest = parseManifest({
    schemaVersion: 1,
    name,
    version,
    task: 'anomaly',
    model: { file: 'model.onnx', sha256: modelSha256, size: modelSize },
    input: { name: 'image', layout: 'nchw', width: 8, height: 8, dtype: 'float32', color: 'gray', resize: 'stretch' },
    outputs: { anomaly: { format: 'osprey', score: 'score' } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
  });
  return Buffer.from(JSON.stringify(manifest, null, 2));
}

/** Uploads a package as a tar body with these credentials (`TestFleet.admin`), signed by the test publisher (signature.json added; `signed: false`: as is); returns the answer. */
export async function uploadTar(
  httpUrl: string,
  name: string,
  archive: Uint8Array,
  auth: { authorization: string },
  opts: { signed?: boolean } = {},
): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${httpUrl}/api/models/${name}/versions`, {
    method: 'POST',
    body: opts.signed === false ? archive : signedArchive(archive),
    headers: { ...auth, 'content-type': 'application/x-tar' },
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Registers name@version (a real tiny model, signed by the test publisher) with these credentials and returns its sha256. */
export async function register(httpUrl: string, name: string, version: string, auth: { authorization: string }): Promise<string> {
  const res = await uploadTar(httpUrl, name, packArchive(packageFiles(name, version)), auth);
  if (res.status !== 201 && res.status !== 200) throw new Error(`upload ${name}@${version}: ${res.status} ${JSON.stringify(res.body)}`);
  return String(res.body.sha256);
}

/**
 * Enrolls `edgeId` on the fleet and has it report, over MQTT as itself, that it has produced
 * results up to `lastSeq` (its retained state), as a real edge does before its images arrive;
 * resolves once the fleet lists that lastSeq. Returns the edge's HTTP credential headers.
 */
export async function enrolledEdgeAt(f: TestFleet, edgeId: string, lastSeq: number): Promise<{ authorization: string }> {
  const credential = await f.creds.enrollEdge(edgeId);
  const client = await mqtt.connectAsync(f.mqttUrl, { clientId: edgeId, username: edgeId, password: credential });
  try {
    await client.publishAsync(edgeTopic(edgeId, 'state'), encodeMessage(envelope('state', edgeId, { online: true, lastSeq, ackedSeq: 0 })), { qos: 1, retain: true });
    await waitFor(async () => {
      const { body } = await f.api('GET', '/api/edges');
      return (body as { edges: { id: string; lastSeq: number | null }[] }).edges.some((e) => e.id === edgeId && e.lastSeq === lastSeq);
    }, `${edgeId} reporting lastSeq ${lastSeq}`);
  } finally {
    await client.endAsync();
  }
  return { authorization: `Bearer ${credential}` };
}
