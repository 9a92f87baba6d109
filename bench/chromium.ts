/**
 * Debian's Chromium for benchmarks, driven by playwright-core: $OSPREY_CHROMIUM, else
 * /usr/bin/chromium (`apt-get install chromium`). Never a downloaded browser.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

/** Where the browser is. */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.OSPREY_CHROMIUM ?? '/usr/bin/chromium';
}

/** Headless Chromium, or null when it is not installed. */
export async function launchBenchChromium(env: NodeJS.ProcessEnv = process.env): Promise<Browser | null> {
  const path = chromiumPath(env);
  if (!existsSync(path)) return null;
  return chromium.launch({ executablePath: path, headless: true });
}
