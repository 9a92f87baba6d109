/**
 * `npm run openapi`: writes docs/openapi.json and docs/openapi-edge.json as the code generates
 * them, so an API change shows up in review (openapi.test.ts fails until they are rewritten).
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { EDGE_OPENAPI_FILE, FLEET_OPENAPI_FILE, documentText, edgeOpenApi, fleetOpenApi } from './openapi-documents.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
for (const [file, make] of [[FLEET_OPENAPI_FILE, fleetOpenApi], [EDGE_OPENAPI_FILE, edgeOpenApi]] as const) {
  const { doc } = await make();
  await writeFile(`${root}${file}`, documentText(doc));
  console.log(`wrote ${file} (${Object.keys(doc.paths).length} paths)`);
}
