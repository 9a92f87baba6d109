/**
 * JSON Schemas of the alert and webhook routes (issue 17), TypeBox so the handlers', the webhook
 * bodies' and the console's types derive from them.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';
import { EDGE_ID_PATTERN } from '../protocol/topics.js';

const strict = { additionalProperties: false } as const;
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const EpochMs = Type.Integer({ minimum: 0, description: 'epoch milliseconds' });
const TimeText = Type.String({ minLength: 1, maxLength: 40, description: 'ISO 8601 date or epoch milliseconds' });
const Line = Type.String({ minLength: 1, maxLength: 64 });
const AlertType = Type.String({ minLength: 1, maxLength: 64, pattern: '^[a-z0-9][a-z0-9-]*$' });

/** The fleet's own alert types; every other type is an edge alarm's name (protocol/monitoring.ts EDGE_ALARMS). */
export const FLEET_ALERTS = ['edge-offline', 'backlog-growing', 'desired-state-mismatch', 'rollout-failed'] as const;
export type FleetAlert = (typeof FLEET_ALERTS)[number];

export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** What happened to an alert: what feeds and webhooks tell. `updated`: raised again while open (feeds only). */
export const ALERT_EVENTS = ['raised', 'updated', 'acknowledged', 'resolved'] as const;
export type AlertEvent = (typeof ALERT_EVENTS)[number];

export const AlertViewSchema = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    type: Type.String({ description: 'an edge alarm name (e.g. image-blur) or a fleet alert (edge-offline, backlog-growing, desired-state-mismatch, rollout-failed)' }),
    source: Type.Union([Type.Literal('edge'), Type.Literal('fleet')], { description: "edge: an edge's own alarm; fleet: the fleet's judgement" }),
    severity: Type.Union(SEVERITIES.map((s) => Type.Literal(s))),
    state: Type.Union([Type.Literal('open'), Type.Literal('acknowledged'), Type.Literal('resolved')]),
    edgeId: Nullable(Type.String()),
    line: Nullable(Type.String()),
    rolloutId: Nullable(Type.String({ description: 'rollout-failed: the rollout' })),
    message: Type.String(),
    data: Nullable(Type.Record(Type.String(), Type.Unknown())),
    raisedAt: EpochMs,
    updatedAt: EpochMs,
    count: Type.Integer({ minimum: 1, description: 'times raised while open (repeats update the one open alert)' }),
    acknowledgedAt: Nullable(EpochMs),
    acknowledgedBy: Nullable(Type.String({ description: 'who acknowledged it, e.g. user:alice' })),
    resolvedAt: Nullable(EpochMs),
  },
  strict,
);
export type AlertView = Static<typeof AlertViewSchema>;

/** One change of an alert, as in-process listeners and the console's event stream (`event: alert`) carry it. */
export interface AlertChange {
  event: AlertEvent;
  alert: AlertView;
}

/** A change people are told about, as the alert store's change log keeps it (`seq` grows in commit order). */
export interface LoggedAlertChange {
  seq: number;
  event: Exclude<AlertEvent, 'updated'>;
  alert: AlertView;
}

export const AlertStateFilter = Type.Union(
  [Type.Literal('open'), Type.Literal('acknowledged'), Type.Literal('resolved'), Type.Literal('active')],
  { description: 'open: not acknowledged nor resolved; acknowledged: acknowledged, not resolved; active: not resolved' },
);

export const AlertsQuerySchema = Type.Object(
  {
    state: Type.Optional(AlertStateFilter),
    type: Type.Optional(AlertType),
    line: Type.Optional(Line),
    edgeId: Type.Optional(Type.String({ pattern: EDGE_ID_PATTERN })),
    since: Type.Optional(Type.Union([TimeText], { description: 'raised at or after; ISO 8601 or epoch ms' })),
    until: Type.Optional(Type.Union([TimeText], { description: 'raised before; ISO 8601 or epoch ms' })),
    limit: Type.Integer({ minimum: 1, maximum: 500, default: 100 }),
    cursor: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'nextCursor of the previous page' })),
  },
  strict,
);
export type AlertsQuery = Static<typeof AlertsQuerySchema>;

export const AlertsPageSchema = Type.Object(
  {
    items: Type.Array(AlertViewSchema, { description: 'newest first' }),
    nextCursor: Nullable(Type.String({ description: 'pass as ?cursor= for the next page; null on the last' })),
    counts: Type.Object(
      { open: Type.Integer({ description: 'not acknowledged, not resolved' }), acknowledged: Type.Integer({ description: 'acknowledged, not resolved' }) },
      { ...strict, description: 'of the whole fleet, whatever the filters' },
    ),
  },
  strict,
);

export const IdParamsSchema = Type.Object({ id: Type.Integer({ minimum: 1 }) }, strict);

/** The generic webhook body (format json). */
export const AlertNotificationSchema = Type.Object(
  { event: Type.Union([Type.Literal('raised'), Type.Literal('acknowledged'), Type.Literal('resolved'), Type.Literal('test')]), alert: AlertViewSchema },
  strict,
);
export type AlertNotification = Static<typeof AlertNotificationSchema>;

export const WEBHOOK_FORMATS = ['json', 'chat'] as const;
export type WebhookFormat = (typeof WEBHOOK_FORMATS)[number];

const Url = Type.String({ minLength: 8, maxLength: 2000, pattern: '^[hH][tT][tT][pP][sS]?://[^\\s]+$', description: 'http or https URL the notifications are POSTed to' });
const Format = Type.Union(WEBHOOK_FORMATS.map((f) => Type.Literal(f)), { description: 'json: {event, alert}; chat: {"text": …} as Slack, Mattermost and Rocket.Chat incoming webhooks take' });
const Types = Type.Array(AlertType, { maxItems: 50, uniqueItems: true, description: 'alert types to send; empty: all' });
const Lines = Type.Array(Line, { maxItems: 50, uniqueItems: true, description: 'lines to send; empty: all (alerts without a line always go)' });

export const WebhookBodySchema = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100 }),
    url: Url,
    format: Type.Optional(Format),
    types: Type.Optional(Types),
    lines: Type.Optional(Lines),
    enabled: Type.Optional(Type.Boolean({ default: true })),
  },
  strict,
);
export type WebhookBody = Static<typeof WebhookBodySchema>;

export const WebhookPatchSchema = Type.Partial(WebhookBodySchema, { ...strict, minProperties: 1 });
export type WebhookPatch = Static<typeof WebhookPatchSchema>;

export const WebhookViewSchema = Type.Object(
  {
    id: Type.Integer({ minimum: 1 }),
    name: Type.String(),
    url: Type.String(),
    format: Format,
    types: Type.Array(Type.String()),
    lines: Type.Array(Type.String()),
    enabled: Type.Boolean(),
    createdAt: EpochMs,
    createdBy: Type.String(),
    updatedAt: EpochMs,
    pending: Type.Integer({ description: 'deliveries waiting in the outbox' }),
  },
  strict,
);
export type WebhookView = Static<typeof WebhookViewSchema>;

export const WebhooksSchema = Type.Object({ webhooks: Type.Array(WebhookViewSchema) }, strict);

export const DeliveryViewSchema = Type.Object(
  {
    id: Type.String({ description: 'the x-osprey-delivery header: the same on every attempt' }),
    webhookId: Type.Integer(),
    alertId: Nullable(Type.Integer()),
    event: Type.String(),
    status: Type.Union([Type.Literal('pending'), Type.Literal('delivered'), Type.Literal('failed')]),
    attempts: Type.Integer(),
    createdAt: EpochMs,
    nextAttemptAt: Nullable(EpochMs),
    deliveredAt: Nullable(EpochMs),
    lastStatus: Nullable(Type.Integer({ description: 'HTTP status of the last attempt' })),
    lastError: Nullable(Type.String()),
  },
  strict,
);
export type DeliveryView = Static<typeof DeliveryViewSchema>;

export const DeliveriesSchema = Type.Object({ deliveries: Type.Array(DeliveryViewSchema, { description: 'newest first' }) }, strict);
export const DeliveriesQuerySchema = Type.Object({ limit: Type.Integer({ minimum: 1, maximum: 200, default: 20 }) }, strict);
