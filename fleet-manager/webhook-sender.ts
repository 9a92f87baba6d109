/**
 * Delivers alert notifications to webhooks (issue 17) from the durable outbox (webhook-store.ts).
 * Each alert change (raised, acknowledged, resolved) is queued for every enabled webhook whose
 * filters match; deliveries of one webhook go one at a time, in order. The changes are read from
 * the alert store's change log, written in the same transaction as each change, after the cursor
 * the outbox keeps and moves in the same transaction as the deliveries queued: a fleet that dies
 * between an alert change and its queueing queues it when it starts again, and nothing is queued
 * twice. The log is read when told of a change (`changed()`) and every `pollMs`, which picks up
 * changes made by another fleet instance. A 2xx marks a delivery delivered and it is never sent
 * again; anything else (a refused connection, a timeout, a 503) is retried with exponential
 * backoff and jitter, capped at `retryMaxMs`, until `maxAgeMs` has passed. The outbox is in the fleet database, so a restarted fleet carries on where it stopped.
 *
 * Every request carries `x-osprey-delivery` (the same on every attempt: receivers drop repeats),
 * `x-osprey-event`, `x-osprey-timestamp` (epoch ms of the attempt) and `x-osprey-signature:
 * ed25519=BASE64`, the fleet signing key's signature over `DELIVERY.TIMESTAMP.BODY`, which
 * receivers check with the key of `GET /api/fleet/public-key`. No secret is stored for it.
 * Webhook URLs often carry a chat tool's token, so only their origin is ever logged.
 */
import { randomUUID, sign, type KeyObject } from 'node:crypto';
import { request } from 'undici';
import type { Logger } from 'pino';
import type { AlertView, AlertNotification } from './alert-schemas.js';
import type { AlertStore } from './alert-store.js';
import type { ClaimedDelivery, DeliveryRecord, NewDelivery, WebhookRecord, WebhookStore } from './webhook-store.js';

export interface WebhookSettings {
  /** Longest one attempt may take (connect, headers and body). */
  timeoutMs: number;
  /** First retry delay; doubled per attempt. */
  retryBaseMs: number;
  /** Longest retry delay. */
  retryMaxMs: number;
  /** A delivery not delivered after this long is given up. */
  maxAgeMs: number;
}

export interface WebhookSenderOptions {
  store: WebhookStore;
  /** The alerts' change log, read after the outbox's cursor. */
  alerts: Pick<AlertStore, 'changesAfter'>;
  /** How often the change log is read while started besides on changed() (default 2000 ms). */
  pollMs?: number;
  /** The fleet's signing key (signing-keys.ts). */
  privateKey: KeyObject;
  settings: WebhookSettings;
  logger: Logger;
  now?: () => number;
  /** [0, 1) for the jitter (tests make it fixed). */
  random?: () => number;
}

export interface WebhookSender {
  /** Starts delivering what the outbox holds. */
  start(): void;
  /** Stops: no new attempt, attempts in flight aborted (they stay queued). Idempotent. */
  stop(): Promise<void>;
  /** Tells the sender an alert changed: it reads the change log now (once started). */
  changed(): void;
  /** Queues the logged changes after the outbox's cursor for the webhooks they match; how many changes were read. */
  queueChanges(): Promise<number>;
  /** Sends a test notification to one webhook now, outside the queue; the delivery as recorded. */
  test(webhook: WebhookRecord): Promise<DeliveryRecord>;
}

/** The headers receivers check. */
export const DELIVERY_HEADER = 'x-osprey-delivery';
export const SIGNATURE_HEADER = 'x-osprey-signature';
export const TIMESTAMP_HEADER = 'x-osprey-timestamp';
export const EVENT_HEADER = 'x-osprey-event';

/** What the signature covers. */
export const signedText = (deliveryId: string, timestamp: string, body: string) => `${deliveryId}.${timestamp}.${body}`;

/** A webhook's filters: types and lines (empty: all; an alert without a line goes to every line filter). */
export function matches(webhook: Pick<WebhookRecord, 'enabled' | 'types' | 'lines'>, alert: Pick<AlertView, 'type' | 'line'>): boolean {
  if (!webhook.enabled) return false;
  if (webhook.types.length > 0 && !webhook.types.includes(alert.type)) return false;
  if (webhook.lines.length > 0 && alert.line !== null && !webhook.lines.includes(alert.line)) return false;
  return true;
}

/** The body of one notification in the webhook's format. */
export function renderBody(format: WebhookRecord['format'], event: AlertNotification['event'], alert: AlertView): string {
  if (format === 'json') return JSON.stringify({ event, alert } satisfies AlertNotification);
  return JSON.stringify({ text: chatText(event, alert) });
}

/** One line a person reads in a chat channel. */
export function chatText(event: AlertNotification['event'], alert: AlertView): string {
  const where = [alert.edgeId && `edge ${alert.edgeId}`, alert.rolloutId && `rollout ${alert.rolloutId}`, alert.line && `line ${alert.line}`].filter(Boolean).join(', ');
  const what = event === 'acknowledged' ? `acknowledged by ${alert.acknowledgedBy ?? 'someone'}` : event;
  return `[Osprey] ${alert.severity.toUpperCase()} ${alert.type} ${what}${where ? ` (${where})` : ''}: ${alert.message} #${alert.id}`;
}

/** Only the scheme, host and port of a URL: the path and query may hold a token. */
export const originOf = (url: string) => {
  try {
    return new URL(url).origin;
  } catch {
    return 'invalid-url';
  }
};

/** A test notification's alert. */
function testAlert(at: number): AlertView {
  return {
    id: 1,
    type: 'test',
    source: 'fleet',
    severity: 'info',
    state: 'open',
    edgeId: null,
    line: null,
    rolloutId: null,
    message: 'a test notification from the Osprey fleet',
    data: null,
    raisedAt: at,
    updatedAt: at,
    count: 1,
    acknowledgedAt: null,
    acknowledgedBy: null,
    resolvedAt: null,
  };
}

/** Creates the sender; nothing is sent until start(). */
export function createWebhookSender(opts: WebhookSenderOptions): WebhookSender {
  const { store, settings } = opts;
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const random = opts.random ?? Math.random;
  // An attempt ends within timeoutMs (then its outcome is recorded); a claim lasts twice that, so
  // only a sender that died (or stalled that long) lets another instance try the delivery again.
  const leaseMs = 2 * settings.timeoutMs;
  const inFlight = new Set<AbortController>();
  const pollMs = opts.pollMs ?? 2000;
  let poll: NodeJS.Timeout | undefined;
  let timer: NodeJS.Timeout | undefined;
  let started = false;
  let stopped = false;
  let running: Promise<void> | undefined;
  let again = false;

  /** One HTTP attempt; never throws. */
  async function attempt(url: string, d: Pick<DeliveryRecord, 'id' | 'event' | 'body'>): Promise<{ ok: boolean; status: number | null; error: string | null }> {
    const ac = new AbortController();
    inFlight.add(ac);
    const timeout = setTimeout(() => ac.abort(new Error(`no answer within ${settings.timeoutMs} ms`)), settings.timeoutMs);
    const timestamp = String(now());
    const signature = sign(null, Buffer.from(signedText(d.id, timestamp, d.body)), opts.privateKey).toString('base64');
    try {
      const res = await request(url, {
        method: 'POST',
        body: d.body,
        signal: ac.signal,
        headersTimeout: settings.timeoutMs,
        bodyTimeout: settings.timeoutMs,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'osprey-fleet',
          [DELIVERY_HEADER]: d.id,
          [EVENT_HEADER]: d.event,
          [TIMESTAMP_HEADER]: timestamp,
          [SIGNATURE_HEADER]: `ed25519=${signature}`,
        },
      });
      await res.body.dump({ limit: 64 * 1024 }).catch(() => undefined);
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return { ok, status: res.statusCode, error: ok ? null : `HTTP ${res.statusCode}` };
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
      // The code (ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT…), never the URL.
      const reason = ac.signal.aborted ? String((ac.signal.reason as Error | undefined)?.message ?? 'aborted') : (e.code ?? e.cause?.code ?? e.name);
      return { ok: false, status: null, error: reason };
    } finally {
      clearTimeout(timeout);
      inFlight.delete(ac);
    }
  }

  /** Delay before the next attempt after `attempts` failed ones: exponential, capped, half of it jitter. */
  function backoff(attempts: number): number {
    const full = Math.min(settings.retryMaxMs, settings.retryBaseMs * 2 ** Math.min(30, attempts - 1));
    return Math.round(full / 2 + (random() * full) / 2);
  }

  /** Logs (at debug) an outcome not recorded: this claim's lease ran out and another sender claimed the delivery since. */
  function stale(d: ClaimedDelivery, what: string): void {
    log.debug({ webhookId: d.webhookId, delivery: d.id, attempts: d.attempts + 1 }, `webhook delivery claimed again by another sender: ${what} not recorded`);
  }

  async function deliver(d: ClaimedDelivery, hooks: Map<number, WebhookRecord>, claimedAt: number): Promise<void> {
    const release = async () => {
      if (!(await store.release(d.id, d.claim, claimedAt))) stale(d, 'its release');
    };
    const hook = hooks.get(d.webhookId);
    if (!hook) return release();
    const outcome = await attempt(hook.url, d);
    // Aborted by stop(): still queued, attempts untouched, due again at once (for the next start or another instance).
    if (stopped && !outcome.ok && outcome.status === null) return release();
    const t = now();
    if (outcome.ok) {
      if (!(await store.markDelivered(d.id, d.claim, t, outcome.status!))) return stale(d, 'its delivery');
      log.info({ webhookId: hook.id, origin: originOf(hook.url), delivery: d.id, event: d.event, attempts: d.attempts + 1 }, 'webhook delivered');
      return;
    }
    const attempts = d.attempts + 1;
    const nextAt = t - d.createdAt >= settings.maxAgeMs ? null : t + backoff(attempts);
    if (!(await store.markFailed(d.id, d.claim, t, { status: outcome.status, error: outcome.error ?? 'failed' }, nextAt))) return stale(d, 'its failed attempt');
    const fields = { webhookId: hook.id, origin: originOf(hook.url), delivery: d.id, attempts, reason: outcome.error, retryInMs: nextAt === null ? null : nextAt - t };
    if (nextAt === null) log.error(fields, 'webhook delivery given up');
    else log.warn(fields, 'webhook delivery failed; will retry');
  }

  /** Changes read from the log per transaction. */
  const CHANGES_PER_BATCH = 200;

  async function queueChanges(): Promise<number> {
    let read = 0;
    for (;;) {
      const changes = await opts.alerts.changesAfter(await store.changeCursor(), CHANGES_PER_BATCH);
      if (changes.length === 0) return read;
      const hooks = await store.list();
      const rows: NewDelivery[] = [];
      for (const change of changes) {
        for (const h of hooks) {
          if (matches(h, change.alert)) rows.push({ id: randomUUID(), webhookId: h.id, alertId: change.alert.id, event: change.event, body: renderBody(h.format, change.event, change.alert) });
        }
      }
      await store.enqueue(rows, now(), changes.at(-1)!.seq);
      read += changes.length;
      if (changes.length < CHANGES_PER_BATCH) return read;
    }
  }

  /**
   * Queues the alert changes not queued yet, then sends every due head of the queue, claimed
   * first so that another fleet instance sending from the same outbox never sends it at the same
   * time; again while any was sent; then sleeps until the next due one (or the next poll).
   */
  async function pump(): Promise<void> {
    clearTimeout(timer);
    timer = undefined;
    for (;;) {
      again = false;
      if (stopped) return;
      await queueChanges();
      const t = now();
      const due = await store.claimDue(t, leaseMs);
      if (due.length > 0) {
        const hooks = new Map((await store.list()).map((h) => [h.id, h]));
        await Promise.all(due.map((d) => deliver(d, hooks, t)));
        continue;
      }
      if (again) continue;
      const heads = await store.heads();
      const next = Math.min(...heads.map((d) => d.nextAttemptAt ?? t));
      if (Number.isFinite(next) && !stopped) timer = setTimeout(wake, Math.max(0, next - now()));
      return;
    }
  }

  function wake(): void {
    if (!started || stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = pump()
      .catch((err: unknown) => log.error({ err }, 'webhook sender failed'))
      .finally(() => {
        running = undefined;
        if (again && !stopped) wake();
      });
  }

  return {
    start() {
      if (started && !stopped) return;
      started = true;
      stopped = false;
      poll = setInterval(wake, pollMs);
      wake();
    },
    async stop() {
      stopped = true;
      clearInterval(poll);
      poll = undefined;
      clearTimeout(timer);
      timer = undefined;
      for (const ac of inFlight) ac.abort(new Error('the fleet is stopping'));
      await running;
    },
    changed() {
      wake();
    },
    queueChanges,
    async test(webhook) {
      const t = now();
      const d: NewDelivery = { id: randomUUID(), webhookId: webhook.id, alertId: null, event: 'test', body: renderBody(webhook.format, 'test', testAlert(t)) };
      const outcome = await attempt(webhook.url, d);
      log.info({ webhookId: webhook.id, origin: originOf(webhook.url), ok: outcome.ok, status: outcome.status, reason: outcome.error }, 'webhook test sent');
      return store.recordAttempted(d, t, outcome);
    },
  };
}
