/**
 * Score drift and the defect-rate spike on real frames (issue 17): a real pipeline and the
 * built-in anomaly model fitted on MTD good images. After the reference (the first frames after
 * activation), a line that starts sending MTD defect frames instead of good ones raises
 * score-drift and defect-rate-spike within the documented numbers of frames; the good frames
 * before it raise neither.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mtdDefectFrames, mtdGoodFrames, shuffledOrder } from '../../bench/monitor-frames.js';
import { MONITOR_DEFAULTS } from '../../edge-agent/monitor.js';
import { dataSkip, ospreyDataDir } from '../helpers/service-skip.js';
import { fitLineModel, monitoredLine } from './monitor-line.js';

const skip = dataSkip('magnetic-tile');

/** Documented bounds (docs/monitoring.md), for a stream that turns to MTD defect frames. */
const MAX_FRAMES_TO_DRIFT = 250;
const MAX_FRAMES_TO_SPIKE = 100;

test('score drift and defect-rate spike on real MTD frames: quiet on good frames, raised in time when defect frames arrive', { skip, timeout: 120_000 }, async (t) => {
  const data = ospreyDataDir();
  const good = await mtdGoodFrames(data);
  const bad = await mtdDefectFrames(data);
  const modelDir = await fitLineModel(t, good);
  const line = await monitoredLine(t, modelDir);

  const warm = MONITOR_DEFAULTS.scoreReferenceFrames + MONITOR_DEFAULTS.scoreWindow;
  await line.run(shuffledOrder(good.length, warm, 41).map((i) => good[i]!));
  const f = line.monitor.figures();
  t.diagnostic(`after ${warm} good frames: ${JSON.stringify(f)}`);
  assert.equal(f.phase, 'watching');
  assert.equal(f.scoreReference, 'frames', 'the built-in model carries no calibration quantiles');
  assert.ok(f.scorePsi !== undefined && f.scorePsi < MONITOR_DEFAULTS.psiLimit, `PSI ${f.scorePsi} on good frames`);
  assert.deepEqual(line.alerts.filter((a) => !a.cleared).map((a) => a.alarm), []);

  // The parts now come from a bad batch (MTD's defect classes, in a seeded order).
  const badNext = shuffledOrder(bad.length, 300, 47);
  const start = line.frames;
  for (let i = 0; i < 300; i++) {
    await line.run([bad[badNext[i]!]!], 1);
    const names = new Set(line.alerts.filter((a) => !a.cleared).map((a) => a.alarm));
    if (names.has('score-drift') && names.has('defect-rate-spike')) break;
  }
  const at = (alarm: string) => line.alerts.find((a) => a.alarm === alarm && !a.cleared);
  const drift = at('score-drift');
  const spike = at('defect-rate-spike');
  t.diagnostic(`score-drift after ${drift ? drift.frame - start : 'no'} frames (${JSON.stringify(drift?.data)}); defect-rate-spike after ${spike ? spike.frame - start : 'no'} frames (${JSON.stringify(spike?.data)})`);
  assert.ok(drift && drift.frame - start <= MAX_FRAMES_TO_DRIFT, `score-drift within ${MAX_FRAMES_TO_DRIFT} frames`);
  assert.ok(spike && spike.frame - start <= MAX_FRAMES_TO_SPIKE, `defect-rate-spike within ${MAX_FRAMES_TO_SPIKE} frames`);
  assert.ok(Number(drift.data.scorePsi) > MONITOR_DEFAULTS.psiLimit || Number(drift.data.labelPsi) > MONITOR_DEFAULTS.psiLimit);
  assert.ok(Number(spike.data.defects) >= Number(spike.data.limit));
  assert.deepEqual(line.monitor.alarms().filter((a) => a === 'score-drift' || a === 'defect-rate-spike').sort(), ['defect-rate-spike', 'score-drift']);
});
