/**
 * README "By hand: one fleet manager, one edge", run as written: the commands and the edge config
 * are read from README.md itself (so the test breaks when the README drifts), with the fixed ports
 * made free ones and ./by-hand moved to a temp dir. Real processes, real HTTP and MQTT. Then the
 * edge takes part in a rollout of a package signed with the README's publisher key, which the
 * fleet and the edge trust as that config says.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { packArchive } from '../../models/package-archive.js';
import { OSPREY_BIN, startOsprey } from '../helpers/osprey-process.js';
import { waitFor } from '../helpers/wait-for.js';

const exec = promisify(execFile);
const README = fileURLToPath(new URL('../../../README.md', import.meta.url));

/** The section's shell lines (comments dropped) and the edge config between <<'JSON' and JSON. */
async function readSection(): Promise<{ commands: string[][]; curls: string[]; edgeJson: string; edgeJsonPath: string }> {
  const text = await readFile(README, 'utf8');
  const start = text.indexOf('## By hand: one fleet manager, one edge');
  assert.ok(start >= 0, 'README has the by-hand section');
  const section = text.slice(start, text.indexOf('\n## ', start + 1));
  const lines = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n'));
  const heredoc = lines.findIndex((l) => l.includes("<<'JSON'"));
  const end = lines.indexOf('JSON', heredoc);
  assert.ok(heredoc >= 0 && end > heredoc, 'the edge config is a heredoc');
  const edgeJsonPath = /cat > (\S+) <<'JSON'/.exec(lines[heredoc]!)![1]!;
  const rest = [...lines.slice(0, heredoc), ...lines.slice(end + 1)].map((l) => l.replace(/\s+#.*$/, '').trim()).filter((l) => l && !l.startsWith('#'));
  return {
    commands: rest.filter((l) => l.startsWith('npx osprey ')).map((l) => l.split(/\s+/).slice(2)),
    curls: rest.filter((l) => l.startsWith('curl ')),
    edgeJson: lines.slice(heredoc + 1, end).join('\n'),
    edgeJsonPath,
  };
}

test("the README's by-hand fleet and edge work as written, and the edge takes a rollout", { timeout: 120_000 }, async (t) => {
  const section = await readSection();
  const dir = await mkdtemp(join(tmpdir(), 'osprey-by-hand-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const here = (s: string) => s.replaceAll('./by-hand', join(dir, 'by-hand'));
  const args = (verb: string) => {
    const found = section.commands.find((c) => c.join(' ').startsWith(verb));
    assert.ok(found, `README runs "osprey ${verb}"`);
    return found.map(here);
  };
  assert.deepEqual(section.commands.map((c) => c.slice(0, 2).join(' ')), ['model keygen', 'fleet start', 'sample model', 'sample image', 'edge start']);

  // The publisher key pair, made before the fleet that trusts it.
  await exec(process.execPath, [OSPREY_BIN, ...args('model keygen')]);

  // The fleet, on free ports instead of 8080 and 1883.
  const fleetArgs = args('fleet start').map((a) => (a === '8080' || a === '1883' ? '0' : a));
  const fleet = startOsprey(fleetArgs);
  t.after(() => fleet.stop());
  const started = await fleet.waitForLine((l) => l.msg === 'fleet manager started' && typeof l.httpUrl === 'string');
  const fleetUrl = started.httpUrl as string;
  const mqttUrl = started.mqttUrl as string;

  for (const verb of ['sample model', 'sample image']) {
    const { stdout } = await exec(process.execPath, [OSPREY_BIN, ...args(verb)]);
    assert.match(stdout, new RegExp(`^${join(dir, 'by-hand')}`), verb);
  }

  const edgeJson = here(section.edgeJson)
    .replace('mqtt://127.0.0.1:1883', mqttUrl)
    .replace('http://127.0.0.1:8080', fleetUrl)
    .replace('"port": 8480', '"port": 0');
  assert.notEqual(edgeJson, section.edgeJson);
  await writeFile(here(section.edgeJsonPath), edgeJson);
  const edge = startOsprey(args('edge start'));
  t.after(() => edge.stop());
  const edgeUp = await edge.waitForLine((l) => l.msg === 'edge agent started' && typeof l.httpUrl === 'string');
  await edge.waitForLine((l) => l.msg === 'fleet link up');

  // Shell 3: the same requests as the README's curl lines.
  assert.equal(section.curls.length, 3);
  assert.match(section.curls[0]!, /--data-binary @by-hand\/part\.jpg .*:8480\/inspect/);
  const inspected = await fetch(`${edgeUp.httpUrl as string}/inspect`, {
    method: 'POST',
    body: await readFile(join(dir, 'by-hand', 'part.jpg')),
    headers: { 'content-type': 'image/jpeg' },
  });
  assert.equal(inspected.status, 200);
  const verdict = (await inspected.json()) as { seq: number; verdict: string };
  assert.deepEqual([verdict.seq, verdict.verdict], [1, 'ok']);
  await waitFor(async () => {
    const edges = (await (await fetch(`${fleetUrl}/api/edges`)).json()) as { edges: { id: string; ackedSeq: number }[] };
    return edges.edges.find((e) => e.id === 'press-1' && e.ackedSeq >= 1);
  }, 'the result stored at the fleet');
  const statsPath = /'http:\/\/127\.0\.0\.1:8080(\/api\/lines\/line-A\/stats\?[^']+)'/.exec(section.curls[1]!)![1]!;
  const csv = await (await fetch(`${fleetUrl}${statsPath}`)).text();
  assert.match(csv, /^bucket_start,/);
  assert.match(csv, /,line-A,ok,good,1,1,0\.000000\r\n$/);

  // A rollout of the same package, signed as the README says with the publisher key: the fleet
  // accepts it, the edge verifies it with the key its config names, downloads it and activates it.
  const pkgDir = join(dir, 'by-hand', 'models', 'osprey-demo-anomaly');
  await exec(process.execPath, [OSPREY_BIN, 'model', 'sign', '--key', join(dir, 'by-hand', 'keys', 'release.key'), '--key-id', 'release', pkgDir]);
  const files = new Map<string, Uint8Array>();
  for (const name of await readdir(pkgDir)) files.set(name, await readFile(join(pkgDir, name)));
  const manifest = JSON.parse(Buffer.from(files.get('manifest.json')!).toString()) as { name: string; version: string };
  const up = await fetch(`${fleetUrl}/api/models/${manifest.name}/versions`, { method: 'POST', body: packArchive(files), headers: { 'content-type': 'application/x-tar' } });
  assert.equal(up.status, 201);
  const { sha256 } = (await up.json()) as { sha256: string };
  const rollout = await fetch(`${fleetUrl}/api/rollouts`, {
    method: 'POST',
    body: JSON.stringify({ model: manifest.name, version: manifest.version, target: { edges: ['press-1'] }, stages: [{ mode: 'live' }] }),
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(rollout.status, 201);
  const activated = await edge.waitForLine((l) => l.msg === 'model activated', 60_000);
  assert.equal(activated.model, `${manifest.name}@${manifest.version}`);
  const events = await waitFor(async () => {
    const res = (await (await fetch(`${fleetUrl}/api/edges/press-1/events`)).json()) as { events: { kind: string; data: { sha256?: string } | null }[] };
    return res.events.find((e) => e.kind === 'model-activated' && e.data?.sha256 === sha256);
  }, 'the fleet-signed version active at the edge');
  assert.ok(events);

  assert.equal(await edge.stop(), 0);
  assert.equal(await fleet.stop(), 0);
});
