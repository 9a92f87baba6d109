/**
 * Routes of the edge's HTTP API that change what the edge watches or spend the line's CPU
 * (`POST /monitor/reference`, `POST /golden-set/run`) answer callers on this machine only, even
 * when `http.host` opens the API to the network for a camera on another PC: resetting the
 * reference would hide an alarm in force.
 */
import type { FastifyRequest } from 'fastify';
import { OspreyError } from '../protocol/errors.js';

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|::ffff:127\.\d+\.\d+\.\d+)$/;

/** Throws OSP_ERR_FORBIDDEN (403) unless the request came from a loopback address. */
export function requireLoopback(req: FastifyRequest): void {
  if (!LOOPBACK.test(req.socket.remoteAddress ?? '')) throw new OspreyError('OSP_ERR_FORBIDDEN', `${req.method} ${req.routeOptions.url ?? req.url} is answered to callers on this machine only`);
}
