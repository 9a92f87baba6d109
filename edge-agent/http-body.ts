/**
 * How POST /inspect reads request bodies without letting their size decide the agent's memory:
 * a declared body over `bodyLimitBytes` is refused from its content-length before a byte of it
 * is read, a streamed (chunked) one as soon as it passes the limit, and the bytes all requests
 * hold at once (being read or inspected) are capped by `maxInFlightBytes`, beyond which a request
 * is refused (503, retry later) instead of read.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { OspreyError } from '../protocol/errors.js';

export interface BodyReader {
  /** onRequest hook: gives a request's bytes back when its response closes (sent or aborted). */
  track(request: FastifyRequest, reply: FastifyReply): void;
  /** Fastify content-type parser for raw bytes. */
  read(request: FastifyRequest, payload: IncomingMessage, done: (err: Error | null, body?: Buffer) => void): void;
  /** Bytes held now (for tests and health). */
  readonly inFlightBytes: number;
}

export function createBodyReader(opts: { bodyLimitBytes: number; maxInFlightBytes: number }): BodyReader {
  const { bodyLimitBytes: limit, maxInFlightBytes: maxInFlight } = opts;
  let inFlight = 0;
  const held = new WeakMap<IncomingMessage, number>();

  const tooLarge = (what: string) => new OspreyError('OSP_ERR_IMAGE_TOO_LARGE', `${what} exceeds http.bodyLimitBytes (${limit} bytes)`);
  /** Takes n more bytes for this request, or answers why not. */
  const reserve = (raw: IncomingMessage, n: number): OspreyError | null => {
    if (inFlight + n > maxInFlight) {
      return new OspreyError('OSP_ERR_QUEUE_FULL', `request bodies in flight would exceed http.maxInFlightBytes (${maxInFlight} bytes); retry later`);
    }
    inFlight += n;
    held.set(raw, (held.get(raw) ?? 0) + n);
    return null;
  };

  return {
    get inFlightBytes() {
      return inFlight;
    },
    track(request, reply) {
      reply.raw.once('close', () => {
        inFlight -= held.get(request.raw) ?? 0;
        held.delete(request.raw);
      });
    },
    read(request, payload, done) {
      const declared = Number(request.headers['content-length']);
      const sized = Number.isFinite(declared);
      if (sized) {
        // Decided from the header alone: nothing of the body has been read yet.
        if (declared > limit) return done(tooLarge(`request body of ${declared} bytes`));
        const refused = reserve(request.raw, declared);
        if (refused) return done(refused);
      }
      // A declared length is read straight into one buffer of that size (no second copy).
      const whole = sized ? Buffer.allocUnsafe(declared) : undefined;
      const chunks: Buffer[] = [];
      let got = 0;
      const finish = (err: Error | null) => {
        payload.off('data', onData).off('end', onEnd).off('error', finish);
        if (err) {
          // Leave the rest unread: the error answer closes the connection.
          payload.pause();
          return done(err);
        }
        if (got !== (sized ? declared : got)) return done(new OspreyError('OSP_ERR_BAD_REQUEST', `request body ended after ${got} of ${declared} bytes`));
        done(null, whole ?? Buffer.concat(chunks, got));
      };
      const onEnd = () => finish(null);
      const onData = (chunk: Buffer) => {
        if (got + chunk.length > (sized ? declared : limit)) return finish(sized ? new OspreyError('OSP_ERR_BAD_REQUEST', `request body is longer than its content-length ${declared}`) : tooLarge('request body'));
        if (whole) chunk.copy(whole, got);
        else {
          const refused = reserve(request.raw, chunk.length);
          if (refused) return finish(refused);
          chunks.push(chunk);
        }
        got += chunk.length;
      };
      payload.on('data', onData).on('end', onEnd).on('error', finish);
    },
  };
}
