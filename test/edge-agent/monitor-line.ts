/**
 * A line for the monitor tests: a real pipeline (real result store in a temp dir) running a real
 * model (the built-in anomaly model fitted on 64 MTD good images), each answered frame observed by
 * a real monitor whose `alert` events are kept with the frame count at which they came.
 */
import path from 'node:path';
import type { TestContext } from 'node:test';
import { fitBuiltinAnomalyModel } from '../../models/authoring.js';
import { loadModelPackage } from '../../models/runtime.js';
import type { ModelRunner } from '../../models/types.js';
import { createMonitor, type Monitor } from '../../edge-agent/monitor.js';
import { createPipeline, type Pipeline } from '../../edge-agent/pipeline.js';
import { openResultStore } from '../../edge-agent/result-store.js';
import type { MonitorSettings } from '../../protocol/monitoring.js';
import { tempDir, testLogger } from './fixtures.js';

export interface AlertSeen {
  /** Frames observed when it came (1-based). */
  frame: number;
  alarm: string;
  cleared: boolean;
  data: Record<string, unknown>;
}

export interface MonitoredLine {
  pipeline: Pipeline;
  monitor: Monitor;
  runner: ModelRunner;
  alerts: AlertSeen[];
  /** Frames observed so far. */
  readonly frames: number;
  /** Inspects the frames, `inFlight` at a time, in order of submission; resolves when all are answered. */
  run(frames: Buffer[], inFlight?: number): Promise<void>;
}

/** Fits the model on every 12th of `good` (64 of the 842 MTD good frames). */
export async function fitLineModel(t: TestContext, good: Buffer[]): Promise<string> {
  const dir = path.join(await tempDir(t, 'osprey-monitor-model-'), 'pkg');
  await fitBuiltinAnomalyModel(good.filter((_, i) => i % 12 === 0), dir, { name: 'mtd-anomaly', version: '1.0.0' });
  return dir;
}

export async function monitoredLine(t: TestContext, modelDir: string, settings?: MonitorSettings, now?: () => number): Promise<MonitoredLine> {
  const dir = await tempDir(t, 'osprey-monitor-');
  const store = openResultStore(dir, { durability: 'normal' });
  t.after(() => store.close());
  const runner = await loadModelPackage(modelDir, { intraOpThreads: 1 });
  t.after(() => runner.close());
  const alerts: AlertSeen[] = [];
  let frames = 0;
  const monitor = createMonitor({
    ...(settings ? { settings } : {}),
    logger: testLogger(),
    ...(now ? { now } : {}),
    publishEvent: (kind, _level, _message, data = {}) => {
      if (kind === 'alert') alerts.push({ frame: frames, alarm: String(data.alarm), cleared: data.cleared === true, data });
    },
  });
  const pipeline = createPipeline({
    store,
    model: runner,
    concurrency: 2,
    maxDepth: 64,
    maxBytes: 64 << 20,
    logger: testLogger(),
    thumbnail: () => monitor.thumbnailSize(),
    onResult: (outcome) => {
      frames++;
      monitor.observe(outcome, runner);
    },
  });
  return {
    pipeline,
    monitor,
    runner,
    alerts,
    get frames() {
      return frames;
    },
    async run(list, inFlight = 4) {
      let next = 0;
      const worker = async () => {
        while (next < list.length) {
          const frame = list[next++]!;
          await pipeline.submit(frame, { camera: 'cam1', source: 'http' });
        }
      };
      await Promise.all(Array.from({ length: inFlight }, worker));
    },
  };
}
