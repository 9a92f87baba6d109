/**
 * A small plant for fault trials: a fleet manager and edge agents as real `osprey` processes,
 * TCP proxies on every link an edge uses (MQTT to the broker, HTTP to the fleet) and on the
 * fleet's own link to an external broker, a load generator posting frames to every edge, and the
 * checks that must hold after any sequence of faults:
 *
 * - every SQLite file is intact after each crash (PRAGMA integrity_check);
 * - every result the edges produced (wiped stores included) is at the fleet once, with the same
 *   line, verdict and label: `lost` and `duplicated` must be 0, and the fleet holds no result
 *   that no edge produced;
 * - the one allowed loss: a wiped disk takes with it the results its edge answered after the
 *   last ack it recorded. Those are counted per trial (`lostWithWipe`, with their seqs), never
 *   silently dropped from the check; an acked result missing at the fleet is `lost`;
 * - every verdict the line was answered is stored under the seq it was given;
 * - per-line statistics at the fleet equal counts over the results at the fleet;
 * - every kept image reached the fleet and belongs to a produced result;
 * - verdicts kept flowing through every outage that did not kill the edge itself;
 * - an external broker is the process the world started or restarted, never one that died by
 *   itself in between.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { request } from 'undici';
import { startOsprey, type OspreyProcess } from '../helpers/osprey-process.js';
import { startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';
import { credentialsFor, type TestIdentity } from '../helpers/identity.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { openSqliteIdentityStore } from '../../fleet-manager/identity-store.js';
import { writeBrokerConfig } from '../../cli/broker-config.js';
import { pino } from 'pino';
import { waitFor } from '../helpers/wait-for.js';
import type { Prng } from './prng.js';
import { accountResults, type ResultCounts, type ResultRow, type WipedStore } from './result-accounting.js';
import { startTcpProxy, type TcpProxy } from '../../simulator/tcp-proxy.js';

export type BrokerKind = 'aedes' | 'mosquitto';

export type FaultKind =
  | 'cut-mqtt'
  | 'stall-mqtt'
  | 'delay-mqtt'
  | 'flap-mqtt'
  | 'cut-http'
  | 'stall-http'
  | 'cut-fleet-broker-link'
  | 'kill-edge'
  | 'kill-fleet'
  | 'restart-broker'
  | 'wipe-edge';

/** Faults after which the line must have kept getting verdicts from every edge. */
const NETWORK_FAULTS: readonly FaultKind[] = ['cut-mqtt', 'stall-mqtt', 'delay-mqtt', 'flap-mqtt', 'cut-http', 'stall-http', 'cut-fleet-broker-link'];

export interface EdgeSpec {
  id: string;
  line: string;
}

interface EdgeProc {
  spec: EdgeSpec;
  dataDir: string;
  configFile: string;
  proc?: OspreyProcess;
  httpUrl: string;
  storeId: string | undefined;
  up: boolean;
  upWaiters: (() => void)[];
}

/** A trial's checks failed: the message names every violation found. */
export class TrialCheckError extends Error {
  override readonly name = 'TrialCheckError';
}

export interface StepReport {
  fault: FaultKind;
  target?: string;
  ms: number;
  /** Verdicts answered per edge while the fault lasted (network and fleet faults). */
  answered?: Record<string, number>;
}

export interface TrialFigures {
  counts: ResultCounts;
  framesAnswered: number;
  results: number;
  images: number;
  stores: number;
  integrityChecks: number;
  latencyMs: { p50: number; p99: number; max: number };
}

export interface WorldOptions {
  root: string;
  modelDir: string;
  broker: BrokerKind;
  edges: EdgeSpec[];
  /** Encoded frames the load generator cycles through. */
  frames: Buffer[];
  /** Frames per second per edge. */
  rate: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : 0);

/** Opens a SQLite file (the process that wrote it is dead or still running) and checks it. */
function integrityCheck(file: string): void {
  const db = new Database(file, { fileMustExist: true });
  try {
    const result = db.pragma('integrity_check', { simple: true });
    assert.equal(result, 'ok', `integrity_check of ${file}`);
  } finally {
    db.close();
  }
}

/** Builds, runs faults on, and checks one plant. */
export class World {
  private readonly opts: WorldOptions;
  private mosquitto: Mosquitto | undefined;
  private brokerProxy: TcpProxy | undefined;
  private edgeMqttProxy!: TcpProxy;
  private httpProxy!: TcpProxy;
  private fleet: OspreyProcess | undefined;
  private fleetHttpUrl = '';
  private readonly fleetDir: string;
  private readonly fleetConfig: string;
  private readonly edges = new Map<string, EdgeProc>();
  /** Edge enrollment and the fleet API token, on the fleet's database. */
  private creds: TestIdentity | undefined;
  /** Stores that were wiped, read just after the kill that preceded the wipe. */
  private readonly wiped: WipedStore[] = [];
  /** The external broker the world expects: its generation and pid after the last restart it asked for. */
  private brokerExpected: { generation: number; pid?: number } | undefined;
  /** Verdicts the line was answered, by `edge/store/seq`. */
  private readonly answers = new Map<string, string>();
  private readonly latencies: number[] = [];
  private readonly answeredAt: { edge: string; at: number }[] = [];
  /** Resolved at the next verdict answered by an edge, by edge id. */
  private readonly answerWaiters = new Map<string, (() => void)[]>();
  private readonly unexpectedFailures: string[] = [];
  private loadRunning = false;
  private loadLoops: Promise<void>[] = [];
  private integrityChecks = 0;
  /** The exactly-once counts of the last verify(), kept when a later check throws. */
  counts: ResultCounts | undefined;
  private storesSeen = new Set<string>();

  constructor(opts: WorldOptions) {
    this.opts = opts;
    this.fleetDir = join(opts.root, 'fleet');
    this.fleetConfig = join(opts.root, 'fleet.json');
  }

  async start(): Promise<void> {
    const { opts } = this;
    this.edgeMqttProxy = await startTcpProxy(1);
    this.httpProxy = await startTcpProxy(1);
    const fleetConfig: Record<string, unknown> = {
      dataDir: this.fleetDir,
      http: { host: '127.0.0.1', port: 0 },
      mqtt: { host: '127.0.0.1', port: 0 },
      logLevel: 'info',
    };
    // Every edge is enrolled before anything starts: Mosquitto reads its password file at start.
    await mkdir(this.fleetDir, { recursive: true });
    this.creds = credentialsFor(openSqliteIdentityStore({ file: join(this.fleetDir, 'fleet.db'), logger: pino({ level: 'silent' }) }));
    for (const spec of opts.edges) await enrolledCredentialFile(this.creds, spec.id, this.credentialFile(spec.id));
    if (opts.broker === 'mosquitto') {
      // Configured as `osprey fleet broker-config` says; the fleet reads its password from fleetDir/keys.
      const files = await writeBrokerConfig(this.fleetDir, join(opts.root, 'mosquitto'));
      this.mosquitto = await startMosquitto({ accessConfig: await readFile(files.confFile, 'utf8') });
      this.brokerExpected = { generation: this.mosquitto.generation, pid: this.mosquitto.pid };
      this.brokerProxy = await startTcpProxy(this.mosquitto.port);
      this.edgeMqttProxy.setTarget(this.mosquitto.port);
    }
    await writeFile(this.fleetConfig, JSON.stringify(fleetConfig));
    await this.startFleet();
    await Promise.all(opts.edges.map((spec) => this.addEdge(spec)));
  }

  private async startFleet(): Promise<void> {
    const args = ['fleet', 'start', '--config', this.fleetConfig];
    // The fleet manager is a client of the external broker, through its own proxy.
    if (this.brokerProxy) args.push('--broker', `mqtt://127.0.0.1:${this.brokerProxy.port}`);
    const proc = startOsprey(args);
    const line = await proc.waitForLine((l) => l.msg === 'fleet manager started' && typeof l.httpUrl === 'string', 30_000);
    this.fleet = proc;
    this.fleetHttpUrl = String(line.httpUrl);
    this.httpProxy.setTarget(Number(new URL(this.fleetHttpUrl).port));
    if (!this.mosquitto) this.edgeMqttProxy.setTarget(Number(new URL(String(line.mqttUrl)).port));
  }

  /** Outside the edge's data dir: a wiped disk does not take the enrollment with it. */
  private credentialFile(edgeId: string): string {
    return join(this.opts.root, `${edgeId}.credential`);
  }

  private async addEdge(spec: EdgeSpec): Promise<void> {
    const dataDir = join(this.opts.root, spec.id);
    const configFile = join(this.opts.root, `${spec.id}.json`);
    const edge: EdgeProc = { spec, dataDir, configFile, httpUrl: '', storeId: undefined, up: false, upWaiters: [] };
    // Registered before any await: the map's order (specs' order) is what prng.pick() draws
    // from, so a seed picks the same edges on every replay.
    this.edges.set(spec.id, edge);
    await mkdir(dataDir, { recursive: true });
    await writeFile(
      configFile,
      JSON.stringify({
        edgeId: spec.id,
        line: spec.line,
        dataDir,
        http: { host: '127.0.0.1', port: 0 },
        fleet: {
          mqttUrl: `mqtt://127.0.0.1:${this.edgeMqttProxy.port}`,
          httpUrl: `http://127.0.0.1:${this.httpProxy.port}`,
          credentialFile: this.credentialFile(spec.id),
        },
        model: { dir: this.opts.modelDir },
        sync: { batchSize: 50, window: 2, intervalMs: 200, ackTimeoutMs: 1000 },
        telemetry: { intervalMs: 1000 },
        images: { retryBaseMs: 50, retryMaxMs: 300, timeoutMs: 1000, sampling: { uncertainBand: 0.02 } },
        logLevel: 'info',
      }),
    );
    await this.startEdge(edge);
  }

  private async startEdge(edge: EdgeProc): Promise<void> {
    const proc = startOsprey(['edge', 'start', '--config', edge.configFile]);
    const line = await proc.waitForLine((l) => l.msg === 'edge agent started' && typeof l.httpUrl === 'string', 30_000);
    edge.proc = proc;
    edge.httpUrl = String(line.httpUrl);
    const health = await this.edgeHealth(edge);
    edge.storeId = health.storeId ?? undefined;
    this.storesSeen.add(`${edge.spec.id}/${edge.storeId}`);
    edge.up = true;
    for (const w of edge.upWaiters.splice(0)) w();
  }

  private async edgeHealth(edge: EdgeProc): Promise<{ lastSeq: number; ackedSeq: number; storeId?: string | null; storage?: { imagesPending: number } }> {
    const res = await request(`${edge.httpUrl}/health`);
    return (await res.body.json()) as { lastSeq: number; ackedSeq: number; storeId?: string | null; storage?: { imagesPending: number } };
  }

  private async killEdge(edge: EdgeProc): Promise<void> {
    edge.up = false;
    const proc = edge.proc!;
    proc.child.kill('SIGKILL');
    await proc.exited;
    integrityCheck(join(edge.dataDir, 'results.db'));
    this.integrityChecks++;
  }

  private async killFleet(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    const proc = this.fleet!;
    proc.child.kill(signal);
    await proc.exited;
    integrityCheck(join(this.fleetDir, 'fleet.db'));
    this.integrityChecks++;
  }

  /** Starts one load loop per edge: frames go straight to the edge (the line is not behind a proxy). */
  startLoad(prng: Prng): void {
    this.loadRunning = true;
    const gapMs = 1000 / this.opts.rate;
    for (const edge of this.edges.values()) {
      let i = prng.int(0, this.opts.frames.length - 1);
      this.loadLoops.push(
        (async () => {
          while (this.loadRunning) {
            if (!edge.up) {
              await new Promise<void>((resolve) => edge.upWaiters.push(resolve));
              continue;
            }
            const frame = this.opts.frames[i++ % this.opts.frames.length]!;
            const storeId = edge.storeId;
            const t0 = performance.now();
            try {
              const res = await request(`${edge.httpUrl}/inspect`, {
                method: 'POST',
                body: frame,
                headers: { 'content-type': 'image/jpeg' },
                headersTimeout: 10_000,
              });
              const body = (await res.body.json()) as { seq?: number; verdict?: string; error?: string };
              if (res.statusCode === 200 && body.seq !== undefined && body.seq > 0) {
                this.answers.set(`${edge.spec.id}/${storeId}/${body.seq}`, body.verdict!);
                this.latencies.push(performance.now() - t0);
                this.answeredAt.push({ edge: edge.spec.id, at: Date.now() });
                for (const w of this.answerWaiters.get(edge.spec.id)?.splice(0) ?? []) w();
              } else if (edge.up) this.unexpectedFailures.push(`${edge.spec.id}: HTTP ${res.statusCode} ${body.error ?? ''} seq ${body.seq}`);
            } catch (err) {
              // A request cut by kill -9 of its own edge is expected; any other is a failure.
              if (edge.up) this.unexpectedFailures.push(`${edge.spec.id}: ${(err as Error).message}`);
            }
            const spent = performance.now() - t0;
            if (spent < gapMs) await delay(gapMs - spent);
          }
        })(),
      );
    }
  }

  async stopLoad(): Promise<void> {
    this.loadRunning = false;
    for (const e of this.edges.values()) for (const w of e.upWaiters.splice(0)) w();
    await Promise.all(this.loadLoops);
    this.loadLoops = [];
  }

  /** Applies one fault for about `ms`, then heals it. */
  async fault(kind: FaultKind, prng: Prng, ms: number): Promise<StepReport> {
    const edgeList = [...this.edges.values()];
    const step: StepReport = { fault: kind, ms };
    const from = Date.now();
    switch (kind) {
      case 'cut-mqtt':
        this.edgeMqttProxy.cut();
        await delay(ms);
        this.edgeMqttProxy.restore();
        break;
      case 'stall-mqtt':
        this.edgeMqttProxy.stall();
        await delay(ms);
        this.edgeMqttProxy.restore();
        break;
      case 'delay-mqtt':
        this.edgeMqttProxy.delay(prng.int(20, 150));
        await delay(ms);
        this.edgeMqttProxy.restore();
        break;
      case 'flap-mqtt':
        this.edgeMqttProxy.flap(prng.int(100, 300), prng.int(50, 200));
        await delay(ms);
        this.edgeMqttProxy.restore();
        break;
      case 'cut-http':
        this.httpProxy.cut();
        await delay(ms);
        this.httpProxy.restore();
        break;
      case 'stall-http':
        this.httpProxy.stall();
        await delay(ms);
        this.httpProxy.restore();
        break;
      case 'cut-fleet-broker-link':
        // Only with an external broker: the fleet manager loses the broker, edges do not.
        this.brokerProxy!.cut();
        await delay(ms);
        this.brokerProxy!.restore();
        break;
      case 'kill-edge': {
        const edge = prng.pick(edgeList);
        step.target = edge.spec.id;
        await delay(ms); // a random moment under load
        await this.killEdge(edge);
        await this.startEdge(edge);
        break;
      }
      case 'kill-fleet':
        await delay(ms);
        await this.killFleet('SIGKILL');
        await this.startFleet();
        break;
      case 'restart-broker':
        if (this.mosquitto) {
          await delay(ms);
          await this.mosquitto.stop(prng.next() < 0.5);
          await this.mosquitto.restart();
          this.brokerExpected = { generation: this.mosquitto.generation, pid: this.mosquitto.pid };
          this.brokerProxy!.setTarget(this.mosquitto.port);
          this.edgeMqttProxy.setTarget(this.mosquitto.port);
        } else {
          // The embedded broker lives in the fleet manager: restarting it restarts the fleet (cleanly).
          await delay(ms);
          await this.killFleet('SIGTERM');
          await this.startFleet();
        }
        break;
      case 'wipe-edge': {
        const edge = prng.pick(edgeList);
        step.target = edge.spec.id;
        // The disk dies after everything was delivered once, while the line keeps sending
        // frames: what was answered after the last ack dies with it (counted in verify()), and
        // the new store's seqs start at 1 again.
        await this.waitSynced([edge]);
        // At least one verdict past the sync, so every wipe has an unacked tail to account for.
        await this.nextAnswer(edge, 10_000);
        await this.killEdge(edge);
        this.wiped.push(this.readEdgeStore(edge));
        for (const f of ['results.db', 'results.db-wal', 'results.db-shm']) await rm(join(edge.dataDir, f), { force: true });
        await this.startEdge(edge);
        break;
      }
    }
    if (NETWORK_FAULTS.includes(kind) || kind === 'kill-fleet' || kind === 'restart-broker') {
      const to = Date.now();
      step.answered = {};
      for (const e of edgeList) step.answered[e.spec.id] = this.answeredAt.filter((a) => a.edge === e.spec.id && a.at >= from && a.at <= to).length;
    }
    return step;
  }

  /** Why the external broker is not the one the world expects (it died by itself), if it is not. */
  brokerProblem(): string | undefined {
    if (!this.mosquitto || !this.brokerExpected) return undefined;
    try {
      this.mosquitto.assertSameBroker(this.brokerExpected);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  }

  /** Resolves when `edge` answers its next frame (the load must be running). */
  private async nextAnswer(edge: EdgeProc, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        new Promise<void>((resolve) => {
          const list = this.answerWaiters.get(edge.spec.id) ?? [];
          list.push(resolve);
          this.answerWaiters.set(edge.spec.id, list);
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${edge.spec.id} answered no frame within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Waits until every result and image of `edges` is acknowledged by the fleet. */
  async waitSynced(edges = [...this.edges.values()], timeoutMs = 60_000): Promise<void> {
    for (const edge of edges) {
      let last = 'no health answer';
      try {
        await waitFor(
          async () => {
            const h = await this.edgeHealth(edge);
            // The disk too: health counts pending images in memory, and an image whose write was
            // still in flight (kept after its verdict was answered) is on disk before it is counted.
            const files = await this.pendingImages(edge);
            last = `acked ${h.ackedSeq} of ${h.lastSeq}, images pending ${h.storage?.imagesPending ?? 0}, pending files ${files.length}${files.length ? ` (${files.slice(0, 3).join(', ')})` : ''}`;
            return h.ackedSeq === h.lastSeq && (h.storage?.imagesPending ?? 0) === 0 && files.length === 0;
          },
          `${edge.spec.id} fully synced`,
          timeoutMs,
          50,
        );
      } catch (err) {
        // What was left, and what the edge and the fleet last complained of: a failed trial must say why.
        const complaints = (p: OspreyProcess | undefined) =>
          (p?.lines ?? [])
            .filter((l) => typeof l.level === 'number' && l.level >= 40)
            .slice(-4)
            .map((l) => [l.msg, l.status, l.code, l.reason ?? l.body].filter((v) => v !== undefined).join(' '))
            .join(' | ') || 'none';
        throw new Error(`${(err as Error).message} (${last}; edge warnings: ${complaints(edge.proc)}; fleet warnings: ${complaints(this.fleet)})`);
      }
    }
  }

  /** Files in any `images/<store>/pending` folder of `edge`, as `store/name`. */
  private async pendingImages(edge: EdgeProc): Promise<string[]> {
    const dir = join(edge.dataDir, 'images');
    const found: string[] = [];
    for (const store of await readdir(dir).catch(() => [] as string[])) {
      for (const name of await readdir(join(dir, store, 'pending')).catch(() => [] as string[])) found.push(`${store}/${name}`);
    }
    return found;
  }

  private readEdgeStore(edge: EdgeProc): WipedStore {
    const db = new Database(join(edge.dataDir, 'results.db'), { readonly: true, fileMustExist: true });
    try {
      const storeId = db.prepare<[], string>("SELECT value FROM store_info WHERE key = 'store_id'").pluck().get() ?? '';
      const ackedSeq = db.prepare<[], number>("SELECT value FROM meta WHERE key = 'acked_seq'").pluck().get() ?? 0;
      const rows = db.prepare<[], { seq: number; verdict: string; label: string }>('SELECT seq, verdict, label FROM results').all();
      return {
        edge: edge.spec.id,
        storeId,
        ackedSeq,
        rows: rows.map((r) => ({ key: `${edge.spec.id}/${storeId}/${r.seq}`, seq: r.seq, line: edge.spec.line, verdict: r.verdict, label: r.label })),
      };
    } finally {
      db.close();
    }
  }

  /**
   * Every check of a finished trial. Returns the counts and figures for the report; throws
   * (a TrialCheckError naming every violation of exactly-once) when a check fails, with the
   * counts, once computed, left in `counts`.
   */
  async verify(): Promise<TrialFigures> {
    const problems: string[] = [];
    if (this.unexpectedFailures.length) problems.push(`frames sent to a running edge and not answered: ${this.unexpectedFailures.slice(0, 5).join('; ')}`);
    const broker = this.brokerProblem();
    if (broker) problems.push(broker);
    integrityCheck(join(this.fleetDir, 'fleet.db'));
    for (const e of this.edges.values()) integrityCheck(join(e.dataDir, 'results.db'));
    this.integrityChecks += 1 + this.edges.size;

    const live: ResultRow[] = [];
    for (const e of this.edges.values()) live.push(...this.readEdgeStore(e).rows);

    const fleetDb = new Database(join(this.fleetDir, 'fleet.db'), { readonly: true, fileMustExist: true });
    let fleetRows: ResultRow[];
    let imageKeys: string[];
    try {
      fleetRows = fleetDb
        .prepare<[], { edge_id: string; store_id: string; seq: number; line: string; verdict: string; label: string }>(
          'SELECT r.edge_id, s.store_id, r.seq, r.line, r.verdict, r.label FROM results r JOIN edge_stores s ON s.key = r.store_key',
        )
        .all()
        .map((r) => ({ key: `${r.edge_id}/${r.store_id}/${r.seq}`, line: r.line, verdict: r.verdict, label: r.label }));
      imageKeys = fleetDb
        .prepare<[], { k: string }>("SELECT edge_id || '/' || store_id || '/' || seq AS k FROM result_images")
        .all()
        .map((r) => r.k);
    } finally {
      fleetDb.close();
    }

    // Every produced result at the fleet exactly once; nothing invented; the only loss allowed
    // is a wiped disk's unacked tail, and it is counted.
    const { counts, problems: accounting, atFleet, produced } = accountResults(live, this.wiped, fleetRows, this.answers);
    problems.push(...accounting);
    this.counts = counts;
    if (problems.length) throw new TrialCheckError(problems.join('\n'));

    // Statistics per line agree with the results at the fleet (just shown equal to what the
    // edges produced, less the counted wipe losses).
    for (const line of new Set(this.opts.edges.map((e) => e.line))) {
      const rows = [...atFleet.values()].filter((r) => r.line === line);
      const res = await request(`${this.fleetHttpUrl}/api/lines/${line}/stats?from=0&bucket=1d`, { headers: await this.creds!.headers('viewer') });
      const stats = (await res.body.json()) as { totals: { total: number; ok: number; defect: number; byLabel: Record<string, number> } };
      const byLabel: Record<string, number> = {};
      for (const r of rows) byLabel[r.label] = (byLabel[r.label] ?? 0) + 1;
      assert.deepEqual(
        [stats.totals.total, stats.totals.defect, stats.totals.ok, stats.totals.byLabel],
        [rows.length, rows.filter((r) => r.verdict === 'defect').length, rows.filter((r) => r.verdict === 'ok').length, byLabel],
        `statistics of ${line}`,
      );
    }

    // Every kept image reached the fleet, and belongs to a produced result.
    const keptAtEdges: string[] = [];
    for (const e of this.edges.values()) {
      assert.deepEqual(await this.pendingImages(e), [], `${e.spec.id} images pending`);
      const dir = join(e.dataDir, 'images');
      for (const store of await readdir(dir).catch(() => [] as string[])) {
        for (const name of await readdir(join(dir, store, 'sent')).catch(() => [] as string[])) {
          keptAtEdges.push(`${e.spec.id}/${store === 'legacy' ? '' : store}/${Number.parseInt(name, 10)}`);
        }
      }
    }
    const images = new Set(imageKeys);
    for (const k of keptAtEdges) assert.ok(images.has(k), `image ${k} at the fleet`);
    for (const k of imageKeys) assert.ok(produced.has(k), `image ${k} belongs to a result`);

    const sorted = [...this.latencies].sort((a, b) => a - b);
    const round = (n: number) => Math.round(n * 10) / 10;
    return {
      counts,
      framesAnswered: this.answers.size,
      results: fleetRows.length,
      images: imageKeys.length,
      stores: this.storesSeen.size,
      integrityChecks: this.integrityChecks,
      latencyMs: { p50: round(percentile(sorted, 50)), p99: round(percentile(sorted, 99)), max: round(sorted.at(-1) ?? 0) },
    };
  }

  /** Every edge answered during each outage that did not stop the edge itself. */
  static assertVerdictsFlowed(steps: StepReport[]): void {
    for (const s of steps) {
      if (!s.answered) continue;
      for (const [edge, n] of Object.entries(s.answered)) assert.ok(n > 0, `${edge} answered no frame during ${s.fault} (${s.ms} ms)`);
    }
  }

  async close(): Promise<void> {
    await this.stopLoad();
    for (const e of this.edges.values()) await e.proc?.stop('SIGKILL');
    await this.fleet?.stop('SIGKILL');
    await this.mosquitto?.close();
    await this.brokerProxy?.close();
    await this.edgeMqttProxy?.close();
    await this.httpProxy?.close();
    await this.creds?.identity.close();
  }
}
