/**
 * `osprey demo`: a fleet manager, N edge agents on two lines and a frame generator, all in this
 * process with embedded defaults (aedes, SQLite under ./data, the built-in anomaly model).
 * Secure as a production fleet is: the first admin is created and its password printed once,
 * every edge enrolls with a one-time token for its own credential, and the registry accepts only
 * packages signed by the demo's publisher key, which lives outside the fleet's data directory.
 */
import { PUBLIC_KEY_FILE } from '../fleet-manager/signing-keys.js';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino, { type Logger } from 'pino';
import { request } from 'undici';
import { createEdgeAgent } from '../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../edge-agent/config.js';
import { createFleetManager } from '../fleet-manager/fleet-manager.js';
import { ensureDemoModel, generatePartImage, type DefectKind } from '../models/fixtures.js';
import { OspreyError, isOspreyError } from '../protocol/errors.js';
import { generateSigningKeys } from '../models/artifact-signature.js';
import { intOption, parse } from './args.js';
import { onShutdownSignal } from './signals.js';
import { createFirstAdmin, openFleetIdentity } from './fleet-init.js';
import { enrollEdge } from './edge-enroll.js';

export const demoHelp = `Usage: osprey demo [options]

Starts a fleet manager, N edge agents on two lines (line-A, line-B) and a generator that feeds
them synthetic part images (about 10 % defective) through their hot folders and POST /inspect.
Prints the console's URL and how to sign in; Ctrl-C stops everything cleanly.

Options:
  --port N       fleet manager HTTP port (default 8080; 0 picks a free one)
  --edges N      number of edges (default 3)
  --fps N        frames per second per edge (default 2)
  --data DIR     data directory (default ./data)
  --log-level L  log level for the components' logs (default warn)
  -h, --help     this text`;

const DEFECTS: DefectKind[] = ['scratch', 'spot', 'dent', 'missing'];

/** A seeded pool of images so the generator costs nothing per frame. */
async function imagePool(size: number): Promise<{ bytes: Buffer; defect: boolean }[]> {
  const pool: { bytes: Buffer; defect: boolean }[] = [];
  for (let i = 0; i < size; i++) {
    const defect = i % 10 === 9 ? DEFECTS[(i / 10) % DEFECTS.length | 0]! : null;
    pool.push({ bytes: await generatePartImage({ seed: 10_000 + i, defect, format: 'jpeg' }), defect: defect !== null });
  }
  return pool;
}

export async function demoCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    port: { type: 'string' },
    edges: { type: 'string' },
    fps: { type: 'string' },
    data: { type: 'string' },
    'log-level': { type: 'string' },
  });
  if (values.help) {
    console.log(demoHelp);
    return 0;
  }
  const port = intOption('port', values.port, 8080, 0, 65535);
  const edges = intOption('edges', values.edges, 3, 1, 50);
  const fps = intOption('fps', values.fps, 2, 1, 100);
  const dataDir = resolve(values.data ?? 'data');
  const log: Logger = pino({ level: values['log-level'] ?? 'warn' }, pino.destination(2));

  console.log(`osprey demo: preparing the built-in model and sample images under ${dataDir}`);
  const modelDir = await ensureDemoModel(join(dataDir, 'models'));
  const pool = await imagePool(60);

  const closers: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const close of closers.reverse()) await close().catch((err: unknown) => log.error({ err }, 'close failed'));
  };
  try {
    const fleetDir = join(dataDir, 'fleet');
    const admin = await firstAdmin(fleetDir);
    const publisher = await demoPublisherKey(join(dataDir, 'publisher'));
    const fleet = createFleetManager({
      dataDir: fleetDir,
      http: { host: '127.0.0.1', port },
      mqtt: { host: '127.0.0.1', port: 0 },
      // The demo is one person's whole plant: the pack wizard may register what the fleet packs
      // (signed with the fleet key), and the edges below trust that key too, so versions trained or
      // packed in the console deploy. A real fleet decides both per plant (docs/SECURITY.md).
      registry: { publisherKeys: [{ id: publisher.id, publicKeyFile: publisher.publicKeyFile }], allowFleetPacked: true },
      logger: log.child({ component: 'fleet' }),
    });
    const { httpUrl } = await fleet.start();
    closers.push(() => fleet.close());
    const ids = Array.from({ length: edges }, (_, i) => `edge-${i + 1}`);
    const { statsToken, enrollment } = await demoTokens(fleetDir, ids);

    const agents: { id: string; inbox: string; httpUrl: string }[] = [];
    for (let i = 1; i <= edges; i++) {
      const id = ids[i - 1]!;
      const edgeDir = join(dataDir, 'edges', id);
      const inbox = join(edgeDir, 'inbox');
      await mkdir(inbox, { recursive: true });
      // The edge exchanges its one-time token over HTTP, as `osprey edge enroll` does; every run
      // enrolls again, which replaces the credential of the run before.
      const enrolled = await enrollEdge({ fleetUrl: new URL(httpUrl), token: enrollment.get(id)!, edgeId: id, file: join(edgeDir, 'fleet.credential') });
      const config = parseEdgeConfig(
        {
          edgeId: id,
          line: i % 2 === 1 ? 'line-A' : 'line-B',
          cameras: ['cam1'],
          dataDir: edgeDir,
          inputDir: inbox,
          http: { host: '127.0.0.1', port: 0 },
          // httpUrl: kept defect images are uploaded there and served with their results.
          // The edge trusts the demo publisher's key, and the fleet's own key (versions trained or packed in the console).
          fleet: { ...enrolled, mqttUrl: enrolled.mqttUrl!, trustedKeys: [{ id: publisher.id, publicKeyFile: publisher.publicKeyFile }], publicKeyFile: join(fleetDir, PUBLIC_KEY_FILE) },
          model: { dir: modelDir },
          telemetry: { intervalMs: 5000 },
        },
        `demo ${id}`,
      );
      const agent = createEdgeAgent(config, { logger: log.child({ component: 'edge', edgeId: id }) });
      const started = await agent.start();
      closers.push(() => agent.close());
      agents.push({ id, inbox, httpUrl: started.httpUrl });
    }

    console.log(`osprey demo: ${edges} edges on line-A and line-B, ${fps} frames/s each`);
    // The console: open it in a browser and sign in with the admin below.
    console.log(`osprey demo: console ${httpUrl}/`);
    if (admin) console.log(`osprey demo: sign in as ${admin.username} with password ${admin.password} (shown once; "osprey user passwd ${admin.username} --data ${fleetDir}" resets it)`);
    else console.log(`osprey demo: sign in with the admin made by the first run (reset: "osprey user passwd admin --data ${fleetDir}")`);
    console.log(`osprey demo: stats     curl -H "Authorization: Bearer $TOKEN" ${httpUrl}/api/lines/line-A/stats?bucket=1m`);
    console.log(`osprey demo:           (a token: "osprey user token admin --role viewer --data ${fleetDir}")`);
    console.log(`osprey demo: models    sign with "osprey model sign --key ${publisher.privateKeyFile} --key-id ${publisher.id} DIR" before uploading`);
    console.log('osprey demo: Ctrl-C to stop');

    // Frames alternate between the hot folder (written then renamed, as camera software does)
    // and POST /inspect, so both inputs run.
    let frame = 0;
    const tick = setInterval(() => {
      for (const agent of agents) {
        const { bytes } = pool[(frame * 7 + agent.id.length * 13 + Math.floor(Math.random() * pool.length)) % pool.length]!;
        const name = `${agent.id}-${String(frame).padStart(7, '0')}.jpg`;
        if (frame % 2 === 0) {
          const tmp = join(agent.inbox, `.${name}.part`);
          writeFile(tmp, bytes)
            .then(() => rename(tmp, join(agent.inbox, name)))
            .catch((err: unknown) => log.warn({ err, edgeId: agent.id }, 'demo frame write failed'));
        } else {
          request(`${agent.httpUrl}/inspect?camera=cam1`, { method: 'POST', body: bytes, headers: { 'content-type': 'image/jpeg' } })
            .then((res) => res.body.dump())
            .catch((err: unknown) => log.warn({ err, edgeId: agent.id }, 'demo POST /inspect failed'));
        }
      }
      frame++;
    }, Math.max(10, Math.round(1000 / fps)));
    closers.push(async () => clearInterval(tick));

    const status = setInterval(() => {
      void printStatus(httpUrl, statsToken).catch(() => undefined);
    }, 5000);
    closers.push(async () => clearInterval(status));

    await onShutdownSignal();
    console.log('osprey demo: stopping');
    await closeAll();
    return 0;
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/** The first admin, made on the demo's first run; null when the fleet has users already. */
async function firstAdmin(fleetDir: string): Promise<{ username: string; password: string } | null> {
  try {
    return await createFirstAdmin(fleetDir, 'admin');
  } catch (err) {
    if (isOspreyError(err, 'OSP_ERR_CONFLICT')) return null;
    throw err;
  }
}

/**
 * The demo's publisher key pair (as `osprey model keygen` makes one): outside the fleet's data
 * directory, because the fleet never holds a publisher's private key.
 */
async function demoPublisherKey(dir: string): Promise<{ id: string; privateKeyFile: string; publicKeyFile: string }> {
  const id = 'demo-publisher';
  const privateKeyFile = join(dir, `${id}.key`);
  const publicKeyFile = join(dir, `${id}.pub`);
  const existing = await readFile(publicKeyFile, 'utf8').catch(() => null);
  if (existing === null) {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keys = generateSigningKeys();
    await writeFile(privateKeyFile, keys.privateKeyPem, { mode: 0o600 });
    await writeFile(publicKeyFile, keys.publicKeyPem, { mode: 0o644 });
  }
  return { id, privateKeyFile, publicKeyFile };
}

/**
 * What the demo's admin makes, in one visit to the fleet's identity store: a one-time enrollment
 * token per edge (as `POST /api/enrollment-tokens` makes them) and a viewer token, valid a day,
 * for the demo's own status lines.
 */
async function demoTokens(fleetDir: string, edgeIds: readonly string[]): Promise<{ statsToken: string; enrollment: Map<string, string> }> {
  const identity = await openFleetIdentity(fleetDir);
  try {
    const admin = (await identity.listUsers()).find((u) => u.role === 'admin' && !u.disabled);
    if (!admin) throw new OspreyError('OSP_ERR_CONFIG', `the fleet in ${fleetDir} has no enabled admin`);
    const statsToken = (await identity.createApiToken({ userId: admin.id, name: 'osprey demo status', role: 'viewer', expiresAt: Date.now() + 86_400_000 })).token;
    const enrollment = new Map<string, string>();
    for (const edgeId of edgeIds) {
      enrollment.set(edgeId, (await identity.createEnrollmentToken({ edgeId, line: null, ttlMs: 10 * 60_000, createdBy: 'cli' })).token);
    }
    return { statsToken, enrollment };
  } finally {
    await identity.close();
  }
}

/** One line per production line from the fleet's own stats API. */
async function printStatus(httpUrl: string, token: string): Promise<void> {
  const parts: string[] = [];
  for (const line of ['line-A', 'line-B']) {
    const res = await request(`${httpUrl}/api/lines/${line}/stats?bucket=1h`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.body.json()) as { totals?: { total: number; defect: number; defectRate: number } };
    const t = body.totals;
    if (t) parts.push(`${line}: ${t.total} inspected, ${t.defect} defects (${(t.defectRate * 100).toFixed(1)} %)`);
  }
  if (parts.length) console.log(`osprey demo: ${parts.join(' | ')}`);
}
