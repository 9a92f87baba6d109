/**
 * `node --import <this module>` with OSPREY_MODULE_LOG=<file>: logs every module the process
 * loads to that file (module-load-hooks.ts). CommonJS modules that other CommonJS modules
 * require do not pass the ESM hooks; the process adds those from require.cache at exit.
 */
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';

// `node --test dist/test/` loads every file under it, this one too: without the variable it
// does nothing (the test that uses it sets it, and checks the log is not empty).
const file = process.env.OSPREY_MODULE_LOG;
if (file) {
  register('./module-load-hooks.js', import.meta.url, { data: { file } });
  const cache = createRequire(import.meta.url).cache;
  process.on('exit', () => {
    const required = Object.keys(cache);
    if (required.length > 0) appendFileSync(file, `${required.join('\n')}\n`);
  });
}
