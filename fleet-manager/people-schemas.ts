/**
 * JSON Schemas of the people side of the HTTP API: sign-in and sessions, users, API tokens,
 * edge enrollment tokens and credentials, the audit log (TypeBox, so handler types derive from
 * them). Reference: docs/fleet-manager.md "People".
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';
import { PERMISSIONS, ROLES, type Permission, type Role } from './auth/roles.js';

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });
const RoleSchema = Type.Unsafe<Role>({ type: 'string', enum: [...ROLES] });
const Username = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$', description: '1–64 letters, digits, ".", "_", "@" or "-"' });
// The store checks the length rule (at least 12) with a message that says it; the schema bounds the size.
const Password = Type.String({ minLength: 1, maxLength: 1024 });

export const SignInBodySchema = Type.Object({ username: Type.String({ minLength: 1, maxLength: 64 }), password: Password }, strict);
export type SignInBody = Static<typeof SignInBodySchema>;

export const UserViewSchema = Type.Object(
  { id: Type.String(), username: Type.String(), role: RoleSchema, disabled: Type.Boolean(), createdAt: EpochMs, updatedAt: EpochMs },
  strict,
);

export const SessionInfoSchema = Type.Object(
  {
    user: UserViewSchema,
    role: Type.Unsafe<Role>({ type: 'string', enum: [...ROLES], description: 'the role this credential acts with (a token may be narrower than its user)' }),
    via: Type.Unsafe<'session' | 'token'>({ type: 'string', enum: ['session', 'token'] }),
    csrfToken: Nullable(Type.String({ description: 'send as x-osprey-csrf on every state change of this session; null for API tokens' })),
    permissions: Type.Array(Type.Unsafe<Permission>({ type: 'string', enum: [...PERMISSIONS] }), {
      description: "what this credential's role may do (fleet-manager/auth/roles.ts): the console shows only these controls",
    }),
  },
  strict,
);
export type SessionInfo = Static<typeof SessionInfoSchema>;

export const SessionStateSchema = Type.Object(
  { session: Nullable(SessionInfoSchema) },
  { ...strict, description: "this browser's session (its cookie); null when it has none: signed out or expired" },
);

export const UsersSchema = Type.Object({ users: Type.Array(UserViewSchema) }, strict);
export const UsernameParamsSchema = Type.Object({ username: Username }, strict);
export const AddUserBodySchema = Type.Object({ username: Username, password: Password, role: RoleSchema }, strict);
export type AddUserBody = Static<typeof AddUserBodySchema>;
export const PatchUserBodySchema = Type.Object({ role: Type.Optional(RoleSchema), disabled: Type.Optional(Type.Boolean()) }, { ...strict, minProperties: 1 });
export type PatchUserBody = Static<typeof PatchUserBodySchema>;
export const PasswordBodySchema = Type.Object({ password: Password }, strict);

export const ApiTokenViewSchema = Type.Object(
  {
    id: Type.String(),
    username: Nullable(Type.String()),
    name: Type.String(),
    role: RoleSchema,
    createdAt: EpochMs,
    expiresAt: Nullable(EpochMs),
    revokedAt: Nullable(EpochMs),
    lastUsedAt: Nullable(EpochMs),
  },
  strict,
);
export const ApiTokensSchema = Type.Object({ tokens: Type.Array(ApiTokenViewSchema) }, strict);
export const CreateTokenBodySchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    role: Type.Optional(RoleSchema),
    expiresInDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650, description: 'default 90' })),
  },
  strict,
);
export type CreateTokenBody = Static<typeof CreateTokenBodySchema>;
export const CreatedTokenSchema = Type.Object(
  { token: Type.String({ description: 'the bearer token: shown this once, stored only as a hash' }), record: ApiTokenViewSchema },
  strict,
);
export const TokenParamsSchema = Type.Object({ id: Type.String({ pattern: '^[A-Za-z0-9_-]{12}$' }) }, strict);

const EdgeId = Type.String({ pattern: EDGE_ID_PATTERN });
const Line = Type.String({ minLength: 1, maxLength: 64 });
export const EnrollmentTokenViewSchema = Type.Object(
  {
    id: Type.String(),
    edgeId: Nullable(Type.String()),
    line: Nullable(Type.String()),
    createdBy: Type.String(),
    createdAt: EpochMs,
    expiresAt: EpochMs,
    usedAt: Nullable(EpochMs),
    usedByEdge: Nullable(Type.String()),
  },
  strict,
);
export const EnrollmentTokensSchema = Type.Object({ tokens: Type.Array(EnrollmentTokenViewSchema) }, strict);
export const CreateEnrollmentBodySchema = Type.Object(
  {
    edgeId: Type.Optional(EdgeId),
    line: Type.Optional(Line),
    ttlSeconds: Type.Optional(Type.Integer({ minimum: 60, maximum: 7 * 86_400, description: 'default 3600' })),
  },
  { ...strict, minProperties: 1 },
);
export type CreateEnrollmentBody = Static<typeof CreateEnrollmentBodySchema>;
export const CreatedEnrollmentSchema = Type.Object(
  { token: Type.String({ description: 'the one-time enrollment token: shown this once' }), record: EnrollmentTokenViewSchema },
  strict,
);

export const EdgeCredentialViewSchema = Type.Object(
  { id: Type.String(), edgeId: Type.String(), line: Nullable(Type.String()), createdAt: EpochMs, revokedAt: Nullable(EpochMs) },
  strict,
);
export const EdgeCredentialsSchema = Type.Object({ credentials: Type.Array(EdgeCredentialViewSchema) }, strict);
export const EdgeIdParamsSchema = Type.Object({ id: EdgeId }, strict);
export const RevokedSchema = Type.Object({ edgeId: Type.String(), revoked: Type.Integer({ description: 'credentials revoked' }) }, strict);

export const AuditQuerySchema = Type.Object(
  {
    from: Type.Optional(EpochMs),
    to: Type.Optional(EpochMs),
    actor: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    action: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'prefix of the action, e.g. "config." or "PUT /api"' })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
    beforeId: Type.Optional(Type.Integer({ minimum: 1 })),
  },
  strict,
);
export type AuditQueryString = Static<typeof AuditQuerySchema>;
export const AuditEntriesSchema = Type.Object(
  {
    entries: Type.Array(
      Type.Object(
        {
          id: Type.Integer(),
          ts: EpochMs,
          actor: Type.String(),
          action: Type.String(),
          target: Type.String(),
          source: Type.String(),
          outcome: Type.String(),
          before: Type.Optional(Type.Unknown()),
          after: Type.Optional(Type.Unknown()),
        },
        strict,
      ),
    ),
    nextBeforeId: Nullable(Type.Integer({ description: 'pass as beforeId for the next (older) page; null: no more' })),
  },
  strict,
);
