/**
 * Builds the console (console/src, Preact and uPlot) into dist/console with esbuild: one
 * minified script and one style sheet named by their content hash, and index.html naming them.
 * Run by `npm run build` (and so by `npm install` and `npm test`); type-checking is
 * `tsc -p console/tsconfig.json`, which runs before it.
 */
import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** Builds the console from `srcDir` into `outDir` (index.html, assets/); returns the asset names. */
export async function buildConsole(srcDir: string, outDir: string): Promise<{ js: string; css: string }> {
  const assetsDir = join(outDir, 'assets');
  // Old hashed files would be served forever; the build owns this folder.
  rmSync(assetsDir, { recursive: true, force: true });
  const result = await build({
    entryPoints: [join(srcDir, 'src', 'main.tsx')],
    bundle: true,
    minify: true,
    format: 'esm',
    target: ['es2022', 'chrome111', 'firefox111', 'safari16'],
    outdir: assetsDir,
    entryNames: '[name]-[hash]',
    sourcemap: 'linked',
    metafile: true,
    jsx: 'automatic',
    jsxImportSource: 'preact',
    logLevel: 'warning',
  });
  const entry = Object.entries(result.metafile.outputs).find(([, o]) => o.entryPoint !== undefined);
  if (!entry || !entry[1].cssBundle) throw new Error('console build: esbuild made no script or no style sheet');
  const names = { js: basename(entry[0]), css: basename(entry[1].cssBundle) };
  const html = readFileSync(join(srcDir, 'index.html'), 'utf8').replace('%SCRIPT%', `/assets/${names.js}`).replace('%STYLE%', `/assets/${names.css}`);
  writeFileSync(join(outDir, 'index.html'), html);
  compressAssets(assetsDir);
  return names;
}

/**
 * Writes `<file>.br` and `<file>.gz` beside each script and style sheet, once, at build time: the
 * fleet serves the one the browser accepts (a third of the bytes over a plant's slow links) and
 * never compresses per request.
 */
function compressAssets(assetsDir: string): void {
  for (const name of readdirSync(assetsDir)) {
    if (!/\.(js|css)$/.test(name)) continue;
    const body = readFileSync(join(assetsDir, name));
    writeFileSync(join(assetsDir, `${name}.br`), brotliCompressSync(body, { params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: body.length } }));
    writeFileSync(join(assetsDir, `${name}.gz`), gzipSync(body, { level: 9 }));
  }
}

// From dist/console/build.js: sources in console/, output beside this file.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const names = await buildConsole(fileURLToPath(new URL('../../console/', import.meta.url)), fileURLToPath(new URL('./', import.meta.url)));
  console.log(`console built: dist/console/assets/${names.js}, ${names.css}`);
}
