/**
 * Who exists and what they hold: people (the user directory), their sessions and API tokens,
 * edges' enrollment tokens and credentials, and the audit log. One asynchronous interface so
 * PostgreSQL can replace SQLite, and the user directory is its own interface so LDAP/AD sign-in
 * can replace the local one. Secrets are never stored: sha256 of bearer secrets (auth/secrets.ts),
 * scrypt of passwords (auth/password.ts).
 */
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { closingConnection, withNewConnection } from './sqlite-db.js';
import type { Logger } from 'pino';
import { OspreyError } from '../protocol/errors.js';
import { isRole, roleCovers, type Role } from './auth/roles.js';
import { DUMMY_PASSWORD_HASH, MIN_PASSWORD_LENGTH, hashPassword, verifyPassword } from './auth/password.js';
import { mintSecret, mosquittoHash, parseSecret, secretMatches } from './auth/secrets.js';

export interface UserRecord {
  id: string;
  username: string;
  role: Role;
  disabled: boolean;
  createdAt: number;
  updatedAt: number;
}

/** The people side: replaceable by a directory (LDAP/AD) that answers the same questions. */
export interface UserDirectory {
  /** The user when the password is right and the user is enabled; null otherwise (same time either way). */
  verifyPassword(username: string, password: string): Promise<UserRecord | null>;
  getUser(id: string): Promise<UserRecord | null>;
  getUserByName(username: string): Promise<UserRecord | null>;
  listUsers(): Promise<UserRecord[]>;
  countUsers(): Promise<number>;
  /** OSP_ERR_CONFLICT when the username is taken. */
  addUser(input: { username: string; password: string; role: Role }): Promise<UserRecord>;
  /** Also ends the user's sessions. OSP_ERR_NOT_FOUND for an unknown user. */
  setPassword(username: string, password: string): Promise<UserRecord>;
  setRole(username: string, role: Role): Promise<UserRecord>;
  /** A disabled user's sessions end and its tokens stop working. */
  setDisabled(username: string, disabled: boolean): Promise<UserRecord>;
}

export interface ApiTokenRecord {
  id: string;
  userId: string;
  name: string;
  role: Role;
  createdAt: number;
  /** Epoch ms; null: never expires. */
  expiresAt: number | null;
  revokedAt: number | null;
  lastUsedAt: number | null;
}

export interface SessionRecord {
  id: string;
  userId: string;
  createdAt: number;
  expiresAt: number;
  ip: string | null;
}

export interface EnrollmentTokenRecord {
  id: string;
  /** The edge it enrolls; null: any one edge (of `line`, when set). */
  edgeId: string | null;
  line: string | null;
  createdBy: string;
  createdAt: number;
  expiresAt: number;
  usedAt: number | null;
  usedByEdge: string | null;
}

export interface EdgeCredentialRecord {
  id: string;
  edgeId: string;
  line: string | null;
  createdAt: number;
  revokedAt: number | null;
  /** Mosquitto `$7$` hash of the secret (for `osprey fleet broker-config`). */
  brokerHash: string;
}

export interface AuditEntry {
  /** Who: `user:alice`, `edge:edge-7`, `cli` (a command run on the fleet host). */
  actor: string;
  /** What: `PUT /api/config`, `user.add`, `rollout.create`. */
  action: string;
  /** What it acted on: `/api/config`, `user:bob`, `model:ok@1.0.0`. */
  target: string;
  /** Where from: the client IP, or `cli`. */
  source: string;
  /** HTTP status or 'ok'. */
  outcome: string;
  before?: unknown;
  after?: unknown;
}

export interface AuditRecord extends AuditEntry {
  id: number;
  ts: number;
}

export interface AuditQuery {
  from?: number;
  to?: number;
  actor?: string;
  /** Prefix of the action (`PUT /api/config` or `user.`). */
  action?: string;
  /** Newest first; at most this many (default 100, at most 1000). */
  limit?: number;
  /** Only ids below this one (the next page). */
  beforeId?: number;
}

export interface IdentityStore extends UserDirectory {
  createApiToken(input: { userId: string; name: string; role: Role; expiresAt: number | null }): Promise<{ token: string; record: ApiTokenRecord }>;
  listApiTokens(userId?: string): Promise<ApiTokenRecord[]>;
  getApiToken(id: string): Promise<ApiTokenRecord | null>;
  revokeApiToken(id: string): Promise<ApiTokenRecord>;
  /** The token and its user when it is valid now (not expired, revoked or of a disabled user). */
  resolveApiToken(token: string): Promise<{ token: ApiTokenRecord; user: UserRecord } | null>;

  createSession(input: { userId: string; ttlMs: number; ip: string | null }): Promise<{ token: string; record: SessionRecord }>;
  resolveSession(token: string): Promise<{ session: SessionRecord; user: UserRecord } | null>;
  deleteSession(id: string): Promise<void>;

  createEnrollmentToken(input: { edgeId: string | null; line: string | null; ttlMs: number; createdBy: string }): Promise<{ token: string; record: EnrollmentTokenRecord }>;
  listEnrollmentTokens(): Promise<EnrollmentTokenRecord[]>;
  /**
   * Exchanges a valid, unused enrollment token for the edge's credential, once: the token is
   * spent and any earlier credential of that edge revoked, in one transaction. OSP_ERR_UNAUTHENTICATED
   * for a token that is unknown, spent, expired or bound to another edge.
   */
  redeemEnrollmentToken(token: string, edgeId: string): Promise<{ credential: string; record: EdgeCredentialRecord }>;
  /** The edge credential when valid now. */
  resolveEdgeCredential(token: string): Promise<EdgeCredentialRecord | null>;
  listEdgeCredentials(): Promise<EdgeCredentialRecord[]>;
  /** Revokes every credential of the edge; returns how many. */
  revokeEdgeCredentials(edgeId: string): Promise<number>;

  appendAudit(entry: AuditEntry): Promise<AuditRecord>;
  queryAudit(q: AuditQuery): Promise<AuditRecord[]>;

  close(): Promise<void>;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  disabled INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  ip TEXT
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS api_tokens (
  id TEXT PRIMARY KEY,
  user_id TEXT NOT NULL,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER,
  revoked_at INTEGER,
  last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS enrollment_tokens (
  id TEXT PRIMARY KEY,
  hash TEXT NOT NULL,
  edge_id TEXT,
  line TEXT,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  used_by_edge TEXT
);
CREATE TABLE IF NOT EXISTS edge_credentials (
  id TEXT PRIMARY KEY,
  edge_id TEXT NOT NULL,
  line TEXT,
  hash TEXT NOT NULL,
  broker_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX IF NOT EXISTS edge_credentials_edge ON edge_credentials (edge_id);
CREATE TABLE IF NOT EXISTS audit_log (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  target TEXT NOT NULL,
  source TEXT NOT NULL,
  outcome TEXT NOT NULL,
  before_json TEXT,
  after_json TEXT
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit_log (ts);
`;

export interface UserRow {
  id: string;
  username: string;
  role: string;
  password_hash: string;
  /** 0/1 in SQLite, a boolean in PostgreSQL. */
  disabled: number | boolean;
  created_at: number;
  updated_at: number;
}
export interface TokenRow {
  id: string;
  user_id: string;
  name: string;
  role: string;
  hash: string;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}
export interface SessionRow {
  id: string;
  user_id: string;
  hash: string;
  created_at: number;
  expires_at: number;
  ip: string | null;
}
export interface EnrollRow {
  id: string;
  hash: string;
  edge_id: string | null;
  line: string | null;
  created_by: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
  used_by_edge: string | null;
}
export interface CredRow {
  id: string;
  edge_id: string;
  line: string | null;
  hash: string;
  broker_hash: string;
  created_at: number;
  revoked_at: number | null;
}
export interface AuditRow {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string;
  source: string;
  outcome: string;
  before_json: string | null;
  after_json: string | null;
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/;

/** Throws OSP_ERR_BAD_REQUEST unless the username is 1–64 of letters, digits and `._@-`. */
export function checkUsername(username: string): void {
  if (!USERNAME.test(username)) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'a username is 1 to 64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit');
}

/** Throws OSP_ERR_BAD_REQUEST unless the password has MIN_PASSWORD_LENGTH to 1024 characters. */
export function checkPasswordRules(password: string): void {
  if (typeof password !== 'string' || password.length < MIN_PASSWORD_LENGTH) throw new OspreyError('OSP_ERR_BAD_REQUEST', `a password has at least ${MIN_PASSWORD_LENGTH} characters`);
  if (password.length > 1024) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'a password has at most 1024 characters');
}

/** Row to record mappers, shared by the SQLite and PostgreSQL stores. */
export function userOf(r: UserRow): UserRecord {
  return { id: r.id, username: r.username, role: r.role as Role, disabled: Boolean(r.disabled), createdAt: r.created_at, updatedAt: r.updated_at };
}
export function tokenOf(r: TokenRow): ApiTokenRecord {
  return { id: r.id, userId: r.user_id, name: r.name, role: r.role as Role, createdAt: r.created_at, expiresAt: r.expires_at, revokedAt: r.revoked_at, lastUsedAt: r.last_used_at };
}
export function sessionOf(r: SessionRow): SessionRecord {
  return { id: r.id, userId: r.user_id, createdAt: r.created_at, expiresAt: r.expires_at, ip: r.ip };
}
export function enrollOf(r: EnrollRow): EnrollmentTokenRecord {
  return { id: r.id, edgeId: r.edge_id, line: r.line, createdBy: r.created_by, createdAt: r.created_at, expiresAt: r.expires_at, usedAt: r.used_at, usedByEdge: r.used_by_edge };
}
export function credOf(r: CredRow): EdgeCredentialRecord {
  return { id: r.id, edgeId: r.edge_id, line: r.line, createdAt: r.created_at, revokedAt: r.revoked_at, brokerHash: r.broker_hash };
}
export function auditOf(r: AuditRow): AuditRecord {
  const rec: AuditRecord = { id: r.id, ts: r.ts, actor: r.actor, action: r.action, target: r.target, source: r.source, outcome: r.outcome };
  if (r.before_json !== null) rec.before = JSON.parse(r.before_json) as unknown;
  if (r.after_json !== null) rec.after = JSON.parse(r.after_json) as unknown;
  return rec;
}

/** Audit before/after values are kept, but never more than this much JSON each. */
const MAX_AUDIT_JSON = 64 * 1024;
/** An audit before/after value as stored: JSON, or a note of its size when over MAX_AUDIT_JSON. */
export function auditJson(value: unknown): string | null {
  if (value === undefined) return null;
  const json = JSON.stringify(value) ?? null;
  if (json === null || json.length <= MAX_AUDIT_JSON) return json;
  return JSON.stringify({ truncated: true, bytes: json.length });
}

/** Why a token was refused when it was spent already (maybe by a redemption at the same moment). */
export const ENROLLMENT_USED_ALREADY = 'the token was used already';

/** The OSP_ERR_UNAUTHENTICATED an edge gets for a refused enrollment. */
export function enrollmentRefused(why: string): OspreyError {
  return new OspreyError('OSP_ERR_UNAUTHENTICATED', `enrollment refused: ${why}`);
}

/** Why the stored token (found by the token's id) cannot enroll `edgeId` at `t`; null: it can. */
export function enrollmentRefusal(row: EnrollRow | undefined, secret: string, edgeId: string, t: number): string | null {
  if (!row || !secretMatches(secret, row.hash)) return 'unknown token';
  if (row.used_at !== null) return ENROLLMENT_USED_ALREADY;
  if (row.expires_at <= t) return 'the token expired';
  if (row.edge_id !== null && row.edge_id !== edgeId) return `the token is for another edge than ${edgeId}`;
  return null;
}

/** Why a line's token (made for no edge) cannot enroll an edge that holds a live credential. */
export function enrolledAlready(edgeId: string): string {
  return `${edgeId} is enrolled already; a line token enrolls new edges only (re-enroll it with a token made for ${edgeId})`;
}

export interface SqliteIdentityStoreOptions {
  /** The fleet database file (created when absent). */
  file: string;
  logger: Logger;
  now?: () => number;
}

/** The SQLite identity store, on its own connection to the fleet database. */
export function openSqliteIdentityStore(opts: SqliteIdentityStoreOptions): IdentityStore {
  return withNewConnection(opts.file, {}, (db) => {
    migrateIdentitySchema(db);
    return closingConnection(createSqliteIdentityStore(db, opts), db);
  });
}

/** Creates or upgrades the identity tables on an open connection (idempotent). */
export function migrateIdentitySchema(db: Database.Database): void {
  db.exec(SCHEMA);
}

/** The IdentityStore over an open, migrated connection it does not own (its close leaves the connection open). */
export function createSqliteIdentityStore(db: Database.Database, opts: SqliteIdentityStoreOptions): IdentityStore {
  const now = opts.now ?? Date.now;

  const st = {
    userById: db.prepare<[string], UserRow>('SELECT * FROM users WHERE id = ?'),
    userByName: db.prepare<[string], UserRow>('SELECT * FROM users WHERE username = ?'),
    users: db.prepare<[], UserRow>('SELECT * FROM users ORDER BY username'),
    countUsers: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM users'),
    insertUser: db.prepare('INSERT INTO users (id, username, role, password_hash, disabled, created_at, updated_at) VALUES (?, ?, ?, ?, 0, ?, ?)'),
    setPassword: db.prepare<[string, number, string]>('UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?'),
    setRole: db.prepare<[string, number, string]>('UPDATE users SET role = ?, updated_at = ? WHERE id = ?'),
    setDisabled: db.prepare<[number, number, string]>('UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?'),
    insertToken: db.prepare('INSERT INTO api_tokens (id, user_id, name, role, hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    tokenById: db.prepare<[string], TokenRow>('SELECT * FROM api_tokens WHERE id = ?'),
    tokens: db.prepare<[], TokenRow>('SELECT * FROM api_tokens ORDER BY created_at, id'),
    tokensOf: db.prepare<[string], TokenRow>('SELECT * FROM api_tokens WHERE user_id = ? ORDER BY created_at, id'),
    revokeToken: db.prepare<[number, string]>('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL'),
    touchToken: db.prepare<[number, string]>('UPDATE api_tokens SET last_used_at = ? WHERE id = ?'),
    insertSession: db.prepare('INSERT INTO sessions (id, user_id, hash, created_at, expires_at, ip) VALUES (?, ?, ?, ?, ?, ?)'),
    sessionById: db.prepare<[string], SessionRow>('SELECT * FROM sessions WHERE id = ?'),
    deleteSession: db.prepare<[string]>('DELETE FROM sessions WHERE id = ?'),
    deleteSessionsOf: db.prepare<[string]>('DELETE FROM sessions WHERE user_id = ?'),
    deleteExpiredSessions: db.prepare<[number]>('DELETE FROM sessions WHERE expires_at <= ?'),
    insertEnroll: db.prepare('INSERT INTO enrollment_tokens (id, hash, edge_id, line, created_by, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    enrollById: db.prepare<[string], EnrollRow>('SELECT * FROM enrollment_tokens WHERE id = ?'),
    enrolls: db.prepare<[], EnrollRow>('SELECT * FROM enrollment_tokens ORDER BY created_at, id'),
    spendEnroll: db.prepare<[number, string, string]>('UPDATE enrollment_tokens SET used_at = ?, used_by_edge = ? WHERE id = ? AND used_at IS NULL'),
    insertCred: db.prepare('INSERT INTO edge_credentials (id, edge_id, line, hash, broker_hash, created_at) VALUES (?, ?, ?, ?, ?, ?)'),
    credById: db.prepare<[string], CredRow>('SELECT * FROM edge_credentials WHERE id = ?'),
    creds: db.prepare<[], CredRow>('SELECT * FROM edge_credentials ORDER BY edge_id, created_at'),
    liveCredOf: db.prepare<[string], { id: string }>('SELECT id FROM edge_credentials WHERE edge_id = ? AND revoked_at IS NULL LIMIT 1'),
    revokeCreds: db.prepare<[number, string]>('UPDATE edge_credentials SET revoked_at = ? WHERE edge_id = ? AND revoked_at IS NULL'),
    insertAudit: db.prepare(
      'INSERT INTO audit_log (ts, actor, action, target, source, outcome, before_json, after_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
    ),
  };

  function requireUser(username: string): UserRow {
    const row = st.userByName.get(username);
    if (!row) throw new OspreyError('OSP_ERR_NOT_FOUND', `no user ${username}`);
    return row;
  }
  const userValid = (u: UserRow | undefined): u is UserRow => u !== undefined && u.disabled === 0;

  // Enrollment: check, spend and mint in one transaction, so a token is spent exactly once.
  // A token made for a line enrolls new edges only: an edge already holding a live credential is
  // re-enrolled only with a token made for it, so a line's token cannot take over a working edge.
  const redeem = db.transaction((tokenId: string, edgeId: string, credId: string, hash: string, brokerHash: string, t: number): CredRow | string => {
    const row = st.enrollById.get(tokenId)!;
    if (row.edge_id === null && st.liveCredOf.get(edgeId)) return enrolledAlready(edgeId);
    if (st.spendEnroll.run(t, edgeId, tokenId).changes !== 1) return ENROLLMENT_USED_ALREADY;
    st.revokeCreds.run(t, edgeId);
    st.insertCred.run(credId, edgeId, row.line, hash, brokerHash, t);
    return st.credById.get(credId)!;
  });

  const store: IdentityStore = {
    async verifyPassword(username, password) {
      const row = typeof username === 'string' && username.length <= 64 ? st.userByName.get(username) : undefined;
      const ok = await verifyPassword(String(password).slice(0, 1024), row?.password_hash ?? DUMMY_PASSWORD_HASH);
      return ok && userValid(row) ? userOf(row) : null;
    },
    async getUser(id) {
      const row = st.userById.get(id);
      return row ? userOf(row) : null;
    },
    async getUserByName(username) {
      const row = st.userByName.get(username);
      return row ? userOf(row) : null;
    },
    async listUsers() {
      return st.users.all().map(userOf);
    },
    async countUsers() {
      return st.countUsers.get()!.n;
    },
    async addUser({ username, password, role }) {
      checkUsername(username);
      if (!isRole(role)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `unknown role ${String(role)}`);
      checkPasswordRules(password);
      const hash = await hashPassword(password);
      if (st.userByName.get(username)) throw new OspreyError('OSP_ERR_CONFLICT', `user ${username} exists`);
      const t = now();
      const id = randomBytes(9).toString('base64url');
      st.insertUser.run(id, username, role, hash, t, t);
      return userOf(st.userById.get(id)!);
    },
    async setPassword(username, password) {
      checkPasswordRules(password);
      const hash = await hashPassword(password);
      const row = requireUser(username);
      db.transaction(() => {
        st.setPassword.run(hash, now(), row.id);
        st.deleteSessionsOf.run(row.id);
      })();
      return userOf(st.userById.get(row.id)!);
    },
    async setRole(username, role) {
      if (!isRole(role)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `unknown role ${String(role)}`);
      const row = requireUser(username);
      st.setRole.run(role, now(), row.id);
      return userOf(st.userById.get(row.id)!);
    },
    async setDisabled(username, disabled) {
      const row = requireUser(username);
      db.transaction(() => {
        st.setDisabled.run(disabled ? 1 : 0, now(), row.id);
        if (disabled) st.deleteSessionsOf.run(row.id);
      })();
      return userOf(st.userById.get(row.id)!);
    },

    async createApiToken({ userId, name, role, expiresAt }) {
      const user = st.userById.get(userId);
      if (!userValid(user)) throw new OspreyError('OSP_ERR_NOT_FOUND', `no enabled user ${userId}`);
      if (!isRole(role)) throw new OspreyError('OSP_ERR_BAD_REQUEST', `unknown role ${String(role)}`);
      if (!roleCovers(user.role as Role, role)) throw new OspreyError('OSP_ERR_FORBIDDEN', `a ${user.role} cannot make a token with the role ${role}`);
      if (typeof name !== 'string' || name.length < 1 || name.length > 100) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'a token name has 1 to 100 characters');
      const t = now();
      if (expiresAt !== null && !(expiresAt > t)) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'a token expiry must be in the future');
      const m = mintSecret('apiToken');
      st.insertToken.run(m.id, userId, name, role, m.hash, t, expiresAt);
      return { token: m.token, record: tokenOf(st.tokenById.get(m.id)!) };
    },
    async listApiTokens(userId) {
      return (userId === undefined ? st.tokens.all() : st.tokensOf.all(userId)).map(tokenOf);
    },
    async getApiToken(id) {
      const row = st.tokenById.get(id);
      return row ? tokenOf(row) : null;
    },
    async revokeApiToken(id) {
      const row = st.tokenById.get(id);
      if (!row) throw new OspreyError('OSP_ERR_NOT_FOUND', `no API token ${id}`);
      st.revokeToken.run(now(), id);
      return tokenOf(st.tokenById.get(id)!);
    },
    async resolveApiToken(token) {
      const parsed = parseSecret('apiToken', token);
      if (!parsed) return null;
      const row = st.tokenById.get(parsed.id);
      if (!row || !secretMatches(parsed.secret, row.hash)) return null;
      const t = now();
      if (row.revoked_at !== null || (row.expires_at !== null && row.expires_at <= t)) return null;
      const user = st.userById.get(row.user_id);
      if (!userValid(user)) return null;
      // At most one write a minute per token: "last used" is for people, not an access log.
      if (row.last_used_at === null || t - row.last_used_at > 60_000) st.touchToken.run(t, row.id);
      return { token: tokenOf(row), user: userOf(user) };
    },

    async createSession({ userId, ttlMs, ip }) {
      const t = now();
      st.deleteExpiredSessions.run(t);
      const m = mintSecret('session');
      st.insertSession.run(m.id, userId, m.hash, t, t + ttlMs, ip);
      return { token: m.token, record: sessionOf(st.sessionById.get(m.id)!) };
    },
    async resolveSession(token) {
      const parsed = parseSecret('session', token);
      if (!parsed) return null;
      const row = st.sessionById.get(parsed.id);
      if (!row || !secretMatches(parsed.secret, row.hash) || row.expires_at <= now()) return null;
      const user = st.userById.get(row.user_id);
      if (!userValid(user)) return null;
      return { session: sessionOf(row), user: userOf(user) };
    },
    async deleteSession(id) {
      st.deleteSession.run(id);
    },

    async createEnrollmentToken({ edgeId, line, ttlMs, createdBy }) {
      const t = now();
      const m = mintSecret('enrollment');
      st.insertEnroll.run(m.id, m.hash, edgeId, line, createdBy, t, t + ttlMs);
      return { token: m.token, record: enrollOf(st.enrollById.get(m.id)!) };
    },
    async listEnrollmentTokens() {
      return st.enrolls.all().map(enrollOf);
    },
    async redeemEnrollmentToken(token, edgeId) {
      const parsed = parseSecret('enrollment', token);
      if (!parsed) throw enrollmentRefused('not an enrollment token');
      const row = st.enrollById.get(parsed.id);
      const t = now();
      const why = enrollmentRefusal(row, parsed.secret, edgeId, t);
      if (why !== null || !row) throw enrollmentRefused(why ?? 'unknown token');
      const m = mintSecret('edgeCredential');
      // IMMEDIATE: the write lock is taken (waiting on busy_timeout) before the read, so a busy fleet
      // writing the same file cannot make the read-then-write fail with SQLITE_BUSY half-way.
      const cred = redeem.immediate(row.id, edgeId, m.id, m.hash, mosquittoHash(m.token), t);
      if (typeof cred === 'string') throw enrollmentRefused(cred);
      return { credential: m.token, record: credOf(cred) };
    },
    async resolveEdgeCredential(token) {
      const parsed = parseSecret('edgeCredential', token);
      if (!parsed) return null;
      const row = st.credById.get(parsed.id);
      if (!row || row.revoked_at !== null || !secretMatches(parsed.secret, row.hash)) return null;
      return credOf(row);
    },
    async listEdgeCredentials() {
      return st.creds.all().map(credOf);
    },
    async revokeEdgeCredentials(edgeId) {
      return st.revokeCreds.run(now(), edgeId).changes;
    },

    async appendAudit(e) {
      const ts = now();
      const info = st.insertAudit.run(ts, e.actor, e.action, e.target, e.source, e.outcome, auditJson(e.before), auditJson(e.after));
      return { ...e, id: Number(info.lastInsertRowid), ts };
    },
    async queryAudit(q) {
      const where: string[] = [];
      const args: (string | number)[] = [];
      if (q.from !== undefined) (where.push('ts >= ?'), args.push(q.from));
      if (q.to !== undefined) (where.push('ts < ?'), args.push(q.to));
      if (q.actor !== undefined) (where.push('actor = ?'), args.push(q.actor));
      if (q.action !== undefined) (where.push("action LIKE ? ESCAPE '\\'"), args.push(`${q.action.replace(/[\\%_]/g, (c) => `\\${c}`)}%`));
      if (q.beforeId !== undefined) (where.push('id < ?'), args.push(q.beforeId));
      const limit = Math.min(Math.max(1, q.limit ?? 100), 1000);
      const sql = `SELECT * FROM audit_log ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id DESC LIMIT ${limit}`;
      return db.prepare<(string | number)[], AuditRow>(sql).all(...args).map(auditOf);
    },

    async close() {
      // The connection belongs to whoever opened it.
    },
  };
  return store;
}
