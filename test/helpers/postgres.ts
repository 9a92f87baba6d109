/**
 * PostgreSQL (Debian package `postgresql`) for the storage tests (issue 18): a real server started
 * by the test in a temporary directory, listening on a Unix socket only (no TCP port at all, so
 * nothing can collide), with a fresh database per test (`createDatabase`). As root, the server runs
 * as the `postgres` system user (PostgreSQL refuses to run as root). Tests skip with a clear message
 * when the binaries are absent, and fail under CI=true (service-skip.ts).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import { serviceSkip } from './service-skip.js';

/** The folder of PostgreSQL's server binaries: $OSPREY_PG_BIN, `pg_config --bindir`, or Debian's newest. */
export function postgresBinDir(): string | undefined {
  const fromEnv = process.env.OSPREY_PG_BIN;
  if (fromEnv && existsSync(join(fromEnv, 'postgres'))) return fromEnv;
  const root = '/usr/lib/postgresql';
  if (existsSync(root)) {
    const versions = readdirSync(root).filter((v) => existsSync(join(root, v, 'bin', 'postgres'))).sort((a, b) => Number(b) - Number(a));
    if (versions[0]) return join(root, versions[0], 'bin');
  }
  const cfg = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  const dir = cfg.status === 0 ? cfg.stdout.trim() : '';
  return dir && existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb')) ? dir : undefined;
}

/** The reason to skip a PostgreSQL test, or false when it can run; under CI=true a missing server throws. */
export function postgresSkip(): string | false {
  return serviceSkip(postgresBinDir() ? false : 'PostgreSQL is not installed (apt-get install -y postgresql); skipping the PostgreSQL run');
}

export interface Postgres {
  /** The server's socket directory: `postgres://osprey@/DB?host=<socketDir>` reaches it. */
  readonly socketDir: string;
  /** A connection URL of the maintenance database `postgres`. */
  readonly url: string;
  /** Creates an empty database and answers its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server (fast shutdown) and removes its directory. Idempotent. */
  close(): Promise<void>;
}

export interface PostgresOptions {
  /** Durable commits (fsync, synchronous_commit): on for benchmarks; off by default, tests do not pull the plug. */
  durable?: boolean;
  /** How long initdb plus the start may take (default 60 s). */
  startTimeoutMs?: number;
}

/** The uid and gid of a system user, from `id`; undefined when there is no such user. */
function userIds(name: string): { uid: number; gid: number } | undefined {
  const u = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  if (u.status !== 0 || g.status !== 0) return undefined;
  return { uid: Number(u.stdout.trim()), gid: Number(g.stdout.trim()) };
}

let databases = 0;

/** Starts a private PostgreSQL server; rejects when the binaries are missing or it does not come up. */
export async function startPostgres(options: PostgresOptions = {}): Promise<Postgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('PostgreSQL is not installed');
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const dir = await mkdtemp(join(tmpdir(), 'osprey-pg-'));
  const data = join(dir, 'data');
  const socketDir = join(dir, 'sock');
  mkdirSync(data, { mode: 0o700 });
  mkdirSync(socketDir, { mode: 0o755 });
  let owner: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    owner = userIds('postgres') ?? userIds('nobody');
    if (!owner) throw new Error('running as root, and neither a postgres nor a nobody user exists to run PostgreSQL as');
    chmodSync(dir, 0o711);
    chownSync(data, owner.uid, owner.gid);
    chownSync(socketDir, owner.uid, owner.gid);
  }
  const asOwner = owner ? { uid: owner.uid, gid: owner.gid } : {};
  const init = spawnSync(join(bin, 'initdb'), ['-D', data, '-U', 'osprey', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], {
    encoding: 'utf8',
    timeout: startTimeoutMs,
    cwd: dir,
    ...asOwner,
  });
  if (init.status !== 0) {
    await rm(dir, { recursive: true, force: true });
    throw new Error(`initdb failed: ${(init.stderr || init.stdout || String(init.error)).trim().split('\n').slice(-3).join(' | ')}`);
  }
  const durable = options.durable ?? false;
  const args = [
    '-D', data,
    '-k', socketDir,
    '-c', "listen_addresses=",
    '-c', `fsync=${durable ? 'on' : 'off'}`,
    '-c', `synchronous_commit=${durable ? 'on' : 'off'}`,
    '-c', `full_page_writes=${durable ? 'on' : 'off'}`,
    '-c', 'max_connections=200',
    '-c', 'shared_buffers=128MB',
  ];
  const child: ChildProcess = spawn(join(bin, 'postgres'), args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir, ...asOwner });
  const lines: string[] = [];
  const ready = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => finish(false), startTimeoutMs);
    const onExit = () => finish(false);
    child.once('exit', onExit);
    const rl = createInterface({ input: child.stderr! });
    rl.on('line', (line) => {
      lines.push(line);
      if (lines.length > 20) lines.shift();
      if (/database system is ready to accept connections/.test(line)) finish(true);
    });
    function finish(ok: boolean): void {
      clearTimeout(timer);
      child.off('exit', onExit);
      resolve(ok);
    }
  });
  // Keep draining stderr so the server never blocks on a full pipe.
  child.stderr!.resume();
  if (!ready) {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
    throw new Error(`PostgreSQL did not start: ${lines.slice(-3).join(' | ')}`);
  }
  const urlOf = (db: string) => `postgres://osprey@/${db}?host=${encodeURIComponent(socketDir)}`;
  let closed = false;
  return {
    socketDir,
    url: urlOf('postgres'),
    async createDatabase() {
      const name = `osprey_test_${process.pid}_${++databases}`;
      const client = new pg.Client({ connectionString: urlOf('postgres') });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return urlOf(name);
    },
    async close() {
      if (closed) return;
      closed = true;
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGINT'); // fast shutdown: ends every session
        await exited;
      }
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
