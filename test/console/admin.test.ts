/**
 * The Admin screen in a real browser (Debian's Chromium) on a real fleet: an admin adds a user
 * and makes an enrollment token; the command line the page shows (`osprey edge enroll`, a real
 * process) enrolls a real MQTT edge with it; the audit log shows both actions, filtered and paged;
 * a viewer sees no Admin screen, and the API refuses the calls its controls would make.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startFleet } from '../fleet-manager/control-helpers.js';
import { connectSimEdge } from '../helpers/sim-edge.js';
import { OSPREY_BIN } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';
import { tempDir } from '../fleet-manager/helpers.js';
import { chromiumSkip, launchChromium, watchedPage } from './browser.js';

const run = promisify(execFile);

test('an admin adds a user and enrolls a real edge from the browser; the audit log shows both; a viewer sees no Admin and is refused', { skip: chromiumSkip(), timeout: 120_000 }, async (t) => {
  const shots = process.env.OSPREY_SCREENSHOT_DIR ?? (await tempDir(t));
  await mkdir(shots, { recursive: true });
  const fleet = await startFleet(t);
  await fleet.creds.token('admin'); // makes test-admin
  const viewerToken = await fleet.creds.token('viewer'); // makes test-viewer

  const browser = await launchChromium(t);
  const { page, errors, violations } = await watchedPage(browser);
  await page.goto(`${fleet.httpUrl}/`);
  await page.getByLabel('Username').fill('test-admin');
  await page.getByLabel('Password').fill('password of test-admin');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('link', { name: 'Admin' }).click();
  await page.locator('section.admin-page').waitFor();

  // A new user with a role.
  const users = page.locator('[data-part="users"]');
  await users.locator('tr[data-user="test-admin"]').waitFor();
  await users.getByLabel('Username', { exact: true }).fill('carol');
  await users.getByLabel('Password', { exact: true }).fill('a long password for carol');
  await users.getByLabel('Role', { exact: true }).selectOption('operator');
  await users.getByRole('button', { name: 'Add user' }).click();
  await users.locator('tr[data-user="carol"]').waitFor();
  assert.equal(await users.getByLabel('Role of carol').inputValue(), 'operator');
  // Its role changed, then disabled, from the table; the fleet agrees.
  await users.getByLabel('Role of carol').selectOption('inspector');
  await users.locator('tr[data-user="carol"]').getByRole('button', { name: 'Disable' }).click();
  await users.locator('tr[data-user="carol"].disabled').waitFor();
  const carol = ((await fleet.api('GET', '/api/users')).body.users as { username: string; role: string; disabled: boolean }[]).find((u) => u.username === 'carol');
  assert.deepEqual([carol?.role, carol?.disabled], ['inspector', true]);

  // An enrollment token for a new edge: shown once, with the command line that uses it.
  const enroll = page.locator('[data-part="enrollment"]');
  await enroll.getByLabel('Edge id', { exact: true }).fill('press-9');
  await enroll.getByLabel('Valid for (minutes)').fill('30');
  await enroll.getByRole('button', { name: 'Create enrollment token' }).click();
  const command = await enroll.getByTestId('enroll-command').innerText();
  const token = await enroll.locator('code.token').innerText();
  assert.match(token, /^ospn_/);
  assert.equal(command, `osprey edge enroll --fleet ${fleet.httpUrl} --token ${token} --edge-id press-9`);
  await enroll.locator('tr[data-enrollment="press-9"]').getByText('not yet').waitFor();
  await page.screenshot({ path: join(shots, 'console-admin.png'), fullPage: true });

  // The command, run as shown (a real `osprey` process), enrolls a real MQTT edge.
  const edgeDir = await tempDir(t);
  const [, ...args] = command.split(' ');
  const out = await run(process.execPath, [OSPREY_BIN, ...args], { cwd: edgeDir });
  assert.doesNotMatch(out.stdout + out.stderr, new RegExp(token), 'the token is not echoed');
  const credential = (await readFile(join(edgeDir, 'fleet.credential'), 'utf8')).trim();
  const edge = await connectSimEdge(fleet.mqttUrl, { id: 'press-9', credential, line: 'line-A', localModel: { name: 'inspect', version: '1' } });
  t.after(() => edge.close());
  await waitFor(async () => ((await fleet.api('GET', '/api/edges')).body.edges as { id: string; online: boolean }[]).some((e) => e.id === 'press-9' && e.online), 'press-9 online');

  // Back on the page: the token is used, the credential listed.
  await enroll.getByRole('button', { name: 'Done' }).click();
  await page.reload();
  await page.locator('[data-part="enrollment"] tr[data-enrollment="press-9"]').getByText(/^by press-9/).waitFor();
  await page.locator('[data-part="credentials"] tr[data-credential="press-9"]').waitFor();

  // The audit log: both actions, by the admin; filtered by action prefix.
  const audit = page.locator('[data-part="audit"]');
  await audit.locator('tr[data-action="user.add"]').waitFor();
  assert.match(await audit.locator('tr[data-action="user.add"]').innerText(), /user:test-admin\s+user\.add\s+user:carol/);
  assert.match(await audit.locator('tr[data-action="enrollment.create"]').innerText(), /user:test-admin\s+enrollment\.create\s+edge:press-9/);
  await audit.getByLabel('Action starts with').fill('enrollment.');
  await audit.getByRole('button', { name: 'Filter / refresh' }).click();
  await audit.locator('tbody tr').first().waitFor();
  await waitFor(async () => (await audit.locator('tbody tr').count()) === 1 && (await audit.locator('tr[data-action="enrollment.create"]').count()) === 1, 'only the enrollment');
  // Paging: more than a page of entries (the audit writes one per change), newest first, older on request.
  for (let i = 0; i < 55; i++) assert.equal((await fleet.api('PATCH', '/api/users/carol', { disabled: i % 2 === 0 })).status, 200);
  await audit.getByLabel('Action starts with').fill('user.update');
  await audit.getByRole('button', { name: 'Filter / refresh' }).click();
  await waitFor(async () => (await audit.locator('tr[data-action="user.update"]').count()) === 50, 'a first page of 50');
  await audit.getByRole('button', { name: 'Older' }).click();
  // 55 by the API + 2 from the browser (role, disable).
  await waitFor(async () => (await audit.locator('tr[data-action="user.update"]').count()) === 7, 'the older page');
  assert.equal(await audit.getByRole('button', { name: 'Older' }).isDisabled(), true);
  await page.locator('section.admin-page').screenshot({ path: join(shots, 'console-admin-audit.png') });
  assert.deepEqual(await violations(), [], 'no CSP violation');
  assert.deepEqual(errors, [], 'no console error');

  // A viewer: no Admin link, the screen says so, and the API refuses what its controls would do.
  const viewer = await watchedPage(browser);
  await viewer.page.goto(`${fleet.httpUrl}/`);
  await viewer.page.getByLabel('Username').fill('test-viewer');
  await viewer.page.getByLabel('Password').fill('password of test-viewer');
  await viewer.page.getByRole('button', { name: 'Sign in' }).click();
  await viewer.page.getByTestId('who').waitFor();
  assert.equal(await viewer.page.getByRole('link', { name: 'Admin' }).count(), 0);
  await viewer.page.evaluate(() => ((globalThis as unknown as { location: { hash: string } }).location.hash = '#/admin'));
  await viewer.page.getByText('Admin is for administrators.').waitFor();
  assert.equal(await viewer.page.locator('[data-part]').count(), 0);
  // With the viewer's session cookie, and with its API token.
  assert.equal((await viewer.page.request.get(`${fleet.httpUrl}/api/users`)).status(), 403);
  assert.equal((await viewer.page.request.get(`${fleet.httpUrl}/api/audit`)).status(), 403);
  const asViewer = { authorization: `Bearer ${viewerToken}`, 'content-type': 'application/json' };
  for (const [method, path, body] of [
    ['POST', '/api/users', { username: 'mallory', password: 'x', role: 'admin' }],
    ['POST', '/api/enrollment-tokens', { edgeId: 'press-10' }],
    ['PATCH', '/api/users/carol', { role: 'admin' }],
    ['DELETE', '/api/edges/press-9/credentials', undefined],
    ['GET', '/api/edge-credentials', undefined],
  ] as const) {
    const res = await fetch(`${fleet.httpUrl}${path}`, { method, headers: asViewer, ...(body && { body: JSON.stringify(body) }) });
    assert.equal(res.status, 403, `${method} ${path}`);
  }
  assert.deepEqual(await viewer.violations(), []);
  assert.deepEqual(viewer.errors, []);
});
