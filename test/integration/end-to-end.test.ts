/**
 * The whole path with every real part: a fleet manager (Fastify + SQLite + embedded aedes, or
 * Mosquitto as an independent broker) and two edge agents run as separate `osprey edge start`
 * processes; frames go in through the hot folder and POST /inspect; the fleet's per-line
 * statistics must equal exactly what the edges stored.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import pino from 'pino';
import { request } from 'undici';
import { createFleetManager } from '../../fleet-manager/fleet-manager.js';
import { resolveFleetConfig } from '../../fleet-manager/config.js';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { decodeMessage } from '../../protocol/validator.js';
import { startOsprey, type OspreyProcess } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';
import { mosquittoSkip, startMosquitto } from '../helpers/mosquitto.js';
import { openTestIdentity } from '../helpers/identity.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';

interface EdgeRow {
  seq: number;
  verdict: string;
  label: string;
  model: string;
}

test('frames at two edges become exact per-line statistics at the fleet (embedded aedes)', { timeout: 120_000 }, (t) => framesToStatistics(t));

// The same run with an independent broker: the fleet manager is one more MQTT client of Mosquitto.
test('frames at two edges become exact per-line statistics at the fleet (Mosquitto)', { timeout: 120_000, skip: mosquittoSkip() }, async (t) => {
  const broker = await startMosquitto();
  t.after(() => broker.close());
  const pid = broker.pid;
  await framesToStatistics(t, broker.url);
  // The whole run talked to the broker it started: none died and came back in between.
  broker.assertSameBroker({ generation: 1, pid });
});

async function framesToStatistics(t: TestContext, brokerUrl?: string): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'osprey-e2e-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const modelDir = await ensureDemoModel(join(root, 'models'));

  const fleet = createFleetManager({
    ...resolveFleetConfig({
      dataDir: join(root, 'fleet'),
      http: { host: '127.0.0.1', port: 0 },
      mqtt: { host: '127.0.0.1', port: 0 },
      ...(brokerUrl ? { brokerUrl } : {}),
    }),
    logger: pino({ level: 'silent' }),
  });
  const { httpUrl, mqttUrl } = await fleet.start();
  t.after(() => fleet.close());
  // People read the fleet with an admin's API token; each edge has its own enrolled credential.
  const creds = openTestIdentity(t, join(root, 'fleet', 'fleet.db'));
  const headers = await creds.headers('admin');

  // An observer on the broker: acks are events we can await instead of sleeping.
  const observer = await mqtt.connectAsync(mqttUrl, { clientId: `test-observer-${process.pid}` });
  t.after(() => observer.endAsync());
  const acked = new Map<string, number>();
  const ackWaiters: (() => void)[] = [];
  observer.on('message', (topic, payload) => {
    const m = decodeMessage('ack', payload);
    if (m.ok) acked.set(m.value.edgeId, Math.max(acked.get(m.value.edgeId) ?? 0, m.value.ackSeq));
    for (const w of ackWaiters.splice(0)) w();
  });
  await observer.subscribeAsync('osprey/v1/edges/+/ack', { qos: 1 });
  const ackReached = (edgeId: string, seq: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ack ${seq} for ${edgeId}; last ${acked.get(edgeId) ?? 0}`)), 30_000);
      const check = () => {
        if ((acked.get(edgeId) ?? 0) >= seq) {
          clearTimeout(timer);
          resolve();
        } else ackWaiters.push(check);
      };
      check();
    });

  const edges = [
    { id: 'press-1', line: 'line-A' },
    { id: 'press-2', line: 'line-B' },
  ];
  const procs = new Map<string, { proc: OspreyProcess; httpUrl: string; inbox: string; dataDir: string }>();
  for (const e of edges) {
    const dataDir = join(root, e.id);
    const inbox = join(dataDir, 'inbox');
    await mkdir(inbox, { recursive: true });
    const configFile = join(root, `${e.id}.json`);
    await writeFile(
      configFile,
      JSON.stringify({
        edgeId: e.id,
        line: e.line,
        cameras: ['cam1', 'cam2'],
        dataDir,
        inputDir: inbox,
        hotFolder: { settleMs: 20, rescanMs: 200 },
        http: { host: '127.0.0.1', port: 0 },
        fleet: { mqttUrl, httpUrl, credentialFile: await enrolledCredentialFile(creds, e.id, join(dataDir, 'fleet.credential')) },
        model: { dir: modelDir },
        sync: { batchSize: 7, intervalMs: 100 },
        telemetry: { intervalMs: 500 },
      }),
    );
    const proc = startOsprey(['edge', 'start', '--config', configFile]);
    t.after(() => proc.stop('SIGKILL'));
    const started = await proc.waitForLine((l) => l.msg === 'edge agent started');
    procs.set(e.id, { proc, httpUrl: String(started.httpUrl), inbox, dataDir });
  }

  // Frames: per edge 6 through the hot folder and 6 through POST /inspect, a third defective.
  const defects = ['scratch', 'spot', 'dent', 'missing'] as const;
  let seed = 500;
  const httpVerdicts = new Map<string, Map<number, string>>();
  for (const e of edges) {
    const p = procs.get(e.id)!;
    const verdicts = new Map<number, string>();
    for (let i = 0; i < 6; i++) {
      const defect = i % 3 === 2 ? defects[i % 4]! : null;
      const bytes = await generatePartImage({ seed: seed++, defect, format: 'jpeg' });
      const tmp = join(p.inbox, `.frame-${i}.part`);
      await writeFile(tmp, bytes);
      await rename(tmp, join(p.inbox, `frame-${i}.jpg`));
    }
    for (let i = 0; i < 6; i++) {
      const defect = i % 3 === 1 ? defects[(i + 1) % 4]! : null;
      const bytes = await generatePartImage({ seed: seed++, defect, format: i % 2 ? 'png' : 'jpeg' });
      const res = await request(`${p.httpUrl}/inspect?camera=cam2`, {
        method: 'POST',
        body: bytes,
        headers: { 'content-type': i % 2 ? 'image/png' : 'image/jpeg' },
      });
      const body = (await res.body.json()) as { verdict: string; seq: number; model: string };
      assert.equal(res.statusCode, 200);
      assert.ok(body.seq >= 1);
      verdicts.set(body.seq, body.verdict);
    }
    httpVerdicts.set(e.id, verdicts);
  }

  // The hot folders empty into done/, then every edge's 12 results are acked by the fleet.
  for (const e of edges) {
    const p = procs.get(e.id)!;
    await waitFor(async () => (await readdir(join(p.inbox, 'done')).catch(() => [])).length === 6, `${e.id} hot folder done`);
    assert.deepEqual(await readdir(join(p.inbox, 'failed')).catch(() => []), []);
    await ackReached(e.id, 12);
  }

  // What the edges produced, read from their own SQLite files.
  const produced = new Map<string, EdgeRow[]>();
  for (const e of edges) {
    const db = new Database(join(procs.get(e.id)!.dataDir, 'results.db'), { readonly: true, fileMustExist: true });
    produced.set(e.id, db.prepare('SELECT seq, verdict, label, model FROM results ORDER BY seq').all() as EdgeRow[]);
    db.close();
    assert.deepEqual(produced.get(e.id)!.map((r) => r.seq), Array.from({ length: 12 }, (_, i) => i + 1));
    // Each HTTP answer is the verdict stored under its seq.
    const stored = produced.get(e.id)!;
    for (const [seq, verdict] of httpVerdicts.get(e.id)!) assert.equal(stored[seq - 1]!.verdict, verdict, `${e.id} seq ${seq}`);
  }
  // The built-in model finds the defects it was shown (4 per edge).
  for (const e of edges) assert.equal(produced.get(e.id)!.filter((r) => r.verdict === 'defect').length, 4, `${e.id} defect count`);

  // The fleet's per-line statistics equal exactly what each line's edge stored.
  for (const e of edges) {
    const rows = produced.get(e.id)!;
    const res = await request(`${httpUrl}/api/lines/${e.line}/stats?from=0&bucket=1d`, { headers });
    assert.equal(res.statusCode, 200);
    const stats = (await res.body.json()) as { totals: { total: number; ok: number; defect: number; defectRate: number; byLabel: Record<string, number> } };
    const labels: Record<string, number> = {};
    for (const r of rows) labels[r.label] = (labels[r.label] ?? 0) + 1;
    assert.equal(stats.totals.total, rows.length);
    assert.equal(stats.totals.defect, rows.filter((r) => r.verdict === 'defect').length);
    assert.equal(stats.totals.ok, rows.filter((r) => r.verdict === 'ok').length);
    assert.deepEqual(stats.totals.byLabel, labels);
    assert.equal(stats.totals.defectRate, 4 / 12);

    const csv = await request(`${httpUrl}/api/lines/${e.line}/stats?from=0&bucket=1d&format=csv`, { headers });
    assert.match(String(csv.headers['content-type']), /text\/csv/);
    const text = await csv.body.text();
    assert.ok(text.split('\n')[0]!.includes('defect_rate'));
  }

  // The edges appear in the fleet's list with their lines.
  const list = (await (await request(`${httpUrl}/api/edges`, { headers })).body.json()) as { edges: { id: string; line: string }[] };
  assert.deepEqual(list.edges.map((e) => [e.id, e.line]).sort(), edges.map((e) => [e.id, e.line]).sort());

  // Graceful shutdown on SIGTERM: exit code 0.
  for (const e of edges) assert.equal(await procs.get(e.id)!.proc.stop('SIGTERM'), 0);
}
