/**
 * People and credentials over HTTP: users (admin), API tokens (each person their own; all of
 * them with tokens:admin), edge enrollment tokens and edge credentials (edges:enroll), and the
 * audit log (audit:read). Secrets are answered once, at creation, and never stored or audited.
 */
import type { FastifyPluginAsync } from 'fastify';
import type { Static } from '@sinclair/typebox';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import {
  AddUserBodySchema,
  ApiTokensSchema,
  AuditEntriesSchema,
  AuditQuerySchema,
  CreateEnrollmentBodySchema,
  CreateTokenBodySchema,
  CreatedEnrollmentSchema,
  CreatedTokenSchema,
  EdgeCredentialsSchema,
  EdgeIdParamsSchema,
  EnrollmentTokensSchema,
  PasswordBodySchema,
  PatchUserBodySchema,
  RevokedSchema,
  TokenParamsSchema,
  UserViewSchema,
  UsernameParamsSchema,
  UsersSchema,
  type AddUserBody,
  type AuditQueryString,
  type CreateEnrollmentBody,
  type CreateTokenBody,
  type PatchUserBody,
} from '../people-schemas.js';
import type { ApiTokenRecord, EdgeCredentialRecord, IdentityStore } from '../identity-store.js';
import { can, describePrincipal, type Principal } from '../auth/principal.js';
import { roleCovers } from '../auth/roles.js';
import { userView } from './auth.js';

export interface UserRouteDeps {
  identity: IdentityStore;
  now: () => number;
  /** Drops the live MQTT connections of an edge whose credentials were revoked; returns how many. */
  disconnectEdge?: (edgeId: string) => number;
}

const DAY_MS = 86_400_000;
const DEFAULT_TOKEN_DAYS = 90;
const DEFAULT_ENROLLMENT_TTL_S = 3600;

type UserParams = { Params: Static<typeof UsernameParamsSchema> };

/** The person behind a request to a 'self' route (edges do not hold 'self'). */
function person(p: Principal | undefined): Extract<Principal, { kind: 'user' }> {
  if (p?.kind !== 'user') throw new OspreyError('OSP_ERR_FORBIDDEN', 'only people have API tokens');
  return p;
}

const credentialView = (c: EdgeCredentialRecord) => ({ id: c.id, edgeId: c.edgeId, line: c.line, createdAt: c.createdAt, revokedAt: c.revokedAt });

/** Registers the user, token, enrollment, edge-credential and audit routes. */
export const userRoutes: FastifyPluginAsync<UserRouteDeps> = async (app, deps) => {
  const { identity } = deps;
  const ADMIN = { permission: 'users:admin' } as const;

  async function tokenView(records: ApiTokenRecord[]) {
    const names = new Map((await identity.listUsers()).map((u) => [u.id, u.username]));
    return records.map((t) => ({ id: t.id, username: names.get(t.userId) ?? null, name: t.name, role: t.role, createdAt: t.createdAt, expiresAt: t.expiresAt, revokedAt: t.revokedAt, lastUsedAt: t.lastUsedAt }));
  }

  /** Refuses a change that would leave the fleet without an enabled admin (nobody could undo it). */
  async function keepAnAdmin(username: string, change: PatchUserBody): Promise<void> {
    const losesAdmin = (change.role !== undefined && change.role !== 'admin') || change.disabled === true;
    if (!losesAdmin) return;
    const admins = (await identity.listUsers()).filter((u) => u.role === 'admin' && !u.disabled);
    if (admins.length === 1 && admins[0]!.username === username) {
      throw new OspreyError('OSP_ERR_CONFLICT', `${username} is the last enabled admin; make another admin first`);
    }
  }

  // Users.
  app.get('/api/users', { config: ADMIN, schema: { response: { 200: UsersSchema, ...errorResponses } } }, async () => ({
    users: (await identity.listUsers()).map(userView),
  }));

  app.post<{ Body: AddUserBody }>(
    '/api/users',
    { config: ADMIN, schema: { body: AddUserBodySchema, response: { 201: UserViewSchema, ...errorResponses } } },
    async (req, reply) => {
      const user = await identity.addUser(req.body);
      req.auditNote = { action: 'user.add', target: `user:${user.username}`, after: { role: user.role } };
      return reply.code(201).send(userView(user));
    },
  );

  app.patch<UserParams & { Body: PatchUserBody }>(
    '/api/users/:username',
    { config: ADMIN, schema: { params: UsernameParamsSchema, body: PatchUserBodySchema, response: { 200: UserViewSchema, ...errorResponses } } },
    async (req) => {
      const { username } = req.params;
      const before = await identity.getUserByName(username);
      if (!before) throw new OspreyError('OSP_ERR_NOT_FOUND', `no user ${username}`);
      await keepAnAdmin(username, req.body);
      let user = before;
      if (req.body.role !== undefined) user = await identity.setRole(username, req.body.role);
      if (req.body.disabled !== undefined) user = await identity.setDisabled(username, req.body.disabled);
      req.auditNote = {
        action: 'user.update',
        target: `user:${username}`,
        before: { role: before.role, disabled: before.disabled },
        after: { role: user.role, disabled: user.disabled },
      };
      return userView(user);
    },
  );

  app.put<UserParams & { Body: Static<typeof PasswordBodySchema> }>(
    '/api/users/:username/password',
    { config: ADMIN, schema: { params: UsernameParamsSchema, body: PasswordBodySchema, response: { 200: UserViewSchema, ...errorResponses } } },
    async (req) => {
      const user = await identity.setPassword(req.params.username, req.body.password);
      // The password itself never reaches the audit log; that it changed does.
      req.auditNote = { action: 'user.password', target: `user:${user.username}`, after: { sessionsEnded: true } };
      return userView(user);
    },
  );

  // API tokens: a person's own; tokens:admin sees and revokes everyone's.
  app.post<{ Body: CreateTokenBody }>(
    '/api/tokens',
    { config: { permission: 'self' }, schema: { body: CreateTokenBodySchema, response: { 201: CreatedTokenSchema, ...errorResponses } } },
    async (req, reply) => {
      const p = person(req.principal);
      const role = req.body.role ?? p.role;
      // Never more than the credential asking: a narrow token cannot mint a wider one.
      if (!roleCovers(p.role, role)) throw new OspreyError('OSP_ERR_FORBIDDEN', `a ${p.role} cannot make a token with the role ${role}`);
      const expiresAt = deps.now() + (req.body.expiresInDays ?? DEFAULT_TOKEN_DAYS) * DAY_MS;
      const { token, record } = await identity.createApiToken({ userId: p.id, name: req.body.name, role, expiresAt });
      req.auditNote = { action: 'token.create', target: `token:${record.id}`, after: { owner: p.name, name: record.name, role: record.role, expiresAt } };
      return reply.code(201).send({ token, record: (await tokenView([record]))[0]! });
    },
  );

  app.get('/api/tokens', { config: { permission: 'self' }, schema: { response: { 200: ApiTokensSchema, ...errorResponses } } }, async (req) => {
    const p = person(req.principal);
    const all = can(p, 'tokens:admin');
    return { tokens: await tokenView(await identity.listApiTokens(all ? undefined : p.id)) };
  });

  app.delete<{ Params: Static<typeof TokenParamsSchema> }>(
    '/api/tokens/:id',
    { config: { permission: 'self' }, schema: { params: TokenParamsSchema, response: { 200: ApiTokensSchema.properties.tokens.items, ...errorResponses } } },
    async (req) => {
      const p = person(req.principal);
      const found = await identity.getApiToken(req.params.id);
      // Someone else's token is "not found" to whoever may not revoke it: ids are not disclosed.
      if (!found || (found.userId !== p.id && !can(p, 'tokens:admin'))) throw new OspreyError('OSP_ERR_NOT_FOUND', `no API token ${req.params.id}`);
      const revoked = await identity.revokeApiToken(found.id);
      req.auditNote = { action: 'token.revoke', target: `token:${found.id}`, before: { revokedAt: found.revokedAt }, after: { revokedAt: revoked.revokedAt } };
      return (await tokenView([revoked]))[0]!;
    },
  );

  // Edge enrollment and credentials.
  const ENROLL = { permission: 'edges:enroll' } as const;
  app.post<{ Body: CreateEnrollmentBody }>(
    '/api/enrollment-tokens',
    { config: ENROLL, schema: { body: CreateEnrollmentBodySchema, response: { 201: CreatedEnrollmentSchema, ...errorResponses } } },
    async (req, reply) => {
      const { edgeId = null, line = null, ttlSeconds = DEFAULT_ENROLLMENT_TTL_S } = req.body;
      if (edgeId === null && line === null) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'body must name edgeId or line (the edge or line the token enrolls)');
      const { token, record } = await identity.createEnrollmentToken({ edgeId, line, ttlMs: ttlSeconds * 1000, createdBy: describePrincipal(req.principal) });
      req.auditNote = { action: 'enrollment.create', target: edgeId !== null ? `edge:${edgeId}` : `line:${line}`, after: { id: record.id, edgeId, line, expiresAt: record.expiresAt } };
      return reply.code(201).send({ token, record });
    },
  );

  app.get('/api/enrollment-tokens', { config: ENROLL, schema: { response: { 200: EnrollmentTokensSchema, ...errorResponses } } }, async () => ({
    tokens: await identity.listEnrollmentTokens(),
  }));

  app.get('/api/edge-credentials', { config: ENROLL, schema: { response: { 200: EdgeCredentialsSchema, ...errorResponses } } }, async () => ({
    credentials: (await identity.listEdgeCredentials()).map(credentialView),
  }));

  app.delete<{ Params: Static<typeof EdgeIdParamsSchema> }>(
    '/api/edges/:id/credentials',
    { config: ENROLL, schema: { params: EdgeIdParamsSchema, response: { 200: RevokedSchema, ...errorResponses } } },
    async (req) => {
      const revoked = await identity.revokeEdgeCredentials(req.params.id);
      if (revoked === 0) throw new OspreyError('OSP_ERR_NOT_FOUND', `edge ${req.params.id} has no valid credential`);
      // Revoked means cut off now, not at the edge's next reconnect.
      const disconnected = deps.disconnectEdge?.(req.params.id) ?? 0;
      req.auditNote = { action: 'edge.revoke', target: `edge:${req.params.id}`, after: { revoked, disconnected } };
      return { edgeId: req.params.id, revoked };
    },
  );

  // The audit log, newest first, a page at a time.
  app.get<{ Querystring: AuditQueryString }>(
    '/api/audit',
    { config: { permission: 'audit:read' }, schema: { querystring: AuditQuerySchema, response: { 200: AuditEntriesSchema, ...errorResponses } } },
    async (req) => {
      const limit = req.query.limit ?? 100;
      const entries = await identity.queryAudit({ ...req.query, limit });
      return { entries, nextBeforeId: entries.length === limit ? entries[entries.length - 1]!.id : null };
    },
  );
};
