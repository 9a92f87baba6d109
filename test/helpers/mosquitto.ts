/**
 * Mosquitto (Debian package `mosquitto`) as an independent broker for the end-to-end and fault
 * suites: started by the test on a free port with a generated config (no persistence, loopback
 * only; anonymous unless given the access settings of `osprey fleet broker-config`), restartable, and stopped with the test. Tests skip with a clear message when
 * the binary is absent (and fail under CI=true, see service-skip.ts).
 *
 * A long test must be able to tell that the broker it talks to is still the one it started:
 * every exit of the broker process that stop()/restart()/close() did not ask for is recorded
 * (`unexpectedExits`), and `pid`/`generation` say which process is serving now.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { serviceSkip } from './service-skip.js';

/** The mosquitto binary: on PATH, or where Debian puts it (/usr/sbin is not on every PATH). */
export function mosquittoBinary(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  for (const p of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(p)) return p;
  return undefined;
}

/** The reason to skip a Mosquitto test, or false when it can run; under CI=true a missing broker throws. */
export function mosquittoSkip(): string | false {
  return serviceSkip(mosquittoBinary() ? false : 'mosquitto is not installed (apt-get install -y mosquitto); skipping the Mosquitto run');
}

/** An exit of the broker process that nobody asked for. */
export interface UnexpectedExit {
  pid: number | undefined;
  generation: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The last lines the broker wrote. */
  lastLines: string[];
}

export interface MosquittoOptions {
  /** How long a launch may take to print its "running" line (default 10 s). */
  startTimeoutMs?: number;
  /**
   * Access settings (mosquitto.conf lines, e.g. the snippet `osprey fleet broker-config`
   * writes) in place of the default `allow_anonymous true`.
   */
  accessConfig?: string;
}

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  /** The pid of the broker serving now (undefined while stopped). */
  readonly pid: number | undefined;
  /** 1 for the first start, +1 for each restart(). */
  readonly generation: number;
  /** Every exit that stop()/restart()/close() did not request, in order. */
  readonly unexpectedExits: readonly UnexpectedExit[];
  /** Resolves on the next unexpected exit (for a test that waits and must notice a death at once). */
  nextUnexpectedExit(): Promise<UnexpectedExit>;
  /** Throws unless the broker of `generation` (and `pid`, when given) is running and never died on its own. */
  assertSameBroker(expected: { generation: number; pid?: number }): void;
  /** Stops the broker (SIGKILL when `hard`), dropping every client at once. */
  stop(hard?: boolean): Promise<void>;
  /** Sends SIGHUP and resolves once Mosquitto says it reloaded (password and ACL files). */
  reload(): Promise<void>;
  /** Starts it again on a new free port (clients must be pointed there, e.g. by a proxy). */
  restart(): Promise<void>;
  /** Stops it and removes its config directory. */
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Starts Mosquitto on a free port; rejects if the binary is missing or it does not come up. */
export async function startMosquitto(options: MosquittoOptions = {}): Promise<Mosquitto> {
  const bin = mosquittoBinary();
  if (!bin) throw new Error('mosquitto is not installed');
  const startTimeoutMs = options.startTimeoutMs ?? 10_000;
  const dir = await mkdtemp(join(tmpdir(), 'osprey-mosquitto-'));
  let child: ChildProcess | undefined;
  let port = 0;
  let generation = 0;
  const unexpectedExits: UnexpectedExit[] = [];
  const exitWaiters: ((e: UnexpectedExit) => void)[] = [];
  const reloadWaiters: (() => void)[] = [];
  /** Processes we are stopping on purpose: their exit is expected. */
  const stopping = new WeakSet<ChildProcess>();
  /** Every broker process spawned and not yet exited: close() ends them all, whatever happened. */
  const alive = new Set<ChildProcess>();

  async function launch(): Promise<void> {
    generation++;
    // A free port can be taken between our probe and mosquitto's bind: try a few.
    let lastError = '';
    for (let attempt = 0; attempt < 5; attempt++) {
      port = await freePort();
      const conf = join(dir, 'mosquitto.conf');
      await writeFile(
        conf,
        // stderr, not stdout: mosquitto buffers stdout on a pipe, and "running" is the line we await.
        [
          `listener ${port} 127.0.0.1`,
          options.accessConfig ?? 'allow_anonymous true',
          // As root Mosquitto drops to the user "mosquitto", who cannot read a test's 0700 temp dir.
          ...(process.getuid?.() === 0 ? ['user root'] : []),
          'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', 'log_type notice', 'log_type information',
          '',
        ].join('\n'),
      );
      const c = spawn(bin!, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      alive.add(c);
      c.once('exit', () => alive.delete(c));
      const lines: string[] = [];
      let started = false;
      let running = false;
      let onRunning: (() => void) | undefined;
      const gen = generation;
      const onLine = (line: string) => {
        lines.push(line);
        if (lines.length > 20) lines.shift();
        // Single-threaded: the files are read in the same loop turn, before the next client is served.
        if (/Reloading config\.$/.test(line)) for (const w of reloadWaiters.splice(0)) w();
        if (!running && / running$/.test(line)) {
          running = true;
          onRunning?.();
        }
      };
      createInterface({ input: c.stdout! }).on('line', onLine);
      createInterface({ input: c.stderr! }).on('line', onLine);
      // Any exit of a broker that started, and that we did not stop, is recorded for the test.
      c.once('exit', (code, signal) => {
        if (!started || stopping.has(c)) return;
        const e: UnexpectedExit = { pid: c.pid, generation: gen, code, signal, lastLines: lines.slice(-5) };
        unexpectedExits.push(e);
        for (const w of exitWaiters.splice(0)) w(e);
      });
      const ready = await new Promise<boolean>((resolve) => {
        // Never hang a test on a broker that neither starts nor exits; the timer is cleared on every path.
        const timer = setTimeout(() => {
          lines.push(`no "running" line within ${startTimeoutMs} ms`);
          c.kill('SIGKILL');
          finish(false);
        }, startTimeoutMs);
        const onExit = () => finish(false);
        c.once('exit', onExit);
        onRunning = () => finish(true);
        if (running) finish(true);
        function finish(ok: boolean): void {
          clearTimeout(timer);
          onRunning = undefined;
          c.off('exit', onExit);
          resolve(ok);
        }
      });
      if (ready) {
        started = true;
        child = c;
        return;
      }
      lastError = lines.slice(-3).join(' | ');
    }
    throw new Error(`mosquitto did not start: ${lastError}`);
  }

  async function stop(hard = false): Promise<void> {
    const c = child;
    child = undefined;
    if (!c) return;
    stopping.add(c);
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  }

  await launch();
  const broker: Mosquitto = {
    get port() {
      return port;
    },
    get url() {
      return `mqtt://127.0.0.1:${port}`;
    },
    get pid() {
      return child && child.exitCode === null && child.signalCode === null ? child.pid : undefined;
    },
    get generation() {
      return generation;
    },
    unexpectedExits,
    nextUnexpectedExit: () => new Promise((resolve) => exitWaiters.push(resolve)),
    assertSameBroker(expected) {
      const died = unexpectedExits.map((e) => `pid ${e.pid} (generation ${e.generation}) exited by itself: code ${e.code} signal ${e.signal}; last lines: ${e.lastLines.join(' | ')}`);
      if (died.length) throw new Error(`mosquitto died during the test: ${died.join('; ')}`);
      if (generation !== expected.generation) throw new Error(`mosquitto is at generation ${generation}, expected ${expected.generation}`);
      const pid = broker.pid;
      if (pid === undefined) throw new Error('mosquitto is not running');
      if (expected.pid !== undefined && pid !== expected.pid) throw new Error(`mosquitto pid ${pid}, expected ${expected.pid}`);
    },
    stop,
    reload() {
      if (!child) return Promise.reject(new Error('mosquitto is not running'));
      const reloaded = new Promise<void>((resolve) => reloadWaiters.push(resolve));
      child.kill('SIGHUP');
      return reloaded;
    },
    async restart() {
      await stop();
      await launch();
    },
    async close() {
      await stop();
      // A broker left over by a failed or interrupted start would keep the test process alive.
      for (const c of alive) {
        stopping.add(c);
        const exited = once(c, 'exit');
        c.kill('SIGKILL');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  return broker;
}
