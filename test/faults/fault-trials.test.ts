/**
 * Randomised fault trials (issue 5), against the embedded broker and against Mosquitto with the
 * fleet manager as its client. Each trial builds a fresh plant (a fleet manager and two edges as
 * real processes, proxies on every link), runs load, and applies a seeded schedule of faults that
 * always includes kill -9 of an edge, kill -9 of the fleet manager and a broker restart, plus
 * random network faults (cut, stall, delay, flap) and sometimes a wiped edge database. Then every
 * check in world.ts must hold.
 *
 *   OSPREY_FAULT_TRIALS=N   trials per broker (default 2)
 *   OSPREY_FAULT_SEED=S     seed of the first trial (default: random; printed)
 */
import { rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { mosquittoSkip } from '../helpers/mosquitto.js';
import { createPrng, type Prng } from './prng.js';
import { World, type BrokerKind, type FaultKind, type StepReport } from './world.js';

const TRIALS = Math.max(1, Number.parseInt(process.env.OSPREY_FAULT_TRIALS ?? '', 10) || 2);
const SEED_ENV = Number.parseInt(process.env.OSPREY_FAULT_SEED ?? '', 10);
const BASE_SEED = Number.isFinite(SEED_ENV) ? SEED_ENV : Math.floor(Math.random() * 2 ** 31);

const RANDOM_FAULTS: Record<BrokerKind, FaultKind[]> = {
  aedes: ['cut-mqtt', 'stall-mqtt', 'delay-mqtt', 'flap-mqtt', 'cut-http', 'stall-http'],
  mosquitto: ['cut-mqtt', 'stall-mqtt', 'delay-mqtt', 'flap-mqtt', 'cut-http', 'stall-http', 'cut-fleet-broker-link'],
};

/** The fault schedule of one trial: the three crashes always, two random network faults, maybe a wipe. */
function schedule(prng: Prng, broker: BrokerKind): FaultKind[] {
  const faults: FaultKind[] = ['kill-edge', 'kill-fleet', 'restart-broker', prng.pick(RANDOM_FAULTS[broker]), prng.pick(RANDOM_FAULTS[broker])];
  if (prng.next() < 0.5) faults.push('wipe-edge');
  // Fisher–Yates with the trial's PRNG: the order is part of what the seed reproduces.
  for (let i = faults.length - 1; i > 0; i--) {
    const j = prng.int(0, i);
    [faults[i], faults[j]] = [faults[j]!, faults[i]!];
  }
  return faults;
}

let assets: Promise<{ modelDir: string; frames: Buffer[]; dir: string }> | undefined;
after(async () => {
  if (assets) await rm((await assets).dir, { recursive: true, force: true });
});
function sharedAssets() {
  assets ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'osprey-faults-'));
    const modelDir = await ensureDemoModel(join(dir, 'model'));
    const defects = ['scratch', 'spot', 'dent', null, null, null, null, null] as const;
    const frames = await Promise.all(defects.map((defect, i) => generatePartImage({ seed: 9000 + i, defect, format: 'jpeg' })));
    return { modelDir, frames, dir };
  })();
  return assets;
}

for (const broker of ['aedes', 'mosquitto'] as const) {
  const skip = broker === 'mosquitto' ? mosquittoSkip() : false;
  test(`fault trials against ${broker}: the fleet holds exactly what the edges produced`, { skip, timeout: TRIALS * 180_000 }, async (t) => {
    const { modelDir, frames, dir } = await sharedAssets();
    t.diagnostic(`${TRIALS} trial(s), seeds ${BASE_SEED}..${BASE_SEED + TRIALS - 1} (replay one with OSPREY_FAULT_SEED=<seed> OSPREY_FAULT_TRIALS=1)`);
    for (let trial = 0; trial < TRIALS; trial++) {
      const seed = BASE_SEED + trial;
      const prng = createPrng(seed);
      const faults = schedule(prng, broker);
      const root = await mkdtemp(join(dir, `trial-${seed}-`));
      const world = new World({
        root,
        modelDir,
        broker,
        edges: [
          { id: 'press-1', line: 'line-A' },
          { id: 'press-2', line: 'line-B' },
        ],
        frames,
        rate: 25,
      });
      const steps: StepReport[] = [];
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
        const figures = await world.verify();
        World.assertVerdictsFlowed(steps);
        t.diagnostic(
          `trial ${trial + 1}/${TRIALS} ${broker} seed ${seed}: PASS — ${steps.map((s) => `${s.fault}${s.target ? `(${s.target})` : ''} ${s.ms}ms`).join(', ')}; ` +
            `${figures.framesAnswered} verdicts answered (p50 ${figures.latencyMs.p50} ms, p99 ${figures.latencyMs.p99} ms, max ${figures.latencyMs.max} ms), ` +
            `${figures.results} results at the fleet = produced, ${figures.images} images, ${figures.stores} stores, ${figures.integrityChecks} integrity checks ok; ` +
            `verdicts during outages: ${steps.filter((s) => s.answered).map((s) => `${s.fault} ${JSON.stringify(s.answered)}`).join(', ')}`,
        );
      } catch (err) {
        t.diagnostic(`trial ${trial + 1}/${TRIALS} ${broker} seed ${seed}: FAIL after ${steps.map((s) => s.fault).join(', ')} (schedule ${faults.join(', ')})`);
        throw err;
      } finally {
        await world.close();
        await rm(root, { recursive: true, force: true });
      }
    }
  });
}
