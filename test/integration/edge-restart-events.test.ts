/**
 * Events an edge raises while it starts reach the fleet (issue 13): a real fleet manager with its
 * embedded broker, a real edge agent that runs a version rolled out to it, then restarts. The
 * restored activation, and a refusal raised while restoring a damaged package, are raised before
 * the fleet link has connected; the link keeps them and sends them once it is up.
 */
import { before, after, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { pino } from 'pino';
import { createFleetManager, type FleetManager } from '../../fleet-manager/fleet-manager.js';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { archiveDirectory } from '../../models/package-archive.js';
import { fitBuiltinAnomalyModel } from '../../models/authoring.js';
import { DEMO_MODEL_NAME, ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { edgeConfig, testLogger } from '../edge-agent/fixtures.js';
import { openSqliteIdentityStore, type IdentityStore } from '../../fleet-manager/identity-store.js';
import { credentialsFor, type TestIdentity } from '../helpers/identity.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { signedDirectoryArchive, testPublisherKey } from '../helpers/publisher.js';

const NAME = DEMO_MODEL_NAME;

interface LogLine {
  msg?: string;
  edgeId?: string;
  kind?: string;
  message?: string;
}

/** The fleet's log lines, awaitable: `edge event` is logged once ingest has stored an event. */
function fleetLog() {
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const text of chunk.toString().split('\n')) {
        if (text.trim() === '') continue;
        lines.push(JSON.parse(text) as LogLine);
      }
      for (const w of [...waiters]) w();
      done();
    },
  });
  return {
    logger: pino({ level: 'info' }, stream),
    get count() {
      return lines.length;
    },
    /** The first event of `kind` from `edgeId` that the fleet stored at or after line `from`. */
    waitEvent(edgeId: string, kind: string, from: number, timeoutMs = 30_000): Promise<LogLine> {
      const find = () => lines.slice(from).find((l) => l.msg === 'edge event' && l.edgeId === edgeId && l.kind === kind);
      return new Promise((resolve, reject) => {
        const check = () => {
          const hit = find();
          if (!hit) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(hit);
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`the fleet got no ${kind} event from ${edgeId} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
  };
}

let root: string;
let fleet: FleetManager;
let urls: { httpUrl: string; mqttUrl: string };
let log: ReturnType<typeof fleetLog>;
let localDir: string;
let v2: { sha256: string };
let publicKey: string;
let identity: IdentityStore;
let creds: TestIdentity;
let admin: { authorization: string };
/** Each edge's credential file, enrolled on first use. */
const credentialFiles = new Map<string, Promise<string>>();

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'osprey-restart-events-'));
  localDir = await ensureDemoModel(join(root, 'models'));
  const train = await Promise.all(Array.from({ length: 12 }, (_, i) => generatePartImage({ seed: 1 + i })));
  const v2Dir = join(root, 'models', 'v2');
  await fitBuiltinAnomalyModel(train, v2Dir, { name: NAME, version: '2.0.0', width: 64, height: 64 });
  log = fleetLog();
  const local = { host: '127.0.0.1', port: 0 };
  fleet = createFleetManager({ dataDir: join(root, 'fleet'), http: local, mqtt: local, rollouts: { tickMs: 100 }, registry: { publisherKeys: [testPublisherKey()] }, logger: log.logger });
  urls = await fleet.start();
  identity = openSqliteIdentityStore({ file: join(root, 'fleet', 'fleet.db'), logger: pino({ level: 'silent' }) });
  creds = credentialsFor(identity);
  admin = await creds.headers('admin');
  const res = await fetch(`${urls.httpUrl}/api/models/${NAME}/versions`, {
    method: 'POST',
    body: await signedDirectoryArchive(v2Dir),
    headers: { ...admin, 'content-type': 'application/x-tar' },
  });
  assert.equal(res.status, 201);
  v2 = (await res.json()) as { sha256: string };
  publicKey = await (await fetch(`${urls.httpUrl}/api/fleet/public-key`, { headers: admin })).text();
});

after(async () => {
  await fleet?.close();
  await identity?.close();
  await rm(root, { recursive: true, force: true });
});

/** An in-process edge agent on the fleet; closed after the test if still running. */
async function edgeAgent(t: TestContext, edgeId: string): Promise<EdgeAgent> {
  if (!credentialFiles.has(edgeId)) credentialFiles.set(edgeId, enrolledCredentialFile(creds, edgeId, join(root, `${edgeId}.credential`)));
  const config = edgeConfig(join(root, edgeId), localDir, {
    edgeId,
    fleet: { mqttUrl: urls.mqttUrl, httpUrl: urls.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await credentialFiles.get(edgeId)! },
  });
  const agent = createEdgeAgent(config, { logger: testLogger(), listen: false, reconnectPeriodMs: 200, finalSyncMs: 0 });
  t.after(() => agent.close());
  return agent;
}

/** Starts an edge and rolls v2 out to it; resolves once the fleet stored its activation. */
async function edgeRunningV2(t: TestContext, edgeId: string): Promise<EdgeAgent> {
  const agent = await edgeAgent(t, edgeId);
  const from = log.count;
  await agent.start();
  const res = await fetch(`${urls.httpUrl}/api/rollouts`, {
    method: 'POST',
    body: JSON.stringify({ model: NAME, version: '2.0.0', target: { edges: [edgeId] }, stages: [{ mode: 'live' }] }),
    headers: { ...admin, 'content-type': 'application/json' },
  });
  assert.equal(res.status, 201, await res.text());
  const ev = await log.waitEvent(edgeId, 'model-activated', from);
  assert.match(ev.message ?? '', /@2\.0\.0 active/);
  await agent.models!.idle();
  await agent.close();
  return agent;
}

/** The stored events of an edge, read from the fleet's database after the fleet logged them. */
function storedEvents(edgeId: string, kind: string): { message: string; data: Record<string, unknown> }[] {
  const db = new Database(join(root, 'fleet', 'fleet.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT message, data FROM events WHERE edge_id = ? AND kind = ? ORDER BY rowid').all(edgeId, kind) as { message: string; data: string | null }[];
    return rows.map((r) => ({ message: r.message, data: r.data ? (JSON.parse(r.data) as Record<string, unknown>) : {} }));
  } finally {
    db.close();
  }
}

test('a restarted edge reports the version it restored to the fleet', { timeout: 120_000 }, async (t) => {
  await edgeRunningV2(t, 'restart-1');
  const from = log.count;
  const again = await edgeAgent(t, 'restart-1');
  await again.start();
  // Raised by the model manager's start, before the fleet link was even started.
  const ev = await log.waitEvent('restart-1', 'model-activated', from);
  assert.match(ev.message ?? '', /@2\.0\.0 active/);
  const stored = storedEvents('restart-1', 'model-activated');
  assert.equal(stored.length, 2, JSON.stringify(stored));
  assert.equal(stored[1]!.data.restored, true);
  assert.equal(stored[1]!.data.sha256, v2.sha256);
});

test('a model refused while an edge restores it is reported to the fleet', { timeout: 120_000 }, async (t) => {
  await edgeRunningV2(t, 'restart-2');
  // The cached copy of the active version is damaged while the edge is down.
  await writeFile(join(root, 'restart-2', 'data', 'models', v2.sha256, 'model.onnx'), 'not an ONNX model any more');
  const from = log.count;
  const again = await edgeAgent(t, 'restart-2');
  await again.start();
  const ev = await log.waitEvent('restart-2', 'model-failed', from);
  assert.match(ev.message ?? '', /@2\.0\.0 refused/);
  const stored = storedEvents('restart-2', 'model-failed');
  assert.equal(stored.length, 1, JSON.stringify(stored));
  assert.equal(stored[0]!.data.sha256, v2.sha256);
  assert.equal(stored[0]!.data.role, 'active');
  // The edge went on with its own model.
  const own = JSON.parse(await readFile(join(localDir, 'manifest.json'), 'utf8')) as { name: string; version: string };
  assert.deepEqual(again.models!.state().active, { name: own.name, version: own.version });
});
