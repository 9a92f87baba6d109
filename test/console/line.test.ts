/**
 * Issue 16, journey 2, in a real browser (Debian's Chromium) on a real fleet: edges that are real
 * MQTT clients with enrolled credentials send six hours of past results through the fleet's
 * ingest, the line switching from inspect@1 to inspect@2 half-way. A product manager (a viewer:
 * fleet:read) signs in, opens the line from the overview, reads the chart (time axis in local
 * time, % axis, legend, a marker where inspect@2 started), compares before/after the version
 * (the figures of what was sent), zooms by span button and by dragging, and exports the view as
 * CSV whose rows are the API's buckets for that view.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { register, startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge, type SimEdge } from '../helpers/sim-edge.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';
import { HOUR, MINUTE, countIn, pastResults, sendPast } from './line-history.js';

interface View {
  from: number;
  to: number;
  bucket: string;
  starts: number[];
  series: { line: string; key: string; total: number[]; defect: number[] }[];
}

test('a product manager compares a line before and after a version, zooms, and exports the view as CSV', { skip: chromiumSkip(), timeout: 120_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  await fleet.creds.token('viewer'); // makes the user test-viewer

  const T0 = Math.floor(Date.now() / HOUR) * HOUR - 6 * HOUR;
  const switchAt = T0 + 3 * HOUR + 30 * MINUTE;
  const common = { from: T0, to: T0 + 6 * HOUR, switchAt, oldModel: 'inspect@1', newModel: 'inspect@2', defectEvery: { old: 5, new: 12 } };
  const a1 = pastResults(common);
  const a2 = pastResults({ ...common, offsetMs: 30_000 });
  const b1 = pastResults({ ...common, switchAt: T0 + 99 * HOUR, defectEvery: { old: 8, new: 8 } });
  const edges = new Map<string, SimEdge>();
  for (const [id, line, records] of [['press-1', 'line-A', a1], ['press-2', 'line-A', a2], ['pack-1', 'line-B', b1]] as const) {
    const edge = await connectSimEdge(fleet.mqttUrl, { id, credential: await fleet.creds.enrollEdge(id), line, localModel: { name: 'inspect', version: '1' } });
    t.after(() => edge.close());
    edges.set(id, edge);
    await sendPast(edge, records);
  }
  const lineA = [...a1, ...a2];
  // A real rollout of inspect@2 to line-A (its marker is drawn where it was created).
  await register(fleet.httpUrl, 'inspect', '2', fleet.admin);
  assert.equal((await fleet.api('POST', '/api/rollouts', { model: 'inspect', version: '2', target: { lines: ['line-A'] }, stages: [{ mode: 'shadow' }] })).status, 201);
  const start = Math.min(...lineA.filter((r) => r.model === 'inspect@2').map((r) => r.ts));

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/`);
  await page.getByLabel('Username').fill('test-viewer');
  await page.getByLabel('Password').fill('password of test-viewer');
  await page.getByRole('button', { name: 'Sign in' }).click();

  // From the overview's line card to the line page.
  await page.locator('article[data-line="line-A"] h2').getByRole('link', { name: 'line-A' }).click();
  await page.locator('section.line-page[data-line="line-A"]').waitFor();
  // The address names the view (a link or a reload opens it again).
  await page.waitForFunction(() => (globalThis as unknown as { location: { hash: string } }).location.hash === '#/lines/line-A?span=86400000');
  const chart = page.locator('figure.line-chart');
  await chart.locator('canvas').waitFor();
  await page.locator('figure.line-chart[data-x-ticks][data-view$="/5m"]').waitFor();
  const range = page.getByTestId('range');
  await range.getByText(/28[89] buckets of 5m/).waitFor();

  // Axes with local times, a % axis, a legend, the version's marker.
  const ticks = JSON.parse((await chart.getAttribute('data-x-ticks'))!) as string[];
  assert.ok(ticks.length >= 4, `x ticks: ${ticks}`);
  assert.ok(ticks.every((s) => /\d{1,2}:\d{2}/.test(s)), `x ticks show times: ${ticks}`);
  const hhmm = (ms: number) => new Date(ms).toLocaleTimeString('en-US', { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  assert.ok(ticks.includes(hhmm(T0)) || ticks.includes(hhmm(T0 + 3 * HOUR)), `local hours among ${ticks}`);
  assert.match(await chart.locator('.u-legend').innerText(), /defect rate/);
  assert.deepEqual(JSON.parse((await chart.getAttribute('data-markers'))!), ['inspect@1 starts', 'inspect@2 starts', 'rollout inspect@2']);
  assert.match(await chart.locator('figcaption').innerText(), /Defect rate per 5m bucket/);

  // Before / after inspect@2: the figures of what the edges sent.
  const before = countIn(lineA, 0, start);
  const after = countIn(lineA, start, Infinity);
  const ba = page.getByTestId('before-after');
  await ba.locator('tr[data-part="after"]').waitFor();
  assert.equal(await ba.getByLabel('Version').inputValue(), 'inspect@2');
  const cells = async (part: string) => (await ba.locator(`tr[data-part="${part}"] td.figure`).allInnerTexts()).map((s) => s.trim());
  const pct = (c: { total: number; defect: number }) => `${(Math.round((10_000 * c.defect) / c.total) / 100).toLocaleString('en-US')} %`;
  assert.deepEqual(await cells('before'), [String(before.total), String(before.defect), pct(before)]);
  assert.deepEqual(await cells('after'), [String(after.total), String(after.defect), pct(after)]);
  assert.ok(before.defect / before.total > after.defect / after.total, 'the new version calls fewer defects');

  // Shifts side by side: every frame of the view in one shift.
  const shiftTotal = page.getByTestId('shifts').locator('tr.total');
  await shiftTotal.waitFor();
  const ofs = (await shiftTotal.locator('td.figure').allInnerTexts()).map((s) => Number(/of (\d+)/.exec(s)![1]));
  assert.equal(ofs.reduce((a, b) => a + b, 0), lineA.length);

  await page.screenshot({ path: join(shots, 'console-line.png') });

  // Live: a result the line inspects now appears without a reload, once the edge's next telemetry
  // report reaches the page over the event stream (results alone do not go on the stream).
  const totals = page.locator('table[data-testid="totals"] tr[data-series="line-A/all"] td.figure');
  assert.equal(await totals.first().innerText(), String(lineA.length));
  const press1 = edges.get('press-1')!;
  await press1.sendResults([{ ...a1[0]!, ts: Date.now(), model: 'inspect@2', verdict: 'defect', label: 'dent' }]);
  await press1.sendTelemetry({ 'inspect@2': { frames: 1, defects: 1 } });
  await totals.first().getByText(String(lineA.length + 1)).waitFor();

  // Zoom: 8 h by its button, then a drag across the middle of the chart.
  await page.getByRole('button', { name: '8 h' }).click();
  await range.getByText(/24[01] buckets of 2m/).waitFor();
  await page.locator('figure.line-chart[data-view$="/2m"]').waitFor();
  const over = chart.locator('.u-over');
  const box = (await over.boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.45, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  await range.getByText(/buckets of 1m · zoomed/).waitFor();

  // Counts by label.
  await page.getByLabel('Show').selectOption('label');
  await page.locator('table[data-testid="totals"] tr[data-series="line-A/scratch"]').waitFor();
  assert.match(await chart.locator('figcaption').innerText(), /Results by label per 1m bucket/);
  await page.screenshot({ path: join(shots, 'console-line-labels.png') });

  // By version, the second line overlaid; then export exactly this view.
  await page.getByLabel('Show').selectOption('version');
  await page.getByLabel('Compare with').selectOption('line-B');
  await page.locator('table[data-testid="totals"] tr[data-series="line-B/inspect@1"]').waitFor();
  const href = (await page.getByTestId('export-csv').getAttribute('href'))!;
  assert.match(href, /by=version/);
  assert.match(href, /compare=line-B/);
  const csvRes = await page.request.get(`${fleet.httpUrl}${href}`);
  assert.equal(csvRes.status(), 200);
  assert.match(csvRes.headers()['content-disposition']!, /^attachment; filename="osprey-line-A-vs-line-B-version-1m\.csv"$/);
  const view = (await (await page.request.get(`${fleet.httpUrl}${href.replace('&format=csv', '')}`)).json()) as View;
  assert.ok(view.starts.length >= 60 && view.starts.length <= 300, `${view.starts.length} buckets in the zoomed view`);
  const rows = (await csvRes.text()).trimEnd().split('\r\n');
  assert.equal(rows.length - 1, view.starts.length * view.series.length);
  rows.slice(1).forEach((row, i) => {
    const b = Math.floor(i / view.series.length);
    const s = view.series[i % view.series.length]!;
    const [iso, ms, line, key, total, defect] = row.split(',');
    assert.deepEqual([iso, Number(ms), line, key, Number(total), Number(defect)], [new Date(view.starts[b]!).toISOString(), view.starts[b], s.line, s.key, s.total[b], s.defect[b]]);
  });
  // The legend names each overlaid series.
  const legend = await chart.locator('.u-legend').innerText();
  for (const s of view.series) assert.ok(legend.includes(`${s.line}: ${s.key}`), `legend has ${s.line}: ${s.key}`);
  await page.screenshot({ path: join(shots, 'console-line-zoomed.png') });
  await page.screenshot({ path: join(shots, 'console-line-full.png'), fullPage: true });
  // A tablet on the line, upright: the chart takes the new width.
  await page.setViewportSize({ width: 800, height: 1280 });
  await page.waitForFunction(() => (globalThis as unknown as { document: { querySelector(s: string): { clientWidth: number } | null } }).document.querySelector('.line-chart canvas')!.clientWidth < 800);
  await page.screenshot({ path: join(shots, 'console-line-tablet.png') });

  // A link to a window ending at local midnight: the clock reads 00:00, never 24:00.
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  await page.evaluate((h) => ((globalThis as unknown as { location: { hash: string } }).location.hash = h), `#/lines/line-A?from=${midnight.getTime() - 3 * HOUR}&to=${midnight.getTime()}`);
  await range.getByText('180 buckets of 1m').waitFor();
  const rangeText = await range.innerText();
  assert.ok(rangeText.includes('00:00:00') && !rangeText.includes('24:00'), rangeText);
  await page.waitForFunction(() => /00:00/.test((globalThis as unknown as { document: { querySelector(s: string): { getAttribute(a: string): string | null } } }).document.querySelector('figure.line-chart')!.getAttribute('data-x-ticks') ?? ''));
  const midnightTicks = JSON.parse((await chart.getAttribute('data-x-ticks'))!) as string[];
  assert.ok(midnightTicks.includes('00:00') && !midnightTicks.some((s) => s.startsWith('24')), `ticks: ${midnightTicks}`);

  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');
});
