/**
 * The campaign's bookkeeping, on made-up outcomes (the trials themselves are fault-trials.test.ts):
 * options, the fault mix and totals, a failed trial kept with its reason, and the generated
 * section of docs/RELIABILITY.md replaced between its markers only.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DOC_BEGIN, DOC_END, parseCampaignArgs, renderSection, replaceSection, summarize } from './campaign.js';
import type { TrialOutcome } from './trial.js';

const counts = (produced: number, lostWithWipe = 0) => ({
  produced,
  atFleet: produced - lostWithWipe,
  lost: 0,
  duplicated: 0,
  notProduced: 0,
  lostWithWipe,
  lostWithWipeSeqs: (lostWithWipe ? { 'press-1/abc': [41] } : {}) as Record<string, number[]>,
});

const outcomes: TrialOutcome[] = [
  {
    seed: 7,
    broker: 'aedes',
    faults: ['kill-edge', 'wipe-edge'],
    steps: [{ fault: 'kill-edge', ms: 300 }, { fault: 'wipe-edge', ms: 400 }],
    passed: true,
    counts: counts(500, 1),
    durationMs: 15_000,
  },
  {
    seed: 7,
    broker: 'mosquitto',
    faults: ['kill-edge', 'cut-mqtt', 'kill-fleet'],
    steps: [{ fault: 'kill-edge', ms: 300 }],
    passed: false,
    error: 'timed out after 60000 ms waiting for press-1 fully synced\nstack…',
    durationMs: 70_000,
  },
];
const machine = { cpu: 'Test CPU', cores: 2, memoryGiB: 4, loadAverage: 1.5, node: 'v20.0.0' };

test('campaign options: defaults, and a one-line error naming the bad option', () => {
  assert.deepEqual(parseCampaignArgs(['--trials', '3', '--seed', '42']), { trials: 3, brokers: ['aedes', 'mosquitto'], seed: 42, help: false });
  assert.deepEqual(parseCampaignArgs(['--trials', '1', '--broker', 'mosquitto', '--seed', '1', '--out', 'x.json']).brokers, ['mosquitto']);
  assert.throws(() => parseCampaignArgs([]), /^Error: --trials: expected a whole number ≥ 1, got nothing$/);
  assert.throws(() => parseCampaignArgs(['--trials', '2', '--broker', 'hivemq']), /--broker: expected aedes, mosquitto or both, got hivemq/);
  assert.throws(() => parseCampaignArgs(['--trials', '2', '--seed=-1']), /--seed: expected a whole number/);
});

test('the summary counts the faults applied, sums the counts and keeps each failure with its reason', () => {
  const s = summarize(outcomes, { date: new Date('2026-12-06T06:00:00Z'), machine, brokers: ['aedes', 'mosquitto'], trialsPerBroker: 1, firstSeed: 7, durationS: 85 });
  assert.deepEqual(s.faultMix, { 'kill-edge': 2, 'wipe-edge': 1 });
  assert.deepEqual(s.outcome, { trials: 2, passed: 1, failed: 1, totals: { produced: 500, atFleet: 499, lost: 0, duplicated: 0, notProduced: 0, lostWithWipe: 1 } });
  assert.deepEqual(s.failures, [{ broker: 'mosquitto', seed: 7, reason: 'timed out after 60000 ms waiting for press-1 fully synced' }]);
  assert.deepEqual(s.seeds, { from: 7, to: 7 });

  const md = renderSection(s);
  assert.ok(md.startsWith(DOC_BEGIN) && md.endsWith(DOC_END));
  assert.match(md, /\*\*1 of 2 trials failed\*\*/);
  assert.match(md, /Test CPU, 2 cores/);
  assert.match(md, /\| failed \| 2 \| 1 \| 1 \| 500 \| 499 \| 0 \| 0 \| 0 \| 1 \|/);
  assert.match(md, /\| kill-edge \| 2 \|/);
  assert.match(md, /aedes seed 7: 1 \(press-1\/abc seq 41\)/);
  assert.match(md, /\| mosquitto \| 7 \| timed out after 60000 ms waiting for press-1 fully synced \|/);
});

test('the generated section replaces only what lies between the markers', () => {
  const doc = `# Reliability\n\nby hand\n\n${DOC_BEGIN}\nold\n${DOC_END}\n\nafter\n`;
  assert.equal(replaceSection(doc, `${DOC_BEGIN}\nnew\n${DOC_END}`), `# Reliability\n\nby hand\n\n${DOC_BEGIN}\nnew\n${DOC_END}\n\nafter\n`);
  assert.equal(replaceSection('# R\n', `${DOC_BEGIN}\nnew\n${DOC_END}`), `# R\n\n${DOC_BEGIN}\nnew\n${DOC_END}\n`);
});
