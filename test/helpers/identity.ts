/**
 * Real identities for tests: a SQLite identity store on the test's fleet database, and the
 * credentials people and edges get through the store's own paths (users with scrypt passwords,
 * API tokens, enrollment tokens redeemed for edge credentials). Nothing here bypasses a check.
 */
import type { TestContext } from 'node:test';
import { pino } from 'pino';
import { openSqliteIdentityStore, type IdentityStore } from '../../fleet-manager/identity-store.js';
import type { Role } from '../../fleet-manager/auth/roles.js';

export interface TestIdentity {
  identity: IdentityStore;
  /** A bearer token of a user with this role (one user per role, made on first use). */
  token(role?: Role): Promise<string>;
  /** `{ authorization: 'Bearer …' }` for that role. */
  headers(role?: Role): Promise<{ authorization: string }>;
  /** Enrolls an edge the way `osprey edge enroll` does and returns its credential. */
  enrollEdge(edgeId: string): Promise<string>;
}

/** Opens the identity store on `file` (closed after the test). */
export function openTestIdentity(t: TestContext, file: string): TestIdentity {
  const identity = openSqliteIdentityStore({ file, logger: pino({ level: 'silent' }) });
  t.after(() => identity.close());
  return credentialsFor(identity);
}

/** Credentials made through an existing identity store. */
export function credentialsFor(identity: IdentityStore): TestIdentity {
  const tokens = new Map<Role, Promise<string>>();
  const token = (role: Role = 'admin') => {
    let p = tokens.get(role);
    if (!p) {
      p = (async () => {
        const user = (await identity.getUserByName(`test-${role}`)) ?? (await identity.addUser({ username: `test-${role}`, password: `password of test-${role}`, role }));
        return (await identity.createApiToken({ userId: user.id, name: 'test', role, expiresAt: null })).token;
      })();
      tokens.set(role, p);
    }
    return p;
  };
  return {
    identity,
    token,
    headers: async (role) => ({ authorization: `Bearer ${await token(role)}` }),
    async enrollEdge(edgeId) {
      const { token: enrollment } = await identity.createEnrollmentToken({ edgeId, line: null, ttlMs: 60_000, createdBy: 'test' });
      return (await identity.redeemEnrollmentToken(enrollment, edgeId)).credential;
    },
  };
}
