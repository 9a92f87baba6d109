/**
 * The identity store on PostgreSQL (issue 18): the same interface, hashing and expiry rules as
 * the SQLite store (fleet-manager/identity-store.ts), safe with several fleet instances on one
 * database. Single-use things are spent by one conditional UPDATE … RETURNING, never read then
 * written, so of two instances redeeming one enrollment token at once exactly one succeeds.
 */
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from 'pino';
import { OspreyError } from '../../protocol/errors.js';
import { isRole, roleCovers, type Role } from '../auth/roles.js';
import { DUMMY_PASSWORD_HASH, hashPassword, verifyPassword } from '../auth/password.js';
import { mintSecret, mosquittoHash, parseSecret, secretMatches } from '../auth/secrets.js';
import {
  auditJson,
  auditOf,
  checkPasswordRules,
  checkUsername,
  credOf,
  enrolledAlready,
  enrollmentRefusal,
  enrollmentRefused,
  enrollOf,
  ENROLLMENT_USED_ALREADY,
  sessionOf,
  tokenOf,
  userOf,
  type AuditRow,
  type CredRow,
  type EnrollRow,
  type IdentityStore,
  type SessionRow,
  type TokenRow,
  type UserRow,
} from '../identity-store.js';
import { withTransaction, type PgMigration } from './pg-db.js';

export const IDENTITY_PG_MIGRATIONS: PgMigration[] = [
  {
    id: 'identity-1',
    sql: `
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  disabled BOOLEAN NOT NULL DEFAULT false,
  created_at BIGINT NOT NULL,
  updated_at BIGINT NOT NULL
);
CREATE TABLE sessions (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  ip TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE TABLE api_tokens (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT,
  revoked_at BIGINT,
  last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
CREATE TABLE enrollment_tokens (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL,
  edge_id TEXT,
  line TEXT,
  created_by TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  expires_at BIGINT NOT NULL,
  used_at BIGINT,
  used_by_edge TEXT
);
CREATE TABLE edge_credentials (
  id TEXT PRIMARY KEY,
  edge_id TEXT NOT NULL,
  line TEXT,
  hash TEXT NOT NULL,
  broker_hash TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  revoked_at BIGINT
);
CREATE INDEX edge_credentials_edge ON edge_credentials (edge_id);
-- At most one live credential per edge, whichever instances enroll it.
CREATE UNIQUE INDEX edge_credentials_live ON edge_credentials (edge_id) WHERE revoked_at IS NULL;
CREATE TABLE audit_log (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  ts BIGINT NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  source TEXT NOT NULL,
  outcome TEXT NOT NULL,
  before_json TEXT,
  after_json TEXT
);
CREATE INDEX audit_ts ON audit_log (ts);
`,
  },
];

/** Namespace of the transaction-scoped advisory locks that serialise enrollments of one edge. */
const ENROLL_LOCK = 0x05_9e_e1_02;

export interface PgIdentityStoreOptions {
  logger: Logger;
  now?: () => number;
}

/** The identity store on `pool`, whose database IDENTITY_PG_MIGRATIONS has been applied to. */
export function pgIdentityStore(pool: pg.Pool, opts: PgIdentityStoreOptions): IdentityStore {
  const now = opts.now ?? Date.now;
  const one = async <R extends pg.QueryResultRow>(sql: string, args: unknown[] = [], q: pg.Pool | pg.PoolClient = pool): Promise<R | undefined> =>
    (await q.query<R>(sql, args)).rows[0];
  const all = async <R extends pg.QueryResultRow>(sql: string, args: unknown[] = []): Promise<R[]> => (await pool.query<R>(sql, args)).rows;

  const userById = (id: string) => one<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
  const userByName = (username: string) => one<UserRow>('SELECT * FROM users WHERE username = $1', [username]);
  const tokenById = (id: string) => one<TokenRow>('SELECT * FROM api_tokens WHERE id = $1', [id]);
  const userValid = (u: UserRow | undefined): u is UserRow => u !== undefined && !u.disabled;
  const notFound = (username: string) => new OspreyError('OSP_ERR_NOT_FOUND', `no user ${username}`);

  return {
    async verifyPassword(username, password) {
      const row = typeof username === 'string' && username.length <= 64 ? await userByName(username) : undefined;
      const ok = await verifyPassword(String(password).slice(0, 1024), row?.password_hash ?? DUMMY_PASSWORD_HASH);
      return ok && userValid(row) ? userOf(row) : null;
    },
    async getUser(id) {
      const row = await userById(id);
      return row ? userOf(row) : null;
    },
    async getUserByName(username) {
      const row = await userByName(username);
      return row ? userOf(row) : null;
    },
    async listUsers() {
      // COLLATE "C": byte order, as SQLite sorts, whatever the database's locale.
      return (await all<UserRow>('SELECT * FROM users ORDER BY username COLLATE "C"')).map(userOf);
    },
    async countUsers() {
      return (await one<{ n: number }>('SELECT count(*) AS n FROM users'))!.n;
    },
    async addUser({ username, password, role }) {
      checkUsername(username);
      if (!isRole(role)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `unknown role ${String(role)}`);
      checkPasswordRules(password);
      const hash = await hashPassword(password);
      const t = now();
      const row = await one<UserRow>(
        `INSERT INTO users (id, username, role, password_hash, disabled, created_at, updated_at) VALUES ($1, $2, $3, $4, false, $5, $5)
         ON CONFLICT (username) DO NOTHING RETURNING *`,
        [randomBytes(9).toString('base64url'), username, role, hash, t],
      );
      if (!row) throw new OspreyError('OSP_ERR_CONFLICT', `user ${username} exists`);
      return userOf(row);
    },
    async setPassword(username, password) {
      checkPasswordRules(password);
      const hash = await hashPassword(password);
      return withTransaction(pool, async (c) => {
        const row = await one<UserRow>('UPDATE users SET password_hash = $1, updated_at = $2 WHERE username = $3 RETURNING *', [hash, now(), username], c);
        if (!row) throw notFound(username);
        await c.query('DELETE FROM sessions WHERE user_id = $1', [row.id]);
        return userOf(row);
      });
    },
    async setRole(username, role) {
      if (!isRole(role)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `unknown role ${String(role)}`);
      const row = await one<UserRow>('UPDATE users SET role = $1, updated_at = $2 WHERE username = $3 RETURNING *', [role, now(), username]);
      if (!row) throw notFound(username);
      return userOf(row);
    },
    async setDisabled(username, disabled) {
      return withTransaction(pool, async (c) => {
        const row = await one<UserRow>('UPDATE users SET disabled = $1, updated_at = $2 WHERE username = $3 RETURNING *', [disabled, now(), username], c);
        if (!row) throw notFound(username);
        if (disabled) await c.query('DELETE FROM sessions WHERE user_id = $1', [row.id]);
        return userOf(row);
      });
    },

    async createApiToken({ userId, name, role, expiresAt }) {
      const user = await userById(userId);
      if (!userValid(user)) throw new OspreyError('OSP_ERR_NOT_FOUND', `no enabled user ${userId}`);
      if (!isRole(role)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `unknown role ${String(role)}`);
      if (!roleCovers(user.role as Role, role)) throw new OspreyError('OSP_ERR_FORBIDDEN', `a ${user.role} cannot make a token with the role ${role}`);
      if (typeof name !== 'string' || name.length < 1 || name.length > 100) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'a token name has 1 to 100 characters');
      const t = now();
      if (expiresAt !== null && !(expiresAt > t)) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'a token expiry must be in the future');
      const m = mintSecret('apiToken');
      const row = await one<TokenRow>(
        'INSERT INTO api_tokens (id, user_id, name, role, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *',
        [m.id, userId, name, role, m.hash, t, expiresAt],
      );
      return { token: m.token, record: tokenOf(row!) };
    },
    async listApiTokens(userId) {
      const rows =
        userId === undefined
          ? await all<TokenRow>('SELECT * FROM api_tokens ORDER BY created_at, id COLLATE "C"')
          : await all<TokenRow>('SELECT * FROM api_tokens WHERE user_id = $1 ORDER BY created_at, id COLLATE "C"', [userId]);
      return rows.map(tokenOf);
    },
    async getApiToken(id) {
      const row = await tokenById(id);
      return row ? tokenOf(row) : null;
    },
    async revokeApiToken(id) {
      // coalesce: a second revocation keeps the first one's time.
      const row = await one<TokenRow>('UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $1) WHERE id = $2 RETURNING *', [now(), id]);
      if (!row) throw new OspreyError('OSP_ERR_NOT_FOUND', `no API token ${id}`);
      return tokenOf(row);
    },
    async resolveApiToken(token) {
      const parsed = parseSecret('apiToken', token);
      if (!parsed) return null;
      const row = await tokenById(parsed.id);
      if (!row || !secretMatches(parsed.secret, row.hash)) return null;
      const t = now();
      if (row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= t)) return null;
      const user = await userById(row.user_id);
      if (!userValid(user)) return null;
      // At most one write a minute per token, checked in the UPDATE so instances do not each write.
      if (row.last_used_at === null || t - row.last_used_at > 60_000) {
        await pool.query('UPDATE api_tokens SET last_used_at = $1::bigint WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $1::bigint - 60000)', [t, row.id]);
      }
      return { token: tokenOf(row), user: userOf(user) };
    },

    async createSession({ userId, ttlMs, ip }) {
      const t = now();
      await pool.query('DELETE FROM sessions WHERE expires_at <= $1', [t]);
      const m = mintSecret('session');
      const row = await one<SessionRow>(
        'INSERT INTO sessions (id, user_id, hash, created_at, expires_at, ip) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *',
        [m.id, userId, m.hash, t, t + ttlMs, ip],
      );
      return { token: m.token, record: sessionOf(row!) };
    },
    async resolveSession(token) {
      const parsed = parseSecret('session', token);
      if (!parsed) return null;
      const row = await one<SessionRow>('SELECT * FROM sessions WHERE id = $1', [parsed.id]);
      if (!row || !secretMatches(parsed.secret, row.hash) || row.expires_at <= now()) return null;
      const user = await userById(row.user_id);
      if (!userValid(user)) return null;
      return { session: sessionOf(row), user: userOf(user) };
    },
    async deleteSession(id) {
      await pool.query('DELETE FROM sessions WHERE id = $1', [id]);
    },

    async createEnrollmentToken({ edgeId, line, ttlMs, createdBy }) {
      const t = now();
      const m = mintSecret('enrollment');
      const row = await one<EnrollRow>(
        'INSERT INTO enrollment_tokens (id, hash, edge_id, line, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *',
        [m.id, m.hash, edgeId, line, createdBy, t, t + ttlMs],
      );
      return { token: m.token, record: enrollOf(row!) };
    },
    async listEnrollmentTokens() {
      return (await all<EnrollRow>('SELECT * FROM enrollment_tokens ORDER BY created_at, id COLLATE "C"')).map(enrollOf);
    },
    async redeemEnrollmentToken(token, edgeId) {
      const parsed = parseSecret('enrollment', token);
      if (!parsed) throw enrollmentRefused('not an enrollment token');
      const row = await one<EnrollRow>('SELECT * FROM enrollment_tokens WHERE id = $1', [parsed.id]);
      const t = now();
      const why = enrollmentRefusal(row, parsed.secret, edgeId, t);
      if (why !== null || !row) throw enrollmentRefused(why ?? 'unknown token');
      const m = mintSecret('edgeCredential');
      const brokerHash = mosquittoHash(m.token);
      const cred = await withTransaction(pool, async (c): Promise<CredRow | string> => {
        // One enrollment of an edge at a time across instances: the live-credential check below
        // and the revoke-then-insert must not interleave with another token's for the same edge.
        await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [ENROLL_LOCK, edgeId]);
        if (row.edge_id === null && (await one('SELECT 1 FROM edge_credentials WHERE edge_id = $1 AND revoked_at IS NULL LIMIT 1', [edgeId], c))) {
          return enrolledAlready(edgeId);
        }
        // The spend itself: one conditional UPDATE, so only one redemption of the token gets its row.
        const spent = await c.query('UPDATE enrollment_tokens SET used_at = $1, used_by_edge = $2 WHERE id = $3 AND used_at IS NULL', [t, edgeId, row.id]);
        if (spent.rowCount !== 1) return ENROLLMENT_USED_ALREADY;
        await c.query('UPDATE edge_credentials SET revoked_at = $1 WHERE edge_id = $2 AND revoked_at IS NULL', [t, edgeId]);
        return (await one<CredRow>(
          'INSERT INTO edge_credentials (id, edge_id, line, hash, broker_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING *',
          [m.id, edgeId, row.line, m.hash, brokerHash, t],
          c,
        ))!;
      });
      if (typeof cred === 'string') throw enrollmentRefused(cred);
      return { credential: m.token, record: credOf(cred) };
    },
    async resolveEdgeCredential(token) {
      const parsed = parseSecret('edgeCredential', token);
      if (!parsed) return null;
      const row = await one<CredRow>('SELECT * FROM edge_credentials WHERE id = $1', [parsed.id]);
      if (!row || row.revoked_at !== null || !secretMatches(parsed.secret, row.hash)) return null;
      return credOf(row);
    },
    async listEdgeCredentials() {
      return (await all<CredRow>('SELECT * FROM edge_credentials ORDER BY edge_id COLLATE "C", created_at')).map(credOf);
    },
    async revokeEdgeCredentials(edgeId) {
      return (await pool.query('UPDATE edge_credentials SET revoked_at = $1 WHERE edge_id = $2 AND revoked_at IS NULL', [now(), edgeId])).rowCount ?? 0;
    },

    async appendAudit(e) {
      const ts = now();
      const row = await one<{ id: number }>(
        'INSERT INTO audit_log (ts, actor, action, target, source, outcome, before_json, after_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id',
        [ts, e.actor, e.action, e.target, e.source, e.outcome, auditJson(e.before), auditJson(e.after)],
      );
      return { ...e, id: row!.id, ts };
    },
    async queryAudit(q) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      const arg = (v: string | number) => `$${args.push(v)}`;
      if (q.from !== undefined) where.push(`ts >= ${arg(q.from)}`);
      if (q.to !== undefined) where.push(`ts < ${arg(q.to)}`);
      if (q.actor !== undefined) where.push(`actor = ${arg(q.actor)}`);
      if (q.action !== undefined) where.push(`action LIKE ${arg(`${q.action.replace(/[\\%_]/g, (c) => `\\${c}`)}%`)} ESCAPE '\\'`);
      if (q.beforeId !== undefined) where.push(`id < ${arg(q.beforeId)}`);
      const limit = arg(Math.min(Math.max(1, q.limit ?? 100), 1000));
      const sql = `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`;
      return (await all<AuditRow>(sql, args)).map(auditOf);
    },

    async close() {
      // The pool belongs to the storage factory, which ends it once every store is closed.
    },
  };
}
