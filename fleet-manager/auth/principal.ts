/** Who made a request, once authenticated (fleet-manager/auth/authorize.ts). */
import { EDGE_PERMISSIONS, ROLE_PERMISSIONS, type Permission, type Role } from './roles.js';

export type Principal =
  | {
      kind: 'user';
      /** The user's id in the directory. */
      id: string;
      /** Username, as people read it in the audit log. */
      name: string;
      /** The role this request acts with: the user's role, or the API token's narrower one. */
      role: Role;
      via: 'session' | 'token';
      /** The session or API token id (never its secret). */
      credentialId: string;
    }
  | {
      kind: 'edge';
      /** The edge id the credential is bound to. */
      id: string;
      credentialId: string;
    }
  /** Every caller of a fleet started with `auth.enabled: false` (loopback only); see anonymousPrincipal(). */
  | { kind: 'anonymous' };

/**
 * The anonymous principals minted by anonymousPrincipal(): only these hold permissions. An object
 * that merely looks like `{ kind: 'anonymous' }` holds none, so the kind cannot be forged.
 */
const minted = new WeakSet<Principal>();

/**
 * The principal of every request to an app built with authentication off (authorize.ts is the
 * only caller, and only then). It holds every permission.
 */
export function anonymousPrincipal(): Principal {
  const p: Principal = Object.freeze({ kind: 'anonymous' as const });
  minted.add(p);
  return p;
}

/** True when the principal holds `permission`; 'public' holds for everyone. */
export function can(principal: Principal | undefined, permission: Permission): boolean {
  if (permission === 'public') return true;
  if (!principal) return false;
  if (principal.kind === 'anonymous') return minted.has(principal);
  if (principal.kind === 'edge') return EDGE_PERMISSIONS.has(permission);
  return ROLE_PERMISSIONS[principal.role].has(permission);
}

/** The audit log's name for a principal: `user:alice`, `edge:edge-7`, `anonymous`. */
export function describePrincipal(p: Principal | undefined): string {
  if (!p || p.kind === 'anonymous') return 'anonymous';
  return p.kind === 'edge' ? `edge:${p.id}` : `user:${p.name}`;
}
