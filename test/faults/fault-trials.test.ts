/**
 * Randomised fault trials (issue 5), against the embedded broker and against Mosquitto with the
 * fleet manager as its client. Each trial builds a fresh plant (a fleet manager and two edges as
 * real processes, proxies on every link), runs load, and applies a seeded schedule of faults that
 * always includes kill -9 of an edge, kill -9 of the fleet manager and a broker restart, plus
 * random network faults (cut, stall, delay, flap) and sometimes a wiped edge database. Then every
 * check in world.ts must hold. The schedule and the trial live in trial.ts, shared with the
 * campaign runner (`npm run faults`, campaign.ts).
 *
 *   OSPREY_FAULT_TRIALS=N   trials per broker (default 2)
 *   OSPREY_FAULT_SEED=S     seed of the first trial (default: random; printed)
 */
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { after, test } from 'node:test';
import { mosquittoSkip } from '../helpers/mosquitto.js';
import { createTrialAssets, describeTrial, runTrial, type TrialAssets } from './trial.js';

const TRIALS = Math.max(1, Number.parseInt(process.env.OSPREY_FAULT_TRIALS ?? '', 10) || 2);
const SEED_ENV = Number.parseInt(process.env.OSPREY_FAULT_SEED ?? '', 10);
const BASE_SEED = Number.isFinite(SEED_ENV) ? SEED_ENV : Math.floor(Math.random() * 2 ** 31);

let assets: Promise<TrialAssets> | undefined;
after(async () => {
  if (assets) await rm((await assets).dir, { recursive: true, force: true });
});

for (const broker of ['aedes', 'mosquitto'] as const) {
  const skip = broker === 'mosquitto' ? mosquittoSkip() : false;
  test(`fault trials against ${broker}: the fleet holds exactly what the edges produced`, { skip, timeout: TRIALS * 180_000 }, async (t) => {
    const shared = await (assets ??= createTrialAssets());
    t.diagnostic(`${TRIALS} trial(s), seeds ${BASE_SEED}..${BASE_SEED + TRIALS - 1} (replay one with OSPREY_FAULT_SEED=<seed> OSPREY_FAULT_TRIALS=1)`);
    for (let trial = 0; trial < TRIALS; trial++) {
      const outcome = await runTrial(BASE_SEED + trial, broker, shared);
      t.diagnostic(`trial ${trial + 1}/${TRIALS} ${describeTrial(outcome)}`);
      assert.ok(outcome.passed, `${broker} seed ${outcome.seed}: ${outcome.error}`);
      const c = outcome.counts!;
      assert.deepEqual([c.lost, c.duplicated, c.notProduced], [0, 0, 0], `${broker} seed ${outcome.seed}: nothing lost, nothing twice, nothing invented`);
      assert.equal(c.atFleet + c.lostWithWipe, c.produced, 'every produced result is at the fleet or counted as lost with a wipe');
    }
  });
}
