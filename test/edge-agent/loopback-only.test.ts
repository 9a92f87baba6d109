/**
 * The edge routes that change what it watches or spend the line's CPU answer callers on the same
 * machine only, even when the API listens on the network: a caller from another address gets 403
 * and nothing happens; a loopback caller (IPv4, IPv6, IPv4-mapped) is served.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { buildHttpServer, type Health } from '../../edge-agent/http-server.js';
import { addGoldenSetRoute } from '../../edge-agent/golden-set-http.js';
import type { Pipeline } from '../../edge-agent/pipeline.js';
import type { MonitorFigures } from '../../protocol/monitoring.js';

test('POST /monitor/reference and POST /golden-set/run: 403 from another machine, served from loopback', async (t) => {
  const calls = { reset: 0, run: 0 };
  const app = buildHttpServer({
    pipeline: {} as Pipeline,
    cameras: ['cam1'],
    bodyLimitBytes: 1 << 20,
    logger: pino({ level: 'silent' }),
    health: () => ({}) as Health,
    monitor: { resetReference: () => void calls.reset++, figures: (): MonitorFigures => ({ phase: 'reference', referenceFrames: 0, frames: 0 }) },
  });
  addGoldenSetRoute(app, {
    run: async () => {
      calls.run++;
      return [];
    },
  });
  t.after(() => app.close());
  for (const url of ['/monitor/reference', '/golden-set/run']) {
    for (const remoteAddress of ['192.0.2.7', '10.1.2.3', '::ffff:192.0.2.7', '2001:db8::1']) {
      const res = await app.inject({ method: 'POST', url, remoteAddress });
      assert.equal(res.statusCode, 403, `${url} from ${remoteAddress}`);
      assert.equal(res.json().error, 'OSP_ERR_FORBIDDEN');
      assert.match(res.json().message, /callers on this machine only/);
    }
    for (const remoteAddress of ['127.0.0.1', '::1', '::ffff:127.0.0.1']) {
      const res = await app.inject({ method: 'POST', url, remoteAddress });
      assert.equal(res.statusCode, 200, `${url} from ${remoteAddress}: ${res.body}`);
    }
  }
  assert.deepEqual(calls, { reset: 3, run: 3 });
});
