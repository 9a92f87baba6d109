/**
 * One simulator process (forked by simulate.ts): runs its share of the edges with
 * startSimEdges. Messages: parent → `{ type: 'start', spec: SimWorkerSpec }` (first), `{ type:
 * 'stats' }`, `{ type: 'fps', fps }`, `{ type: 'drain', timeoutMs }`, `{ type: 'close' }`; child → `{ type:
 * 'ready' }`, `{ type: 'stats', stats }`, `{ type: 'drained', drained }`, `{ type: 'error', message }`. The child exits once its edges are closed.
 */
import { destination, pino, type Level } from 'pino';
import { oneLine } from '../protocol/errors.js';
import { startSimEdges, type SimEdges, type SimEdgesOptions } from './sim-edges.js';

export type SimWorkerSpec = Omit<SimEdgesOptions, 'logger'> & { logLevel: Level | 'silent' };

let edges: SimEdges | undefined;
let starting: Promise<void> | undefined;
let closing: Promise<void> | undefined;

/** Closes the edges (results stay in their SQLite files) and exits. */
function close(code = 0): Promise<void> {
  closing ??= (async () => {
    await starting?.catch(() => undefined);
    await edges?.close();
    process.exit(code);
  })();
  return closing;
}

function fail(err: unknown): void {
  process.send?.({ type: 'error', message: oneLine(err) });
  void close(1);
}

process.on('message', (msg: { type?: string; spec?: SimWorkerSpec; fps?: number; timeoutMs?: number }) => {
  if (msg.type === 'start' && msg.spec && !starting) {
    const spec = msg.spec;
    const logger = pino({ level: spec.logLevel, base: { pid: process.pid } }, destination(2));
    starting = startSimEdges({ ...spec, logger }).then((e) => {
      edges = e;
      process.send?.({ type: 'ready' });
    });
    starting.catch(fail);
  } else if (msg.type === 'stats' && edges) process.send?.({ type: 'stats', stats: edges.stats() });
  else if (msg.type === 'fps' && edges && typeof msg.fps === 'number') edges.setFps(msg.fps);
  else if (msg.type === 'drain' && edges && typeof msg.timeoutMs === 'number') {
    void edges.drain(msg.timeoutMs).then((drained) => process.send?.({ type: 'drained', drained }));
  }
  else if (msg.type === 'close') void close();
});
// The parent is gone: close cleanly all the same.
process.on('disconnect', () => void close());
// Ctrl-C reaches the whole process group; the parent decides when the edges stop.
process.on('SIGINT', () => undefined);
