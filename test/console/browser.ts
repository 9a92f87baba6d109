/**
 * Debian's Chromium driven by playwright-core, for the console's browser tests. Never a
 * downloaded browser: $OSPREY_CHROMIUM, else /usr/bin/chromium (`apt-get install chromium`,
 * which .ci/run does). Missing, the tests skip on a developer's machine and fail under CI.
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { serviceSkip } from '../helpers/service-skip.js';

/** Where the browser is. */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.OSPREY_CHROMIUM ?? '/usr/bin/chromium';
}

/** The skip reason when Chromium is missing (a throw under CI), else false. */
export function chromiumSkip(env: NodeJS.ProcessEnv = process.env): string | false {
  const path = chromiumPath(env);
  return serviceSkip(existsSync(path) ? false : `Chromium not found at ${path} (apt-get install chromium, or set OSPREY_CHROMIUM); skipping`, env);
}

export interface WatchedPage {
  page: Page;
  /** Console errors and uncaught exceptions, as text. */
  errors: string[];
  /** CSP violations the page reported (`securitypolicyviolation`). */
  violations: () => Promise<string[]>;
}

/** Launches headless Chromium (closed after the test). */
export async function launchChromium(t: TestContext): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: chromiumPath(), headless: true });
  t.after(() => browser.close());
  return browser;
}

/** A 1280×800 page (a control-room screen) that records console errors and CSP violations. */
export async function watchedPage(browser: Browser): Promise<WatchedPage> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (err) => errors.push(`uncaught: ${err.message}`));
  // Injected by the driver, not the page: the page's own CSP does not apply to it.
  await page.addInitScript(() => {
    // Runs in the page (this file is compiled without the DOM's types).
    const w = globalThis as unknown as { __cspViolations: string[]; document: { addEventListener(type: string, fn: (e: { violatedDirective: string; blockedURI: string }) => void): void } };
    w.__cspViolations = [];
    w.document.addEventListener('securitypolicyviolation', (e) => w.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return {
    page,
    errors,
    violations: () => page.evaluate(() => (globalThis as unknown as { __cspViolations: string[] }).__cspViolations),
  };
}
