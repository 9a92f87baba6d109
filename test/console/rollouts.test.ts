/**
 * Issue 16, journeys 1 and 4, in a real browser (Debian's Chromium) on a fleet with two real edge
 * agents on line-A that download, verify and run what the fleet asks:
 *  1. a release manager rolls a new version out to line-A in two stages (a canary on half the
 *     line, promoted by hand, then the whole line), watching each stage and each edge live; an
 *     operator (who may stop harm but not release) rolls it back, and the edges report the old
 *     version again;
 *  4. a viewer sees no controls on any screen, and the API refuses (403) every call the hidden
 *     controls would make, sent with the viewer's own session cookie and CSRF header.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pino } from 'pino';
import type { Browser, Page } from 'playwright-core';
import { createEdgeAgent, type EdgeAgent } from '../../edge-agent/edge-agent.js';
import { parseEdgeConfig } from '../../edge-agent/config.js';
import { archiveDirectory, packArchive, unpackArchive } from '../../models/package-archive.js';
import { DEMO_MODEL_NAME, ensureDemoModel, generatePartImage } from '../../models/fixtures.js';
import { startFleet, type TestFleet } from '../fleet-manager/control-helpers.js';
import { enrolledCredentialFile } from '../helpers/edge-credential.js';
import { signedArchive, testPublisherKey } from '../helpers/publisher.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage, type WatchedPage } from './browser.js';

const EDGES = ['press-1', 'press-2'];

test('rollouts in the console: a two-stage rollout to one line and its roll back (journey 1); a viewer sees no control and is refused (journey 4)', { skip: chromiumSkip(), timeout: 240_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  for (const role of ['release-manager', 'operator', 'viewer'] as const) await fleet.creds.token(role); // makes the user test-<role>

  // The edges run their local v1; the registry has 2.0.0 (the same network, a new version).
  const v1Dir = await ensureDemoModel(join(fleet.dataDir, 'models'));
  const v1 = (JSON.parse(await readFile(join(v1Dir, 'manifest.json'), 'utf8')) as { version: string }).version;
  const files = unpackArchive(await archiveDirectory(v1Dir));
  const manifest = JSON.parse(files.get('manifest.json')!.toString()) as Record<string, unknown>;
  const v2 = packArchive(new Map([...files, ['manifest.json', Buffer.from(JSON.stringify({ ...manifest, version: '2.0.0' }))]]));
  const up = await fetch(`${fleet.httpUrl}/api/models/${DEMO_MODEL_NAME}/versions`, { method: 'POST', body: signedArchive(v2), headers: { ...fleet.admin, 'content-type': 'application/x-tar' } });
  assert.equal(up.status, 201);
  const OLD = `${DEMO_MODEL_NAME}@${v1}`;
  const NEW = `${DEMO_MODEL_NAME}@2.0.0`;

  const agents = new Map<string, EdgeAgent>();
  for (const id of EDGES) agents.set(id, await startAgent(t, fleet, id, v1Dir));
  await waitFor(async () => (await fleet.api('GET', '/api/edges')).body.edges.filter((e: { online: boolean }) => e.online).length === 2, 'both edges online');
  let seed = 1;
  /** A few real frames on an edge: its results carry the model that inspected them. */
  const inspect = async (id: string, n: number) => {
    for (let i = 0; i < n; i++) await agents.get(id)!.inspect(await generatePartImage({ seed: seed++, defect: null, format: 'jpeg' }), { camera: 'cam1', source: 'http' });
  };

  const browser = await launchChromium(t);

  await t.test('journey 1: a release manager rolls 2.0.0 out to line-A in two stages; an operator rolls it back', async () => {
    const rm = await signedIn(browser, fleet, 'release-manager');
    const { page } = rm;
    await page.getByRole('link', { name: 'Rollouts', exact: true }).click();
    await page.getByRole('link', { name: 'New rollout' }).click();
    await page.getByRole('heading', { name: 'New rollout' }).waitFor();
    // The version comes from the registry; the target is a line; defaults are explained.
    await page.locator('select').nth(1).locator('option', { hasText: '2.0.0' }).waitFor({ state: 'attached' });
    assert.equal(await page.locator('fieldset[data-part="target"] select').inputValue(), 'line-A');
    assert.equal(await page.locator('[data-stage-form]').count(), 3, 'shadow, canary, full by default');
    await page.getByText(/Shadow: the new version runs beside the current one/).first().waitFor();
    await page.screenshot({ path: join(shots, 'console-rollout-new.png'), fullPage: true });

    // Two stages: no shadow; a canary on 50 % (one edge), promoted by hand; then the whole line.
    await page.getByRole('button', { name: 'Remove stage 1' }).click();
    assert.equal(await page.locator('[data-stage-form]').count(), 2);
    const canary = page.locator('[data-stage-form="0"]');
    assert.equal(await canary.getByLabel('Name').inputValue(), 'canary');
    await canary.getByLabel('Share of the target (%)').fill('50');
    await canary.getByLabel('Soak (seconds)').fill('0');
    await canary.locator('tr[data-gate="minFrames"] input[type="checkbox"]').uncheck();
    await canary.locator('tr[data-gate="maxDefectRateChange"] input[type="checkbox"]').uncheck();
    // The error-rate gate stays: ≤ 1 % over the canary's frames.
    assert.equal(await canary.locator('tr[data-gate="maxErrorRate"] input.short').inputValue(), '1');
    const full = page.locator('[data-stage-form="1"]');
    await full.locator('tr[data-gate="maxErrorRate"] input[type="checkbox"]').uncheck();
    // The whole line must report the new version before the last stage passes.
    await page.getByLabel('Edges that must report').fill('2');
    await page.getByRole('button', { name: 'Start rollout' }).click();

    // The rollout's page, live: the canary runs on one edge, waiting for its error-rate figure.
    const ro = page.locator('section.rollout-page');
    await ro.waitFor();
    const id = (await ro.getAttribute('data-rollout'))!;
    const canaryStage = page.locator('article.ro-stage[data-stage="canary"]');
    const canaryEdge = canaryStage.locator('tr[data-edge][data-progress="reporting"]');
    await canaryEdge.waitFor({ timeout: 60_000 });
    assert.equal(await canaryStage.locator('tr[data-edge]').count(), 1, 'the canary is half the line: one edge');
    const first = (await canaryEdge.getAttribute('data-edge'))!;
    const other = EDGES.find((e) => e !== first)!;
    assert.equal(await canaryEdge.locator('td').nth(4).innerText(), NEW, 'it reports the new version');
    assert.equal(agents.get(first)!.health().model, NEW, 'the real agent runs it');
    assert.equal(agents.get(other)!.health().model, OLD, 'the other edge is not in the canary');
    await canaryStage.locator('tr[data-gate="maxErrorRate"][data-status="pending"]').waitFor();

    // Frames on the canary: its error rate appears against the limit, the gate passes and the
    // stage waits for a person.
    await inspect(first, 3);
    await canaryStage.locator('tr[data-gate="maxErrorRate"][data-status="pass"]').waitFor({ timeout: 30_000 });
    assert.match(await canaryStage.locator('tr[data-gate="maxErrorRate"]').innerText(), /0 %\s+≤ 1 %\s+pass/);
    await page.locator('section.rollout-page[data-status="awaiting-promotion"]').waitFor();
    await page.screenshot({ path: join(shots, 'console-rollout-canary.png'), fullPage: true });

    // Promote, confirmed: the full stage takes the whole line; both edges converge; completed.
    await page.getByRole('button', { name: 'Promote' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByText(/opens the next stage/).waitFor();
    await dialog.getByRole('button', { name: 'Promote' }).click();
    await dialog.waitFor({ state: 'detached' });
    const fullStage = page.locator('article.ro-stage[data-stage="full"]');
    await page.locator('.ro-stepper li[data-stage="canary"][data-status="promoted"]').waitFor();
    await page.locator('section.rollout-page[data-status="completed"]').waitFor({ timeout: 60_000 });
    await page.locator('.ro-stepper li[data-stage="full"][data-status="passed"]').waitFor();
    await page.locator('.ro-now h2').getByText(`Edges now: 2 of 2 on ${NEW}`).waitFor();
    for (const e of EDGES) {
      const row = fullStage.locator(`tr[data-edge="${e}"]`);
      assert.equal(await row.getAttribute('data-converged'), 'true', `${e} converged`);
      assert.equal(await row.locator('td').nth(4).innerText(), NEW);
      assert.equal(agents.get(e)!.health().model, NEW);
    }
    await page.screenshot({ path: join(shots, 'console-rollout-completed.png'), fullPage: true });

    // An operator: may roll back, may neither start nor promote a rollout.
    const op = await signedIn(browser, fleet, 'operator');
    await op.page.goto(`${fleet.httpUrl}/#/rollouts`);
    await op.page.locator(`tr[data-rollout="${id}"][data-status="completed"]`).waitFor();
    assert.equal(await op.page.getByRole('link', { name: 'New rollout' }).count(), 0);
    assert.deepEqual(await op.page.locator('.ro-lines button').allInnerTexts(), ['Roll back line-A']);
    await op.page.getByRole('link', { name: id }).click();
    await op.page.locator('section.rollout-page').waitFor();
    assert.deepEqual(await op.page.locator('.ro-actions button').allInnerTexts(), ['Roll back']);
    await op.page.getByRole('button', { name: 'Roll back', exact: true }).click();
    const confirm = op.page.getByRole('dialog');
    await confirm.getByText(/returns to the version it ran before the rollout/).waitFor();
    await op.page.screenshot({ path: join(shots, 'console-rollout-confirm.png') });
    await confirm.getByRole('button', { name: 'Roll back' }).click();

    // Both pages see it live; the real edges go back to the old version and say so.
    await page.locator('section.rollout-page[data-status="rolled-back"]').waitFor();
    for (const e of EDGES) await fullStage.locator(`tr[data-edge="${e}"] td:nth-child(5)`).getByText(OLD, { exact: true }).waitFor({ timeout: 60_000 });
    for (const e of EDGES) assert.equal(agents.get(e)!.health().model, OLD, `${e} runs the old version again`);
    await page.locator('.ro-now h2').getByText(`Edges now: 0 of 2 on ${NEW}`).waitFor();
    for (const e of EDGES) assert.match(await page.locator(`.ro-now li[data-edge="${e}"][data-on-candidate="false"]`).innerText(), new RegExp(`${e}: ${OLD}.*before the rollout: ${OLD}`));
    await inspect(first, 1);
    await op.page.locator('section.rollout-page[data-status="rolled-back"]').waitFor();
    assert.match(await page.locator('.ro-history').innerText(), /promote by test-release-manager[\s\S]*rollback by test-operator/);
    await page.screenshot({ path: join(shots, 'console-rollout-rolled-back.png'), fullPage: true });

    // The line's own roll back, from the list (where the line page embeds the same component):
    // the edges return to the version they left (a swap), confirmed.
    await op.page.goto(`${fleet.httpUrl}/#/rollouts`);
    await op.page.getByRole('button', { name: 'Roll back line-A' }).click();
    await op.page.getByRole('dialog').getByText(/Every edge of/).waitFor();
    await op.page.getByRole('dialog').getByRole('button', { name: 'Roll back line-A' }).click();
    await op.page.locator('.line-rollback [role="status"]').getByText(NEW).waitFor();
    await waitFor(() => EDGES.every((e) => agents.get(e)!.health().model === NEW) || undefined, 'the line back on 2.0.0', 60_000, 50);

    for (const w of [rm, op]) {
      assert.deepEqual(await w.violations(), [], 'no CSP violation');
      assert.deepEqual(w.errors, [], 'no console error');
    }
  });

  await t.test('journey 4: a viewer sees no controls, and the API refuses what they would do', async () => {
    const viewer = await signedIn(browser, fleet, 'viewer');
    const { page } = viewer;
    const buttons = () => page.getByRole('button').allInnerTexts();
    // The overview, an edge, the rollout list, a rollout, the new-rollout address.
    await page.locator('tr[data-edge="press-1"]').waitFor();
    assert.deepEqual(await buttons(), ['Sign out'], 'overview');
    await page.locator('tr[data-edge="press-1"]').getByRole('link', { name: 'press-1' }).click();
    await page.locator('section.edge-page').waitFor();
    assert.deepEqual(await buttons(), ['Sign out'], 'edge page');
    await page.getByRole('link', { name: 'Rollouts', exact: true }).click();
    const row = page.locator('tr[data-rollout]').first();
    await row.waitFor();
    assert.deepEqual(await buttons(), ['Sign out'], 'rollout list');
    assert.equal(await page.getByRole('link', { name: 'New rollout' }).count(), 0);
    const id = (await row.getAttribute('data-rollout'))!;
    await page.getByRole('link', { name: id }).click();
    await page.locator('article.ro-stage[data-stage="full"] tr[data-edge]').first().waitFor();
    assert.deepEqual(await buttons(), ['Sign out'], 'rollout page');
    await page.screenshot({ path: join(shots, 'console-rollout-viewer.png'), fullPage: true });
    // On a tablet on the line: nothing spills sideways out of the page.
    await page.setViewportSize({ width: 800, height: 1280 });
    assert.equal(await page.evaluate(() => (globalThis as unknown as { document: { documentElement: { scrollWidth: number } } }).document.documentElement.scrollWidth), 800);
    await page.screenshot({ path: join(shots, 'console-rollout-tablet.png'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.goto(`${fleet.httpUrl}/#/rollouts/new`);
    await page.getByText('Starting a rollout needs the release manager role.').waitFor();
    assert.deepEqual(await buttons(), ['Sign out'], 'new rollout');

    // What the hidden controls would send, with this browser's session cookie and CSRF header.
    const calls: [string, unknown][] = [
      ['/api/rollouts', { model: DEMO_MODEL_NAME, version: '2.0.0', target: { lines: ['line-A'] }, stages: [{ mode: 'live' }] }],
      ...(['promote', 'pause', 'resume', 'abort', 'rollback'] as const).map((a): [string, unknown] => [`/api/rollouts/${id}/${a}`, {}]),
      ['/api/lines/line-A/rollback', {}],
    ];
    const answers = await page.evaluate(async (list) => {
      const f = globalThis.fetch;
      const session = (await (await f('/api/auth/session')).json()) as { session: { csrfToken: string } };
      const out: [string, number, string][] = [];
      for (const [path, body] of list) {
        const res = await f(path, { method: 'POST', credentials: 'same-origin', headers: { 'content-type': 'application/json', 'x-osprey-csrf': session.session.csrfToken }, body: JSON.stringify(body) });
        out.push([path, res.status, ((await res.json()) as { error: string }).error]);
      }
      return out;
    }, calls);
    assert.deepEqual(
      answers,
      calls.map(([path]) => [path, 403, 'OSP_ERR_FORBIDDEN']),
    );
    // Nothing changed: the edges still run 2.0.0, no new rollout.
    assert.equal((await fleet.api('GET', '/api/rollouts')).body.rollouts.length, 1);
    for (const e of EDGES) assert.equal(agents.get(e)!.health().model, NEW);
    assert.deepEqual(await viewer.violations(), []);
    assert.deepEqual(
      viewer.errors.filter((e) => !/status of 403 \(Forbidden\)/.test(e)),
      [],
      'no console error besides the refusals',
    );
  });
});

async function startAgent(t: { after(fn: () => unknown): void }, fleet: TestFleet, id: string, modelDir: string): Promise<EdgeAgent> {
  const publicKey = (await fleet.api('GET', '/api/fleet/public-key')).body as string;
  const dataDir = join(fleet.dataDir, id);
  const agent = createEdgeAgent(
    parseEdgeConfig({
      edgeId: id,
      line: 'line-A',
      dataDir,
      http: { host: '127.0.0.1', port: 0 },
      fleet: { mqttUrl: fleet.mqttUrl, httpUrl: fleet.httpUrl, publicKey, trustedKeys: [testPublisherKey()], credentialFile: await enrolledCredentialFile(fleet.creds, id, join(dataDir, 'fleet.credential')) },
      model: { dir: modelDir, retryBaseMs: 50, retryMaxMs: 500 },
      sync: { batchSize: 10, intervalMs: 100 },
      telemetry: { intervalMs: 500 },
    }),
    { logger: pino({ level: 'silent' }), reconnectPeriodMs: 100, finalSyncMs: 500 },
  );
  t.after(() => agent.close());
  await agent.start();
  return agent;
}

/** A fresh browser context (its own cookies) signed in as test-<role>. */
async function signedIn(browser: Browser, fleet: TestFleet, role: string): Promise<WatchedPage & { page: Page }> {
  const w = await watchedPage(browser);
  await w.page.goto(`${fleet.httpUrl}/`);
  await w.page.getByLabel('Username').fill(`test-${role}`);
  await w.page.getByLabel('Password').fill(`password of test-${role}`);
  await w.page.getByRole('button', { name: 'Sign in' }).click();
  await w.page.getByTestId('who').getByText(role, { exact: true }).waitFor();
  return w;
}
