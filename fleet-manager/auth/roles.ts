/**
 * Who may do what on the fleet: the permissions routes declare, the roles people hold, and what
 * an edge's own credential allows. The one table every authorization decision reads
 * (docs/SECURITY.md "Roles").
 */

/** What a route needs. 'public' routes answer without a credential. */
export const PERMISSIONS = [
  'public',
  // Edges, lines, statistics, rollouts, models and config layers, read-only.
  'fleet:read',
  // GET /metrics: aggregate figures for Prometheus (every role; a viewer's API token is what Prometheus uses).
  'metrics:read',
  // Result rows and their images (a manufacturer's confidential pictures).
  'results:read',
  // Marking results as reviewed (the inspector's verdict on a result).
  'results:review',
  // Config layers and thresholds of the fleet, a line or an edge.
  'config:write',
  // Pause, resume, abort and roll back rollouts; roll a line back.
  'rollouts:control',
  // Upload model versions.
  'registry:write',
  // Start rollouts.
  'rollouts:write',
  // Start and cancel training jobs on the fleet (issue 15).
  'training:write',
  // Acknowledge alerts (issue 17): the people who act on the floor or release models.
  'alerts:ack',
  // Webhook subscriptions of alert notifications (issue 17): their URLs are secrets of chat tools.
  'alerts:admin',
  // Download model artifacts (edges, and people who release them).
  'artifacts:read',
  // Upload result images (an edge, for its own results only).
  'images:upload',
  // Users, API tokens of anyone, edge enrollment and credentials, the audit log.
  'users:admin',
  'tokens:admin',
  'edges:enroll',
  'audit:read',
  // Own session and API tokens: every signed-in person.
  'self',
] as const;
export type Permission = (typeof PERMISSIONS)[number];

export const ROLES = ['admin', 'release-manager', 'operator', 'inspector', 'viewer'] as const;
export type Role = (typeof ROLES)[number];

const VIEWER: readonly Permission[] = ['self', 'fleet:read', 'metrics:read'];

/** Each role's permissions ('public' is everyone's and not listed). */
export const ROLE_PERMISSIONS: Readonly<Record<Role, ReadonlySet<Permission>>> = {
  viewer: new Set(VIEWER),
  inspector: new Set([...VIEWER, 'results:read', 'results:review', 'alerts:ack']),
  operator: new Set([...VIEWER, 'results:read', 'config:write', 'rollouts:control', 'alerts:ack']),
  'release-manager': new Set([...VIEWER, 'results:read', 'registry:write', 'rollouts:write', 'rollouts:control', 'artifacts:read', 'training:write', 'alerts:ack']),
  admin: new Set(PERMISSIONS.filter((p) => p !== 'public' && p !== 'images:upload')),
};

/** What an edge's credential allows; which edge's data it may touch is checked by the route. */
export const EDGE_PERMISSIONS: ReadonlySet<Permission> = new Set(['artifacts:read', 'images:upload']);

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

/** True when `holder` has every permission of `role` (an API token may carry no more than its owner). */
export function roleCovers(holder: Role, role: Role): boolean {
  const held = ROLE_PERMISSIONS[holder];
  for (const p of ROLE_PERMISSIONS[role]) if (!held.has(p)) return false;
  return true;
}

/** Methods that change nothing; every other method is a state change (CSRF-checked, audited). */
export function isSafeMethod(method: string): boolean {
  return method === 'GET' || method === 'HEAD' || method === 'OPTIONS';
}
