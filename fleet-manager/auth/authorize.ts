/**
 * Authorization of the fleet's HTTP API, in one place. Every route declares the permission it
 * needs (`config: { permission }`); a route without one cannot be registered. One onRequest hook
 * authenticates the caller — an API token or edge credential as `Authorization: Bearer`, or the
 * session cookie (with the CSRF header on state changes) — and refuses with 401 or 403 before
 * any route code or body parsing runs. One onResponse hook writes the audit row of every state
 * change that succeeded.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { OspreyError } from '../../protocol/errors.js';
import type { IdentityStore } from '../identity-store.js';
import { anonymousPrincipal, can, describePrincipal, type Principal } from './principal.js';
import { PERMISSIONS, isSafeMethod, roleCovers, type Permission } from './roles.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** What the caller must hold; every route declares one. */
    permission?: Permission;
    /** False: successful calls are not audited (data an edge sends, not a change people make). */
    audit?: boolean;
  }
  interface FastifyRequest {
    /** Who is calling; undefined on a public route called without a credential. */
    principal?: Principal;
    /** What the audit row of this request says beyond who/what/when/where (set by the route). */
    auditNote?: AuditNote;
    /** Set when a follower forwarded this request to the fleet leader (leader-forward.ts): the leader authorizes and audits it. */
    forwardedTo?: string;
  }
}

export interface AuditNote {
  /** Overrides `METHOD /path` (e.g. `rollout.abort`). */
  action?: string;
  /** Overrides the path (e.g. `model:ok@1.0.0`). */
  target?: string;
  before?: unknown;
  after?: unknown;
}

export const SESSION_COOKIE = 'osprey_session';
export const CSRF_HEADER = 'x-osprey-csrf';

/** The CSRF token of a session: derived from its secret cookie, so it needs no storage. */
export function csrfTokenFor(sessionToken: string): string {
  return createHash('sha256').update(`osprey-csrf\n${sessionToken}`).digest('base64url');
}

/** The value of one cookie in a Cookie header (first occurrence); undefined when absent. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header || header.length > 16_384) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Constant-time equality of two strings (a CSRF token is a secret too). */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Keys whose values never reach the audit log. */
const SECRET_KEY = /pass(word)?|secret|token|credential|private/i;

/** A copy of a JSON body with secrets replaced (depth-bounded). */
export function redactSecrets(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') return value;
  if (Buffer.isBuffer(value)) return `[${value.length} bytes]`;
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => redactSecrets(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_KEY.test(k) ? '[redacted]' : redactSecrets(v, depth + 1);
  return out;
}

export interface RouteRecord {
  method: string;
  url: string;
  permission: Permission;
}

export interface AuthorizationDeps {
  identity: IdentityStore;
  logger: Logger;
  /**
   * False (config `auth.enabled: false`; the fleet then listens on loopback only): no credential
   * is read, and every request acts as one anonymous principal holding every permission. Default true.
   */
  enabled?: boolean;
}

export interface Authorization {
  /** Every registered route with its permission (the route-walker test reads it). */
  routes(): readonly RouteRecord[];
}

/** Installs the hooks on the root app; call it before registering any route. */
export function installAuthorization(app: FastifyInstance, deps: AuthorizationDeps): Authorization {
  const { identity } = deps;
  const log = deps.logger;
  const routes: RouteRecord[] = [];
  const known = new Set<string>(PERMISSIONS);

  app.decorateRequest('principal', undefined);
  app.decorateRequest('auditNote', undefined);
  app.decorateRequest('forwardedTo', undefined);

  app.addHook('onRoute', (route) => {
    const permission = route.config?.permission;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (permission === undefined || !known.has(permission)) {
      throw new Error(`route ${methods.join(',')} ${route.url} declares no permission (config.permission)`);
    }
    for (const method of methods) routes.push({ method, url: route.url, permission });
  });

  async function authenticate(req: FastifyRequest): Promise<{ principal?: Principal; refused?: string; csrfOk?: boolean }> {
    const auth = req.headers.authorization;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)$/i.exec(auth);
      if (!m) return { refused: 'the Authorization header is not "Bearer <token>"' };
      const token = m[1]!;
      if (token.startsWith('ospe_')) {
        const cred = await identity.resolveEdgeCredential(token);
        if (!cred) return { refused: 'the edge credential is unknown or revoked' };
        return { principal: { kind: 'edge', id: cred.edgeId, credentialId: cred.id }, csrfOk: true };
      }
      const found = await identity.resolveApiToken(token);
      if (!found) return { refused: 'the API token is unknown, expired or revoked' };
      // A token never acts beyond its owner's current role: demoting a user demotes their tokens.
      const { role: held } = found.user;
      const role = roleCovers(held, found.token.role) ? found.token.role : roleCovers(found.token.role, held) ? held : 'viewer';
      return { principal: { kind: 'user', id: found.user.id, name: found.user.username, role, via: 'token', credentialId: found.token.id }, csrfOk: true };
    }
    const cookie = readCookie(req.headers.cookie, SESSION_COOKIE);
    if (cookie === undefined) return {};
    const found = await identity.resolveSession(cookie);
    if (!found) return { refused: 'the session expired or was ended; sign in again' };
    const csrf = req.headers[CSRF_HEADER];
    return {
      principal: { kind: 'user', id: found.user.id, name: found.user.username, role: found.user.role, via: 'session', credentialId: found.session.id },
      csrfOk: typeof csrf === 'string' && sameText(csrf, csrfTokenFor(cookie)),
    };
  }

  // Authentication off: one principal for everyone, minted only here and only in this mode.
  const anonymous = deps.enabled === false ? anonymousPrincipal() : undefined;

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const permission = req.routeOptions.config.permission;
    // No route matched: the 404 handler answers, and says nothing about what exists.
    if (permission === undefined) return;
    if (anonymous) {
      req.principal = anonymous;
      return;
    }
    const { principal, refused, csrfOk } = await authenticate(req);
    if (permission === 'public') {
      if (principal) req.principal = principal;
      return;
    }
    if (!principal) {
      reply.header('www-authenticate', 'Bearer realm="osprey"');
      log.info({ method: req.method, url: req.routeOptions.url, ip: req.ip, reason: refused ?? 'no credential' }, 'request refused: not authenticated');
      throw new OspreyError('OSP_ERR_UNAUTHENTICATED', refused ?? `${req.method} ${req.routeOptions.url} needs a credential: sign in, or send "Authorization: Bearer <token>"`);
    }
    req.principal = principal;
    if (!isSafeMethod(req.method) && !csrfOk) {
      log.warn({ method: req.method, url: req.routeOptions.url, ip: req.ip, who: describePrincipal(principal) }, 'request refused: CSRF header missing or wrong');
      throw new OspreyError('OSP_ERR_FORBIDDEN', `a state change from a session needs the ${CSRF_HEADER} header it was given at sign-in`);
    }
    if (!can(principal, permission)) {
      log.warn({ method: req.method, url: req.routeOptions.url, ip: req.ip, who: describePrincipal(principal), permission }, 'request refused: not permitted');
      const as = principal.kind === 'user' ? `the role ${principal.role}` : 'an edge credential';
      throw new OspreyError('OSP_ERR_FORBIDDEN', `${req.method} ${req.routeOptions.url} needs the permission ${permission}, which ${as} does not have`);
    }
  });

  app.addHook('onResponse', async (req, reply) => {
    const config = req.routeOptions.config;
    if (config.permission === undefined || config.audit === false || isSafeMethod(req.method) || reply.statusCode >= 400) return;
    // Answered by the leader, which authenticated the caller's own credential and audits the change there.
    if (req.forwardedTo !== undefined) return;
    const note = req.auditNote ?? {};
    const path = req.url.split('?')[0]!;
    try {
      await identity.appendAudit({
        actor: describePrincipal(req.principal),
        action: note.action ?? `${req.method} ${req.routeOptions.url}`,
        target: note.target ?? path,
        source: auditSource(req),
        outcome: String(reply.statusCode),
        before: note.before,
        after: note.after !== undefined ? note.after : Buffer.isBuffer(req.body) ? undefined : redactSecrets(req.body),
      });
    } catch (err) {
      // The change is made; a lost audit row must be loud.
      log.error({ err, method: req.method, url: path }, 'audit row could not be written');
    }
  });

  return { routes: () => routes };
}

/**
 * Where a change came from: the peer's address, and for a request a follower forwarded
 * (x-osprey-forwarded) the caller it names first. The claimed caller is taken from a header any
 * client could send, so the peer that really connected is always kept beside it.
 */
function auditSource(req: FastifyRequest): string {
  const by = req.headers['x-osprey-forwarded'];
  const chain = req.headers['x-forwarded-for'];
  if (typeof by !== 'string' || typeof chain !== 'string') return req.ip;
  const caller = chain.split(',').pop()!.trim().slice(0, 64);
  return caller ? `${caller} via ${req.ip}` : req.ip;
}
