/**
 * One seeded fault trial, shared by the test suite (fault-trials.test.ts) and the campaign
 * runner (campaign.ts): the schedule a seed gives, the plant it runs on, and its outcome.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { createPrng, type Prng } from './prng.js';
import type { ResultCounts } from './result-accounting.js';
import { World, type BrokerKind, type FaultKind, type StepReport, type TrialFigures } from './world.js';

export const RANDOM_FAULTS: Record<BrokerKind, FaultKind[]> = {
  aedes: ['cut-mqtt', 'stall-mqtt', 'delay-mqtt', 'flap-mqtt', 'cut-http', 'stall-http'],
  mosquitto: ['cut-mqtt', 'stall-mqtt', 'delay-mqtt', 'flap-mqtt', 'cut-http', 'stall-http', 'cut-fleet-broker-link'],
};

/** The fault schedule of one trial: the three crashes always, two random network faults, maybe a wipe. */
export function schedule(prng: Prng, broker: BrokerKind): FaultKind[] {
  const faults: FaultKind[] = ['kill-edge', 'kill-fleet', 'restart-broker', prng.pick(RANDOM_FAULTS[broker]), prng.pick(RANDOM_FAULTS[broker])];
  if (prng.next() < 0.5) faults.push('wipe-edge');
  // Fisher–Yates with the trial's PRNG: the order is part of what the seed reproduces.
  for (let i = faults.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [faults[i], faults[j]] = [faults[j]!, faults[i]!];
  }
  return faults;
}

/** What every trial of a run shares: the demo model and the frames the load cycles through. */
export interface TrialAssets {
  dir: string;
  modelDir: string;
  frames: Buffer[];
}

/** Builds the shared assets in a new temp folder (remove `dir` when done). */
export async function createTrialAssets(): Promise<TrialAssets> {
  const dir = await mkdtemp(join(tmpdir(), 'osprey-faults-'));
  const modelDir = await ensureDemoModel(join(dir, 'model'));
  const defects = ['scratch', 'spot', 'dent', null, null, null, null, null] as const;
  const frames = await Promise.all(defects.map((defect, i) => generatePartImage({ seed: 9000 + i, defect, format: 'jpeg' })));
  return { modelDir, frames, dir };
}

export interface TrialOutcome {
  seed: number;
  broker: BrokerKind;
  /** The schedule the seed gave. */
  faults: FaultKind[];
  /** The faults applied, in order (fewer than `faults` when the trial failed on the way). */
  steps: StepReport[];
  passed: boolean;
  /** Why it failed (first line first). */
  error?: string;
  /** Exactly-once counts, when the trial got as far as counting. */
  counts?: ResultCounts;
  figures?: TrialFigures;
  durationMs: number;
}

/** Runs one trial to the end; never throws for a failed check (the outcome says why). */
export async function runTrial(seed: number, broker: BrokerKind, assets: TrialAssets): Promise<TrialOutcome> {
  const t0 = performance.now();
  const prng = createPrng(seed);
  const faults = schedule(prng, broker);
  const root = await mkdtemp(join(assets.dir, `trial-${broker}-${seed}-`));
  const world = new World({
    root,
    modelDir: assets.modelDir,
    broker,
    edges: [
      { id: 'press-1', line: 'line-A' },
      { id: 'press-2', line: 'line-B' },
    ],
    frames: assets.frames,
    rate: 25,
  });
  const steps: StepReport[] = [];
  const outcome: TrialOutcome = { seed, broker, faults, steps, passed: false, durationMs: 0 };
  try {
    await world.start();
    world.startLoad(prng);
    for (const fault of faults) {
      steps.push(await world.fault(fault, prng, prng.int(300, 1200)));
      // Load between faults, so each starts from a moving system.
      await new Promise((resolve) => setTimeout(resolve, prng.int(150, 500)));
    }
    await world.stopLoad();
    await world.waitSynced();
    outcome.figures = await world.verify();
    World.assertVerdictsFlowed(steps);
    outcome.passed = true;
  } catch (err) {
    outcome.error = err instanceof Error ? err.message : String(err);
    // A timeout downstream of a dead broker says little: name the broker's death too.
    const broker = world.brokerProblem();
    if (broker && !outcome.error.includes(broker)) outcome.error += `; ${broker}`;
  } finally {
    outcome.counts = world.counts;
    try {
      await world.close();
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  }
  outcome.durationMs = Math.round(performance.now() - t0);
  return outcome;
}

/** One line for a trial: seed, verdict, steps, counts. */
export function describeTrial(o: TrialOutcome): string {
  const steps = o.steps.map((s) => `${s.fault}${s.target ? `(${s.target})` : ''} ${s.ms}ms`).join(', ');
  const c = o.counts;
  const counts = c
    ? `produced ${c.produced}, at fleet ${c.atFleet}, lost ${c.lost}, duplicated ${c.duplicated}, not produced ${c.notProduced}, lost with wipe ${c.lostWithWipe}` +
      (c.lostWithWipe ? ` (${Object.entries(c.lostWithWipeSeqs).map(([store, seqs]) => `${store}: ${seqs.join(' ')}`).join('; ')})` : '')
    : 'not counted';
  const head = `${o.broker} seed ${o.seed}: ${o.passed ? 'PASS' : 'FAIL'} in ${(o.durationMs / 1000).toFixed(1)} s`;
  if (!o.passed) return `${head} after ${steps || 'no step'} (schedule ${o.faults.join(', ')}); ${counts}; ${o.error?.split('\n')[0]}`;
  const f = o.figures!;
  return (
    `${head} — ${steps}; ${counts}; ${f.framesAnswered} verdicts answered (p50 ${f.latencyMs.p50} ms, p99 ${f.latencyMs.p99} ms, max ${f.latencyMs.max} ms), ` +
    `${f.images} images, ${f.stores} stores, ${f.integrityChecks} integrity checks ok; ` +
    `verdicts during outages: ${o.steps.filter((s) => s.answered).map((s) => `${s.fault} ${JSON.stringify(s.answered)}`).join(', ')}`
  );
}
