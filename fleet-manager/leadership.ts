/**
 * Leader election (issue 18): of several fleet instances on one PostgreSQL database, exactly one
 * runs the work that must not run twice (rollouts, desired states, the fleet's alert rules, the
 * webhook outbox, training; fleet-manager/leader-work.ts). The leader is whoever holds a
 * session-level advisory lock on one dedicated connection: when that session ends (the process
 * died, the connection broke, the server terminated it) PostgreSQL frees the lock and another
 * instance's next try takes it. With SQLite there is one instance, always the leader.
 */
import pg from 'pg';
import type { PgMigration } from './pg/pg-db.js';
import type { Logger } from 'pino';
import type { LeaderLocation } from './leader-forward.js';

export interface Leadership {
  /** Whether this instance leads now. */
  isLeader(): boolean;
  /** Where the leader answers (followers forward leader writes there); null when none is known yet. */
  leader(): LeaderLocation | null;
  /**
   * `listener` hears each change (true: became leader, false: lost it). A returned promise is
   * awaited before the elector goes on: leader work is stopped before a new try to lead.
   */
  onChange(listener: (leader: boolean) => void | Promise<void>): () => void;
  /** Makes the first try (resolves once it is decided, leader or not), then keeps trying. */
  start(): Promise<void>;
  /** Gives leadership up (listeners hear false) and stops trying. Idempotent. */
  stop(): Promise<void>;
}

/** The one instance of a single-instance fleet (SQLite): leader from start to stop. */
export function singleLeadership(): Leadership {
  const listeners = new Set<(leader: boolean) => void | Promise<void>>();
  let leader = false;
  /** A listener's failure fails start() (a single instance that cannot run its leader work does not start). */
  async function set(value: boolean) {
    if (leader === value) return;
    leader = value;
    for (const l of [...listeners]) await l(value);
  }
  return {
    isLeader: () => leader,
    // Alone, nobody forwards to this instance.
    leader: () => null,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    start: () => set(true),
    stop: () => set(false),
  };
}

/** Advisory lock (two-int form, so it cannot meet migratePg's one-bigint key): Osprey, fleet leader. */
export const LEADER_LOCK: readonly [number, number] = [0x05_9e_e1, 1];

export interface PgLeadershipOptions {
  /** postgres://… of the fleet database (the storage url). */
  url: string;
  logger: Logger;
  /** Period of tries while a follower, and of the leader's liveness query (default 2000 ms). */
  retryMs?: number;
  /** Longest a connect or a query may take before the connection counts as lost (default 5000 ms). */
  queryTimeoutMs?: number;
  /** application_name of the elector's session (default osprey-fleet-leader). */
  applicationName?: string;
  /** What this instance announces when it becomes leader (asked then: the HTTP address is known by then). */
  announce?: () => { url: string; instance: string };
}

/**
 * The leader's address lives in one row beside the lock, not in a retained MQTT message: only the
 * lock holder writes it, on the lock's own session, so the row is only ever changed by a true
 * leader and a killed leader's row is overwritten by the next one (a retained message would need
 * a will to clear it, and that will could arrive after the new leader's announcement). It needs no
 * broker ACL rule and works with any broker. Its table is made by the storage factory with every
 * other table (LEADER_PG_MIGRATIONS, in pg-storage.ts); a follower that finds no row knows no
 * leader yet.
 */
export const LEADER_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'leader-1',
    sql: `CREATE TABLE fleet_leader (
  id SMALLINT PRIMARY KEY CHECK (id = 1),
  url TEXT NOT NULL,
  instance TEXT NOT NULL,
  since BIGINT NOT NULL
)`,
  },
];

/**
 * Leadership through `pg_try_advisory_lock` on one dedicated pg.Client (not a pool: the lock
 * belongs to the session). Followers try every retryMs on their own session; the leader runs
 * `SELECT 1` every retryMs so a connection that died silently is noticed. When the connection
 * errors, ends or a query fails, leadership is lost at once (listeners hear false and finish
 * first), the client is dropped and a new one tries after retryMs.
 */
export function pgLeadership(opts: PgLeadershipOptions): Leadership {
  const log = opts.logger;
  const retryMs = opts.retryMs ?? 2000;
  const queryTimeoutMs = opts.queryTimeoutMs ?? 5000;
  const listeners = new Set<(leader: boolean) => void | Promise<void>>();
  let leader = false;
  /** This instance's row when leading, else the row last read. */
  let known: LeaderLocation | null = null;
  let client: pg.Client | null = null;
  let timer: NodeJS.Timeout | undefined;
  let running = false;
  /** Tries, losses and stop run one at a time. */
  let chain: Promise<void> = Promise.resolve();
  const serial = (fn: () => Promise<void>) => (chain = chain.then(fn, fn));

  async function setLeader(value: boolean) {
    if (leader === value) return;
    leader = value;
    if (value) log.info({ lock: LEADER_LOCK }, 'this instance is the fleet leader');
    else log.warn('this instance is no longer the fleet leader');
    for (const l of [...listeners]) {
      try {
        await l(value);
      } catch (err) {
        log.error({ err, leader: value }, 'leadership listener failed');
      }
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (running) timer = setTimeout(() => void serial(attempt), retryMs);
  }

  /** The connection is gone or unusable: leader work stops first, then the client is dropped. */
  async function lose(c: pg.Client, why: unknown) {
    if (client !== c) return;
    client = null;
    log.warn({ err: why }, 'leader election connection lost');
    await setLeader(false);
    drop(c);
  }

  /** Ends a client without waiting on it: end() of a connection that already broke may never settle. */
  function drop(c: pg.Client) {
    c.removeAllListeners('end');
    c.on('error', () => {});
    void c.end().catch(() => {});
  }

  function timed<T>(p: Promise<T>, what: string): Promise<T> {
    let t: NodeJS.Timeout | undefined;
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`${what} took over ${queryTimeoutMs} ms`)), queryTimeoutMs);
      }),
    ]).finally(() => clearTimeout(t));
  }

  async function attempt() {
    if (!running) return;
    let c = client;
    try {
      if (!c) {
        c = new pg.Client({ connectionString: opts.url, application_name: opts.applicationName ?? 'osprey-fleet-leader', keepAlive: true });
        const mine = c;
        // Seen on the next turn of the chain, so a loss never interleaves with a try.
        mine.on('error', (err) => void serial(() => lose(mine, err)));
        mine.on('end', () => void serial(() => lose(mine, new Error('connection ended'))));
        client = mine;
        await timed(mine.connect(), 'connect');
      }
      if (leader) {
        await timed(c.query('SELECT 1'), 'liveness query');
      } else {
        const { rows } = await timed(c.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [...LEADER_LOCK]), 'lock try');
        if (rows[0]?.ok && running) {
          // Announced before the leader work starts, so followers forward to it as soon as it can answer.
          if (opts.announce) known = await timed(announceSelf(c, opts.announce()), 'leader announcement');
          await setLeader(true);
        } else if (rows[0]?.ok) await c.query('SELECT pg_advisory_unlock($1, $2)', [...LEADER_LOCK]);
        else known = await timed(readLeader(c), 'leader lookup');
      }
    } catch (err) {
      if (c) await lose(c, err);
      else log.warn({ err }, 'leader election try failed');
    }
    schedule();
  }

  return {
    isLeader: () => leader,
    leader: () => known,
    onChange(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async start() {
      if (running) return;
      running = true;
      await serial(attempt);
    },
    stop() {
      running = false;
      clearTimeout(timer);
      return serial(async () => {
        clearTimeout(timer);
        const c = client;
        // Work stops before the lock is let go, so two leaders never overlap.
        await setLeader(false);
        if (!c) return;
        client = null;
        // Ending the session frees the lock at once.
        c.removeAllListeners('end');
        c.on('error', () => {});
        await timed(c.end(), 'disconnect').catch(() => {});
      });
    },
  };
}

async function announceSelf(c: pg.Client, self: { url: string; instance: string }): Promise<LeaderLocation> {
  const since = Date.now();
  await c.query(
    `INSERT INTO fleet_leader (id, url, instance, since) VALUES (1, $1, $2, $3)
     ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, instance = EXCLUDED.instance, since = EXCLUDED.since`,
    [self.url, self.instance, since],
  );
  return { ...self, since };
}

async function readLeader(c: pg.Client): Promise<LeaderLocation | null> {
  const { rows } = await c.query<{ url: string; instance: string; since: string }>('SELECT url, instance, since FROM fleet_leader WHERE id = 1');
  const row = rows[0];
  return row ? { url: row.url, instance: row.instance, since: Number(row.since) } : null;
}
