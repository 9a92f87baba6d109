/**
 * The Edge page's golden-set panel in a real browser on a real fleet (issue 17): an enrolled MQTT
 * edge reports a failed and a passing self-test as `golden-set` events; an operator sees the last
 * result per model version and, opened, the per-image outcomes with the one that went off.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { GoldenSetEventData } from '../../protocol/monitoring.js';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { waitFor } from '../helpers/wait-for.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

const answer = (verdict: 'ok' | 'defect', score: number) => ({ verdict, label: verdict === 'ok' ? 'good' : 'anomaly', score });

test('an operator reads an edge’s golden-set self-tests: the last result per version and its per-image outcomes', { skip: chromiumSkip(), timeout: 120_000 }, async (t) => {
  const fleet = await startFleet(t);
  await fleet.creds.token('operator'); // makes the user test-operator
  const edge = await connectSimEdge(fleet.mqttUrl, { id: 'press-g', credential: await fleet.creds.enrollEdge('press-g'), line: 'line-G', localModel: { name: 'tile-anomaly', version: '1.0.0' } });
  t.after(() => edge.close());
  const base = { role: 'active' as const, trigger: 'activation' as const, ranAt: Date.now(), durationMs: 12, expectedAccuracy: 1, images: 2 };
  const failed: GoldenSetEventData = {
    ...base, model: 'tile-anomaly@1.0.1', passed: false, accuracy: 1, mismatches: 1, reason: '1 of 2 images off their expected answer',
    outcomes: [
      { file: 'golden-00.jpg', source: 'good/a.jpg', truth: 'ok', expected: answer('ok', 0.01), got: answer('ok', 0.0132), match: false, correct: true },
      { file: 'golden-01.jpg', source: 'defects/b.jpg', truth: 'defect', expected: answer('defect', 0.9), got: answer('defect', 0.9), match: true, correct: true },
    ],
  };
  const passed: GoldenSetEventData = { ...base, model: 'tile-anomaly@1.0.0', ranAt: base.ranAt - 60_000, passed: true, accuracy: 1, mismatches: 0, outcomes: failed.outcomes.map((o) => ({ ...o, got: o.expected, match: true })) };
  await edge.sendEvent('golden-set', 'tile-anomaly@1.0.0 (active): golden set passed', passed);
  await edge.sendEvent('golden-set', 'tile-anomaly@1.0.1 (active): golden set FAILED', failed);
  await waitFor(async () => (await fleet.api('GET', '/api/edges/press-g/golden-set')).body.reports?.length === 2, 'both reports stored');

  const browser = await launchChromium(t);
  const { page, errors } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/#/edges/press-g`);
  await page.getByLabel('Username').fill('test-operator');
  await page.getByLabel('Password').fill('password of test-operator');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const panel = page.locator('[data-testid="golden-sets"]');
  await panel.locator('tr[data-model]').nth(1).waitFor();
  // Newest first: the failed version, then the passing one.
  assert.deepEqual(await panel.locator('tr[data-model]').evaluateAll((rows) => rows.map((r) => `${r.getAttribute('data-model')} ${r.getAttribute('data-result')}`)), ['tile-anomaly@1.0.1 failed', 'tile-anomaly@1.0.0 passed']);
  const bad = panel.locator('tr[data-model="tile-anomaly@1.0.1"]');
  assert.match(await bad.innerText(), /1 of 2/);
  await bad.locator('summary').click();
  const off = bad.locator('tr[data-match="false"]');
  assert.equal(await off.count(), 1);
  assert.deepEqual(await off.locator('td').allInnerTexts(), ['good/a.jpg', 'ok', 'ok good 0.01', 'ok good 0.0132', 'no']);
  assert.deepEqual(errors, [], 'no console error');
});
