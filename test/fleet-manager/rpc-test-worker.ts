/**
 * A worker for test/fleet-manager/storage-rpc.test.ts: serves one object whose methods echo,
 * throw, log, wait, or end the thread, so the RPC's edges can be driven without a database.
 */
import { isMainThread } from 'node:worker_threads';
import { serveRpc } from '../../fleet-manager/storage-rpc.js';
import { OspreyError } from '../../protocol/errors.js';

// `node --test dist/test/` also loads every module under test/: there, outside a worker, it serves nothing.
if (!isMainThread) await serveRpc((data, logger) => {
  if ((data as { failOpen?: boolean }).failOpen) throw new OspreyError('OSP_ERR_CONFIG', 'cannot open: failOpen');
  const waiting: (() => void)[] = [];
  let closed = false;
  return {
    objects: {
      t: {
        async echo(v: unknown) {
          return v;
        },
        async isBuffer(v: unknown) {
          return Buffer.isBuffer(v) && v.toString('utf8');
        },
        async fail(code: 'OSP_ERR_NOT_FOUND') {
          throw new OspreyError(code, 'nothing here');
        },
        async failPlain() {
          throw Object.assign(new TypeError('bad type'), { code: 'ERR_SOMETHING' });
        },
        async log(msg: string) {
          logger.warn({ answer: 42 }, msg);
        },
        /** Resolves when release() is called: a call in flight. */
        wait() {
          return new Promise<string>((resolve) => waiting.push(() => resolve('released')));
        },
        async release() {
          for (const w of waiting.splice(0)) w();
        },
        /** Ends the thread with the calls in flight unanswered. */
        crash(code: number) {
          setImmediate(() => process.exit(code));
          return new Promise(() => undefined);
        },
        async closed() {
          return closed;
        },
      },
    },
    async close() {
      closed = true;
    },
  };
});
