/**
 * `npm run openapi`: writes docs/openapi.json and docs/openapi-edge.json as the code generates
 * them, so an API change shows up in review (openapi.test.ts fails until they are rewritten).
 */
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { EDGE_OPENAPI_FILE, FLEET_OPENAPI_FILE, documentText, edgeOpenApi, fleetOpenApi } from './openapi-documents.js';

async function main(): Promise<void> {
  const root = fileURLToPath(new URL('../../../', import.meta.url));
  for (const [file, make] of [[FLEET_OPENAPI_FILE, fleetOpenApi], [EDGE_OPENAPI_FILE, edgeOpenApi]] as const) {
    const { doc } = await make();
    await writeFile(`${root}${file}`, documentText(doc));
    console.log(`wrote ${file} (${Object.keys(doc.paths).length} paths)`);
  }
}

// Only when run as the script: `node --test dist/test/` loads every file under test/ as a test file.
if (!process.env.NODE_TEST_CONTEXT && process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().catch((err: unknown) => {
    console.error('openapi:', err);
    process.exitCode = 1;
  });
}
