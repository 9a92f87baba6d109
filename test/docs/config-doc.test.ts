/** docs/CONFIG.md lists every field of both configuration files and of the pushed edge settings. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { EdgeConfigFileSchema } from '../../edge-agent/config.js';
import { FleetConfigSchema } from '../../fleet-manager/config.js';
import { EdgeSettingsSchema } from '../../protocol/messages.js';

const CONFIG_MD = fileURLToPath(new URL('../../../docs/CONFIG.md', import.meta.url));

interface SchemaNode {
  type?: string;
  properties?: Record<string, SchemaNode>;
}

/** Dotted paths of a schema's leaves (a record, like thresholds.perLabel, is a leaf). */
function fieldPaths(schema: SchemaNode, prefix = ''): string[] {
  if (schema.type !== 'object' || !schema.properties) return [prefix];
  return Object.entries(schema.properties).flatMap(([name, sub]) => fieldPaths(sub, prefix ? `${prefix}.${name}` : name));
}

test('docs/CONFIG.md has a row for every configuration field', async () => {
  const doc = await readFile(CONFIG_MD, 'utf8');
  const section = (title: string) => {
    const start = doc.indexOf(`## ${title}`);
    assert.ok(start >= 0, `CONFIG.md has "## ${title}"`);
    const end = doc.indexOf('\n## ', start + 1);
    return doc.slice(start, end < 0 ? undefined : end);
  };
  const cases: [string, SchemaNode][] = [
    ['Fleet manager', FleetConfigSchema as SchemaNode],
    ['Edge agent', EdgeConfigFileSchema as SchemaNode],
    ['Edge settings pushed by the fleet', EdgeSettingsSchema as SchemaNode],
  ];
  for (const [title, schema] of cases) {
    const text = section(title);
    const paths = fieldPaths(schema);
    assert.ok(paths.length >= 5, title);
    const missing = paths.filter((p) => !text.includes(`| \`${p}\` |`));
    assert.deepEqual(missing, [], `fields of "${title}" without a row in docs/CONFIG.md`);
  }
});

test('every help text that names docs/*.md names a file that exists', async () => {
  const { fleetHelp, edgeHelp } = await import('../../cli/daemons.js');
  const { demoHelp } = await import('../../cli/demo.js');
  const { inferHelp } = await import('../../cli/infer.js');
  const { sampleHelp } = await import('../../cli/sample.js');
  const { modelHelp } = await import('../../cli/model.js');
  const { simulateHelp } = await import('../../cli/simulate.js');
  const refs = [fleetHelp, edgeHelp, demoHelp, inferHelp, sampleHelp, modelHelp, simulateHelp].flatMap((h) => [...h.matchAll(/docs\/[A-Za-z0-9_-]+\.md/g)].map((m) => m[0]));
  assert.ok(refs.includes('docs/CONFIG.md'));
  for (const ref of refs) await readFile(fileURLToPath(new URL(`../../../${ref}`, import.meta.url)));
});
