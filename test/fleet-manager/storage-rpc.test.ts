/** Calls into a worker thread (fleet-manager/storage-rpc.ts), driven against a real worker. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRpcWorker, type RpcWorker } from '../../fleet-manager/storage-rpc.js';
import { isOspreyError } from '../../protocol/errors.js';
import { captureLogger } from './helpers.js';

interface TestObject {
  echo<T>(v: T): Promise<T>;
  isBuffer(v: Buffer): Promise<string | false>;
  fail(code: string): Promise<never>;
  failPlain(): Promise<never>;
  log(msg: string): Promise<void>;
  wait(): Promise<string>;
  release(): Promise<void>;
  crash(code: number): Promise<never>;
  closed(): Promise<boolean>;
}

async function start(t: import('node:test').TestContext, data: unknown = {}) {
  const log = captureLogger('info');
  const rpc: RpcWorker = await startRpcWorker({ url: new URL('./rpc-test-worker.js', import.meta.url), data, logger: log.logger, component: 'test', what: 'test thread', deadCode: 'OSP_ERR_STORE' });
  t.after(() => rpc.close());
  return { rpc, obj: rpc.proxy<TestObject>('t'), log };
}

test('rpc: values cross by structured clone, Buffers arrive as Buffers, undefined fields stay', async (t) => {
  const { obj } = await start(t);
  const value = { a: 1, b: undefined, c: [1, 'x', null], m: new Map([['k', 2]]), s: new Set(['y']), u8: new Uint8Array([1, 2]) };
  const back = await obj.echo(value);
  assert.deepStrictEqual(back, value);
  assert.ok('b' in back);
  assert.equal(await obj.isBuffer(Buffer.from('héllo')), 'héllo');
  // Awaiting a proxy must not call into the worker (it is not a thenable).
  assert.equal(await Promise.resolve(obj), obj);
});

test('rpc: an error keeps its code, message and class across the thread', async (t) => {
  const { obj } = await start(t);
  await assert.rejects(obj.fail('OSP_ERR_NOT_FOUND'), (err: Error) => isOspreyError(err, 'OSP_ERR_NOT_FOUND') && err.message === 'nothing here');
  await assert.rejects(obj.failPlain(), (err: Error & { code?: string }) => err.name === 'TypeError' && err.code === 'ERR_SOMETHING' && err.message === 'bad type');
  await assert.rejects((obj as unknown as { nope(): Promise<void> }).nope(), (err: Error) => isOspreyError(err, 'OSP_ERR_INTERNAL') && /no method t\.nope/.test(err.message));
});

test("rpc: the worker's log lines reach the main thread's logger with their fields", async (t) => {
  const { obj, log } = await start(t);
  await obj.log('hello from the worker');
  const line = await log.waitFor((l) => l.msg === 'hello from the worker');
  assert.equal(line.level, 40);
  assert.equal(line.answer, 42);
});

test('rpc: a worker that dies fails the calls in flight and every later one, and is reported', async (t) => {
  const { rpc, obj, log } = await start(t);
  const inFlight = obj.wait();
  const crash = obj.crash(7);
  const dead = (err: Error) => isOspreyError(err, 'OSP_ERR_STORE') && /test thread exited \(code 7\)/.test(err.message);
  await assert.rejects(inFlight, dead);
  await assert.rejects(crash, dead);
  await assert.rejects(obj.echo(1), dead);
  const line = await log.waitFor((l) => l.msg === 'test thread exited unexpectedly');
  assert.equal(line.level, 50);
  assert.equal(line.code, 7);
  assert.equal(line.component, 'test');
  assert.equal(rpc.inFlight(), 0);
  await rpc.close();
});

test('rpc: close waits for the calls in flight, then closes the worker; later calls are refused', async (t) => {
  const { rpc, obj } = await start(t);
  const inFlight = obj.wait();
  let closed = false;
  const closing = rpc.close().then(() => (closed = true));
  // close has not ended the worker: the call in flight is still answered.
  await obj.release().catch(() => undefined);
  assert.equal(await inFlight, 'released');
  await closing;
  assert.ok(closed);
  await assert.rejects(obj.echo(1), (err: Error) => isOspreyError(err, 'OSP_ERR_SHUTTING_DOWN'));
});

test('rpc: close lets a chain of calls in flight finish (each next call made on the previous answer)', async (t) => {
  const { rpc, obj } = await start(t);
  const chain = (async () => {
    const a = await obj.echo(1);
    const b = await obj.echo(a + 1);
    return obj.echo(b + 1);
  })();
  await rpc.close();
  assert.equal(await chain, 3);
});

test('rpc: a worker that cannot open rejects the start with its error', async () => {
  const log = captureLogger('info');
  await assert.rejects(
    startRpcWorker({ url: new URL('./rpc-test-worker.js', import.meta.url), data: { failOpen: true }, logger: log.logger, component: 'test', what: 'test thread', deadCode: 'OSP_ERR_STORE' }),
    (err: Error) => isOspreyError(err, 'OSP_ERR_CONFIG') && err.message === 'cannot open: failOpen',
  );
  // The open error is the news; the thread's exit after it is not reported as a death.
  assert.deepEqual(log.lines.filter((l) => l.level >= 50), []);
});
