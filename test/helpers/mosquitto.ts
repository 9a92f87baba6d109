/**
 * Mosquitto (Debian package `mosquitto`) as an independent broker for the end-to-end and fault
 * suites: started by the test on a free port with a generated config (no persistence, anonymous,
 * loopback only), restartable, and stopped with the test. Tests skip with a clear message when
 * the binary is absent.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** The mosquitto binary: on PATH, or where Debian puts it (/usr/sbin is not on every PATH). */
export function mosquittoBinary(): string | undefined {
  const onPath = spawnSync('sh', ['-c', 'command -v mosquitto'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  for (const p of ['/usr/sbin/mosquitto', '/usr/local/sbin/mosquitto']) if (existsSync(p)) return p;
  return undefined;
}

/** The reason to skip a Mosquitto test, or false when it can run. */
export function mosquittoSkip(): string | false {
  return mosquittoBinary() ? false : 'mosquitto is not installed (apt-get install -y mosquitto); skipping the Mosquitto run';
}

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  /** Stops the broker (SIGKILL when `hard`), dropping every client at once. */
  stop(hard?: boolean): Promise<void>;
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
export async function startMosquitto(): Promise<Mosquitto> {
  const bin = mosquittoBinary();
  if (!bin) throw new Error('mosquitto is not installed');
  const dir = await mkdtemp(join(tmpdir(), 'osprey-mosquitto-'));
  let child: ChildProcess | undefined;
  let port = 0;

  async function launch(): Promise<void> {
    // A free port can be taken between our probe and mosquitto's bind: try a few.
    let lastError = '';
    for (let attempt = 0; attempt < 5; attempt++) {
      port = await freePort();
      const conf = join(dir, 'mosquitto.conf');
      await writeFile(
        conf,
        // stderr, not stdout: mosquitto buffers stdout on a pipe, and "running" is the line we await.
        [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest stderr', 'log_type error', 'log_type warning', 'log_type notice', 'log_type information', ''].join('\n'),
      );
      const c = spawn(bin!, ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      const lines: string[] = [];
      const ready = new Promise<boolean>((resolve) => {
        const onLine = (line: string) => {
          lines.push(line);
          if (lines.length > 20) lines.shift();
          if (/ running$/.test(line)) resolve(true);
        };
        createInterface({ input: c.stdout! }).on('line', onLine);
        createInterface({ input: c.stderr! }).on('line', onLine);
        c.once('exit', () => resolve(false));
        // Never hang a test on a broker that neither starts nor exits.
        setTimeout(() => {
          lines.push('no "running" line within 10 s');
          c.kill('SIGKILL');
          resolve(false);
        }, 10_000).unref();
      });
      if (await ready) {
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
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill(hard ? 'SIGKILL' : 'SIGTERM');
    await exited;
  }

  await launch();
  return {
    get port() {
      return port;
    },
    get url() {
      return `mqtt://127.0.0.1:${port}`;
    },
    stop,
    async restart() {
      await stop();
      await launch();
    },
    async close() {
      await stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
