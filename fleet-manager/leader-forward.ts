/**
 * Leader writes on any instance (issue 18). The HTTP writes that drive leader work (LEADER_WRITES:
 * rollouts, line rollback and configuration layers, training jobs, backbones) must run on the
 * leader, and so must the live streams that leader work feeds (LEADER_STREAMS: the rollouts' and
 * training jobs' server-sent events). A follower does not refuse them: before any body parsing and before its own
 * authorization, it streams the request (method, path and query, headers minus hop-by-hop ones,
 * the body as it arrives: uploads are never buffered) to the leader's advertised URL with undici
 * and answers with the leader's status, headers and streamed body (an event stream flows through
 * as it is written; when the caller goes, Fastify destroys the body and undici aborts the
 * leader's request). The leader authenticates,
 * authorizes and audits the caller's own credential (auth/authorize.ts), so the follower decides
 * nothing: it adds no credential and its own hooks never see the request.
 *
 * Loop guard: a forwarded request carries `x-osprey-forwarded: <instance>`; an instance that is
 * not the leader answers such a request 503 instead of forwarding it again (leadership moved).
 * No leader known, or the leader unreachable: 503 OSP_ERR_BUSY with retry-after.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Agent, request } from 'undici';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { OspreyError, oneLine } from '../protocol/errors.js';
import type { FleetConfig } from './config.js';

/** Where followers reach the leader: written by the leader (leadership.ts), read by followers. */
export interface LeaderLocation {
  /** Base URL (instances.advertiseUrl or derived), no trailing slash. */
  url: string;
  /** The leader's instance id. */
  instance: string;
  /** Epoch ms the leader took the lock. */
  since: number;
}

/** The loop guard: the instance that forwarded. The leader trusts it for nothing but the audit's "via". */
export const FORWARDED_HEADER = 'x-osprey-forwarded';
/** Constants, not configuration: a connect to a live instance on the plant network takes milliseconds. */
export const FORWARD_CONNECT_TIMEOUT_MS = 5_000;
/** Longest silence while waiting for the leader's headers or between body chunks (a registry check or an upload can take a while). */
export const FORWARD_IDLE_TIMEOUT_MS = 120_000;
const RETRY_AFTER_S = '2';

/** Writes that drive leader work: on a follower they would change nothing that runs (or run twice). */
const LEADER_WRITES = [
  /^\/api\/rollouts(\/|$)/,
  /^\/api\/lines\/:line\/(rollback|config)$/,
  /^\/api\/config$/,
  /^\/api\/edges\/:id\/config$/,
  /^\/api\/training-jobs(\/|$)/,
  /^\/api\/backbones(\/|$)/,
];

/**
 * Live streams fed by leader work (the rollout engine's and the training runner's changes): a
 * follower has neither running, so its own stream would show the first view and then nothing.
 */
const LEADER_STREAMS = new Set(['/api/rollouts/events', '/api/rollouts/:id/events', '/api/training-jobs/:id/events']);

/** Whether a request (method, route pattern) must run on the leader: LEADER_WRITES, and the GETs of LEADER_STREAMS. */
export function runsOnLeader(method: string, route: string): boolean {
  if (method === 'GET') return LEADER_STREAMS.has(route);
  if (method === 'HEAD' || method === 'OPTIONS') return false;
  return LEADER_WRITES.some((re) => re.test(route));
}

/**
 * RFC 9110 §7.6.1 connection-specific fields, host (the leader's own) and expect (this instance
 * already answered the caller's 100-continue; undici refuses to send it).
 */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host', 'expect']);

function endToEnd(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): [string, string | string[]][] {
  const named = String(headers.connection ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter(Boolean);
  return Object.entries(headers).filter((e): e is [string, string | string[]] => e[1] !== undefined && !HOP_BY_HOP.has(e[0]) && !named.includes(e[0]));
}

export interface LeaderRouting {
  isLeader(): boolean;
  /** The leader as last learned; null when none is known. */
  leader(): LeaderLocation | null;
  /** This instance's id (the loop guard's value). */
  instance: string;
  /** CA of the leader's HTTPS certificate (tls.caFile); absent: the system's roots. */
  ca?: Buffer;
}

/**
 * Every response says whether its instance leads (`x-osprey-leader: true|false`, information for
 * people and health checks); on a follower the writes of LEADER_WRITES and the streams of
 * LEADER_STREAMS are forwarded to the leader. Install before the authorization hooks (buildApp does), so the leader alone decides.
 */
export function routeLeaderWrites(app: FastifyInstance, opts: LeaderRouting): void {
  const agent = new Agent({
    connect: { timeout: FORWARD_CONNECT_TIMEOUT_MS, ...(opts.ca && { ca: opts.ca }) },
    headersTimeout: FORWARD_IDLE_TIMEOUT_MS,
    bodyTimeout: FORWARD_IDLE_TIMEOUT_MS,
  });
  app.addHook('onClose', async () => {
    await agent.destroy();
  });
  app.addHook('onRequest', async (req, reply) => {
    const leading = opts.isLeader();
    void reply.header('x-osprey-leader', String(leading));
    if (leading || !runsOnLeader(req.method, req.routeOptions.url ?? '')) return;
    const by = req.headers[FORWARDED_HEADER];
    if (by !== undefined) throw busy(reply, `${req.method} ${req.routeOptions.url} was forwarded here by ${oneLine(String(by)).slice(0, 64)}, but this instance is no longer the fleet leader (leadership moved); retry`);
    const leader = opts.leader();
    if (!leader || leader.instance === opts.instance) throw busy(reply, `this fleet instance is not the leader and no leader is known yet to run ${req.method} ${req.routeOptions.url}; retry`);
    req.forwardedTo = leader.url;
    return forward(req, reply, leader);
  });

  async function forward(req: FastifyRequest, reply: FastifyReply, leader: LeaderLocation): Promise<FastifyReply> {
    const headers: Record<string, string | string[]> = Object.fromEntries(endToEnd(req.headers));
    const peer = req.socket.remoteAddress ?? 'unknown';
    const chain = req.headers['x-forwarded-for'];
    headers['x-forwarded-for'] = chain ? `${String(chain)}, ${peer}` : peer;
    headers[FORWARDED_HEADER] = opts.instance;
    const hasBody = req.headers['transfer-encoding'] !== undefined || (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(`${leader.url}${req.url}`, {
        dispatcher: agent,
        method: req.method as 'POST',
        headers,
        // The caller's bytes as they arrive: a multipart upload is never held whole.
        ...(hasBody && { body: req.raw }),
      });
    } catch (err) {
      req.log.warn({ leader: leader.url, err: oneLine(err) }, 'leader write not forwarded');
      throw busy(reply, `the fleet leader (${leader.instance} at ${leader.url}) cannot be reached: ${oneLine(err).slice(0, 200)}; retry`);
    }
    for (const [name, value] of endToEnd(res.headers)) if (name !== 'x-osprey-leader') void reply.header(name, value);
    return reply.code(res.statusCode).send(res.body);
  }
}

function busy(reply: FastifyReply, why: string): OspreyError {
  void reply.header('retry-after', RETRY_AFTER_S);
  return new OspreyError('OSP_ERR_BUSY', why);
}

/** http.host values that name no one machine: another instance cannot reach "0.0.0.0". */
const WILDCARD = new Set(['0.0.0.0', '::', '', '[::]']);

/**
 * With several instances (PostgreSQL storage) followers must reach the leader: refuses a config
 * whose `instances.advertiseUrl` is unset while `http.host` is a wildcard address.
 */
export function checkAdvertiseUrl(config: FleetConfig, severalInstances: boolean): void {
  if (!severalInstances || config.instances.advertiseUrl !== null || !WILDCARD.has(config.http.host)) return;
  throw new OspreyError(
    'OSP_ERR_CONFIG',
    `instances.advertiseUrl is required with PostgreSQL storage when http.host is ${config.http.host || '(empty)'}: set it to the http(s)://host:port other fleet instances reach this one at`,
  );
}

/** The URL announced when leading: instances.advertiseUrl, else the bound address (`host` as a URL writes it: IPv6 in brackets). */
export function advertiseUrlOf(config: FleetConfig, scheme: 'http' | 'https', host: string, port: number): string {
  return config.instances.advertiseUrl ?? `${scheme}://${host}:${port}`;
}
