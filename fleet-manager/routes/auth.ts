/**
 * Sign-in, sign-out and "who am I": a person's password becomes a session (an HttpOnly,
 * SameSite=Strict cookie; Secure over TLS) that expires after auth.sessionTtlMs. Failed sign-ins
 * are limited per client IP and per username (429 with Retry-After). Passwords are never logged.
 */
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { OspreyError } from '../../protocol/errors.js';
import { errorResponses } from '../http-schemas.js';
import { SessionInfoSchema, SessionStateSchema, SignInBodySchema, type SignInBody } from '../people-schemas.js';
import type { IdentityStore, UserRecord } from '../identity-store.js';
import { SESSION_COOKIE, csrfTokenFor, readCookie } from '../auth/authorize.js';
import { describePrincipal } from '../auth/principal.js';
import { ROLE_PERMISSIONS, type Role } from '../auth/roles.js';
import type { SignInLimiter } from '../sign-in-limiter.js';

export interface AuthRouteDeps {
  identity: IdentityStore;
  /** Session lifetime (config auth.sessionTtlMs). */
  sessionTtlMs: number;
  limiter: SignInLimiter;
}

/** The Set-Cookie value of a session (or, with token null, of its removal). */
export function sessionCookie(token: string | null, maxAgeMs: number, secure: boolean): string {
  const parts = [`${SESSION_COOKIE}=${token ?? ''}`, 'HttpOnly', 'SameSite=Strict', 'Path=/', `Max-Age=${token === null ? 0 : Math.floor(maxAgeMs / 1000)}`];
  if (secure) parts.push('Secure');
  return parts.join('; ');
}

/** A user as the API shows it (never the password hash). */
export const userView = (u: UserRecord) => ({ id: u.id, username: u.username, role: u.role, disabled: u.disabled, createdAt: u.createdAt, updatedAt: u.updatedAt });

/** The permissions of a role, sorted (the console shows a person only what these allow). */
const permissionsOf = (role: Role) => [...ROLE_PERMISSIONS[role]].sort();

/** Registers /api/auth/sign-in, /api/auth/sign-out, /api/auth/me and /api/auth/session. */
export const authRoutes: FastifyPluginAsync<AuthRouteDeps> = async (app, deps) => {
  const { identity, limiter } = deps;
  const secure = (req: FastifyRequest) => req.protocol === 'https';

  app.post<{ Body: SignInBody }>(
    '/api/auth/sign-in',
    { config: { permission: 'public' }, schema: { body: SignInBodySchema, response: { 200: SessionInfoSchema, ...errorResponses } } },
    async (req, reply) => {
      const { username, password } = req.body;
      // Usernames are compared as typed, but "Alice" and "alice" share one failure budget.
      const keys = [`ip:${req.ip}`, `user:${username.toLowerCase()}`];
      const waitMs = limiter.attempt(keys);
      if (waitMs > 0) {
        req.log.warn({ ip: req.ip, username }, 'sign-in refused: too many failures');
        reply.header('retry-after', String(Math.ceil(waitMs / 1000)));
        throw new OspreyError('OSP_ERR_RATE_LIMITED', `too many failed sign-ins from this address or for this user; retry in ${Math.ceil(waitMs / 1000)} s`);
      }
      const user = await identity.verifyPassword(username, password);
      if (!user) {
        req.log.info({ ip: req.ip, username }, 'sign-in refused: wrong username or password');
        throw new OspreyError('OSP_ERR_UNAUTHENTICATED', 'wrong username or password, or the user is disabled');
      }
      limiter.forgive(keys);
      const { token, record } = await identity.createSession({ userId: user.id, ttlMs: deps.sessionTtlMs, ip: req.ip });
      req.principal = { kind: 'user', id: user.id, name: user.username, role: user.role, via: 'session', credentialId: record.id };
      req.auditNote = { action: 'auth.sign-in', target: `user:${user.username}`, after: { session: record.id, expiresAt: record.expiresAt } };
      req.log.info({ user: user.username, ip: req.ip, session: record.id }, 'signed in');
      reply.header('set-cookie', sessionCookie(token, deps.sessionTtlMs, secure(req)));
      return { user: userView(user), role: user.role, via: 'session' as const, csrfToken: csrfTokenFor(token), permissions: permissionsOf(user.role) };
    },
  );

  app.post(
    '/api/auth/sign-out',
    { config: { permission: 'self' }, schema: { response: { 204: { description: 'signed out; the session cookie is cleared', type: 'null' }, ...errorResponses } } },
    async (req: FastifyRequest, reply: FastifyReply) => {
      const p = req.principal!;
      if (p.kind === 'user' && p.via === 'session') await identity.deleteSession(p.credentialId);
      req.auditNote = { action: 'auth.sign-out', target: describePrincipal(p) };
      return reply.header('set-cookie', sessionCookie(null, 0, secure(req))).code(204).send();
    },
  );

  // Public: a browser asks whether its cookie is still a session and gets a 200 either way (the
  // console's first question; a 401 would be an error in every signed-out browser's console).
  app.get('/api/auth/session', { config: { permission: 'public' }, schema: { response: { 200: SessionStateSchema, ...errorResponses } } }, async (req) => {
    const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
    const found = cookie === undefined ? null : await identity.resolveSession(cookie);
    if (!found || cookie === undefined) return { session: null };
    const { user } = found;
    return { session: { user: userView(user), role: user.role, via: 'session' as const, csrfToken: csrfTokenFor(cookie), permissions: permissionsOf(user.role) } };
  });

  app.get('/api/auth/me', { config: { permission: 'self' }, schema: { response: { 200: SessionInfoSchema, ...errorResponses } } }, async (req) => {
    const p = req.principal!;
    if (p.kind !== 'user') throw new OspreyError('OSP_ERR_FORBIDDEN', 'an edge credential is not a person');
    const user = await identity.getUser(p.id);
    if (!user) throw new OspreyError('OSP_ERR_UNAUTHENTICATED', 'the user no longer exists');
    const cookie = p.via === 'session' ? readCookie(req.headers.cookie, SESSION_COOKIE) : undefined;
    return { user: userView(user), role: p.role, via: p.via, csrfToken: cookie === undefined ? null : csrfTokenFor(cookie), permissions: permissionsOf(p.role) };
  });
};
