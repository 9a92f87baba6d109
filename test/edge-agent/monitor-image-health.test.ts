/**
 * Image health on real frames (issue 17): the good MTD magnetic-tile images streamed through a
 * real pipeline and the built-in anomaly model, observed by the monitor. Unaltered frames for a
 * long run raise no alarm; brightened, blurred, shifted and washed-out frames each raise the
 * matching alarm within the documented number of frames (docs/monitoring.md).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ALARM_OF, mtdGoodFrames, perturb, PERTURBATIONS, shuffledOrder } from '../../bench/monitor-frames.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { fitLineModel, monitoredLine } from './monitor-line.js';

const skip = dataSkip('magnetic-tile');

/** Documented bound (docs/monitoring.md): a perturbation raises its alarm within two windows (2 × 25 frames). */
const MAX_FRAMES_TO_ALARM = 50;
/** Unaltered frames of the long run. */
const LONG_RUN = 3000;

test('image health on real MTD frames: no alarm over a long unaltered run; each perturbation raises its own alarm in time', { skip, timeout: 120_000 }, async (t) => {
  const good = await mtdGoodFrames(ospreyDataDir());
  assert.ok(good.length >= 800, `MTD good frames: ${good.length}`);
  const modelDir = await fitLineModel(t, good);
  const line = await monitoredLine(t, modelDir);
  const t0 = performance.now();

  // The long run: every alarm the monitor has, image and score, must stay quiet.
  await line.run(shuffledOrder(good.length, LONG_RUN, 17).map((i) => good[i]!));
  const raised = line.alerts.filter((a) => !a.cleared);
  const f = line.monitor.figures();
  t.diagnostic(`unaltered: ${LONG_RUN} frames, ${raised.length} alarms raised (false-alarm rate ${raised.length}/${LONG_RUN}); ${((performance.now() - t0) / LONG_RUN).toFixed(2)} ms per frame; checks ${f.checkMs} ms per frame`);
  assert.deepEqual(raised.map((a) => `${a.alarm}@${a.frame}`), [], 'no alarm on unaltered frames');
  assert.equal(f.phase, 'watching');
  assert.ok(f.brightness !== undefined && f.sharpness !== undefined && f.shiftX !== undefined && f.scorePsi !== undefined, JSON.stringify(f));
  assert.ok(f.checkMs !== undefined && f.checkMs < 1, `checks cost ${f.checkMs} ms per frame`);

  // Each perturbation from a fresh reference: 100 reference frames, a window of unaltered ones,
  // then the perturbed frames until the alarm (or the bound).
  const order = shuffledOrder(good.length, 2000, 29);
  let at = 0;
  for (const kind of PERTURBATIONS) {
    line.monitor.resetReference(`test ${kind}`);
    line.alerts.length = 0;
    await line.run(order.slice(at, (at += 130)).map((i) => good[i]!));
    assert.deepEqual(line.alerts.filter((a) => !a.cleared).map((a) => a.alarm), [], `${kind}: quiet before the perturbation`);
    const start = line.frames;
    const perturbed = await Promise.all(order.slice(at, (at += MAX_FRAMES_TO_ALARM)).map((i) => perturb(good[i]!, kind)));
    for (const frame of perturbed) {
      await line.run([frame], 1);
      if (line.alerts.some((a) => a.alarm === ALARM_OF[kind] && !a.cleared)) break;
    }
    const hit = line.alerts.find((a) => a.alarm === ALARM_OF[kind] && !a.cleared);
    t.diagnostic(`${kind}: ${ALARM_OF[kind]} after ${hit ? hit.frame - start : 'no'} frames; all raised: ${line.alerts.filter((a) => !a.cleared).map((a) => `${a.alarm}@${a.frame - start}`).join(' ')}`);
    assert.ok(hit, `${kind}: ${ALARM_OF[kind]} not raised within ${MAX_FRAMES_TO_ALARM} frames`);
    assert.ok(hit.frame - start <= MAX_FRAMES_TO_ALARM);
    const others = line.alerts.filter((a) => !a.cleared && a.alarm !== ALARM_OF[kind]).map((a) => a.alarm);
    assert.deepEqual(others, [], `${kind}: only its own alarm`);
    assert.ok(line.monitor.alarms().includes(ALARM_OF[kind] as never), `${kind}: listed in alarms()`);
    assert.equal(hit.data.alarm, ALARM_OF[kind]);
  }
  t.diagnostic(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
});
