#!/usr/bin/env node
// Thin shim: the CLI is TypeScript compiled to dist/ by `npm install` (the prepare script).
import('../dist/cli/osprey.js').catch((err) => {
  if (err && err.code === 'ERR_MODULE_NOT_FOUND' && String(err.message).includes('dist/cli')) {
    console.error('osprey: not built yet; run `npm install` (or `npm run build`) first');
  } else {
    console.error(err);
  }
  process.exit(1);
});
