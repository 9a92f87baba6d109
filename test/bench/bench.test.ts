/**
 * Keeps the benchmark suite working: every benchmark's quick mode runs in process with tiny
 * sizes, and its output is well-formed. Never a timing assertion — the figures of a smoke run
 * mean nothing; `npm run bench` is where numbers come from.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCHMARKS, runBenchmarks } from '../../bench/run.js';
import { machineInfo } from '../../bench/machine.js';
import { mergeReport, renderGenerated } from '../../bench/report.js';
import { goalMet, ratioOf, type BenchSection } from '../../bench/types.js';

function checkSection(s: BenchSection): void {
  assert.match(s.id, /^[a-z0-9][a-z0-9.-]*$/, `section id ${s.id}`);
  assert.ok(s.title.length > 0, `${s.id}: title`);
  for (const f of s.figures) {
    const what = `${s.id}: ${f.name}`;
    assert.ok(f.name.length > 0 && f.unit.length > 0, `${what}: name and unit`);
    assert.ok(Number.isFinite(f.value) && f.value >= 0, `${what}: value ${f.value}`);
    if (f.baseline) {
      assert.ok(Number.isFinite(f.baseline.value) && f.baseline.value > 0, `${what}: baseline ${f.baseline.value}`);
      assert.ok(Number.isFinite(ratioOf(f)), `${what}: ratio`);
    }
    if (f.goal) assert.equal(typeof goalMet(f), 'boolean', `${what}: goal can be judged`);
  }
  for (const t of s.tables ?? []) {
    for (const row of t.rows) assert.equal(row.length, t.columns.length, `${s.id}: table ${t.title} row width`);
  }
  for (const [k, v] of Object.entries(s.data ?? {})) assert.ok(Number.isFinite(v), `${s.id}: data ${k} = ${v}`);
}

test('bench: every benchmark runs in quick mode and reports well-formed figures', { timeout: 300_000 }, async (t) => {
  const modelCache = await mkdtemp(join(tmpdir(), 'osprey-bench-test-'));
  t.after(() => rm(modelCache, { recursive: true, force: true }));
  const outcome = await runBenchmarks({ quick: true, modelCache, log: () => undefined });
  assert.deepEqual(
    outcome.failures.map((f) => `${f.id}: ${f.error.message}`),
    [],
  );
  const ids = outcome.sections.map((s) => s.id);
  for (const required of ['edge-pipeline', 'fleet-ingest', 'rollback', 'rollout-scale', 'catch-up', 'edge-write', 'security-cost', 'training', 'console', 'monitoring', 'capacity']) assert.ok(ids.includes(required), `section ${required} missing`);
  for (const s of outcome.sections) checkSection(s);
  const edge = outcome.sections.find((s) => s.id === 'edge-pipeline')!;
  // Each model is measured on both sides: throughput against the bare loop.
  assert.ok(edge.figures.filter((f) => f.name.endsWith('throughput') && f.baseline).length >= 6);

  const report = renderGenerated({ machine: machineInfo(), date: new Date(), durationS: outcome.durationS, quick: true, sections: outcome.sections });
  for (const s of outcome.sections) assert.ok(report.includes(`<!-- bench:section ${s.id} -->`), `report has ${s.id}`);
});

test('bench: regenerating the report replaces its sections and keeps everything else', () => {
  const machine = machineInfo();
  const section = (id: string, value: number): BenchSection => ({
    id,
    title: `Title ${id}`,
    figures: [{ name: 'rate', value, unit: 'x/s', baseline: { name: 'base', value: 10 }, goal: { ratio: '>=', target: 0.9 } }],
  });
  const first = mergeReport('', { machine, date: new Date(0), durationS: 1, quick: false, sections: [section('a', 9), section('b', 5)] });
  const handWritten = `${first}\n## Notes by hand\n\nKept across runs.\n`;
  const second = mergeReport(handWritten, { machine, date: new Date(1000), durationS: 1, quick: false, sections: [section('a', 11)] });
  assert.match(second, /\| rate \| 11 x\/s \|/);
  assert.doesNotMatch(second, /\| rate \| 9 x\/s \|/);
  // b was not rerun: kept, and marked as such, with its goal row in the Goals table.
  assert.match(second, /## Title b\n\n_Kept from an earlier run/);
  assert.match(second, /## Goals\n\n\| benchmark .*\n\|---.*\n\| Title a \| rate \| 11 x\/s \| 1\.10× \| ratio ≥ 0\.9 \| met \|\n\| Title b \(earlier run\) \| rate \| 5 x\/s \| 0\.50× \| ratio ≥ 0\.9 \| \*\*missed\*\* \|\n\n/);
  assert.ok(second.indexOf('<!-- bench:section a -->') < second.indexOf('<!-- bench:section b -->'), 'sections keep their order');
  // Rerunning a alone again keeps b's row once, marked once; rerunning b brings it back unmarked.
  const third = mergeReport(second, { machine, date: new Date(2000), durationS: 1, quick: false, sections: [section('a', 12)] });
  assert.equal(third.match(/\| Title b \(earlier run\) \| rate \| 5 x\/s/g)?.length, 1);
  const fourth = mergeReport(third, { machine, date: new Date(3000), durationS: 1, quick: false, sections: [section('b', 10)] });
  assert.match(fourth, /\n\| Title b \| rate \| 10 x\/s \|.*\n\| Title a \(earlier run\) \| rate \| 12 x\/s/);
  assert.doesNotMatch(fourth, /Title b \(earlier run\)/);
  assert.match(second, /## Notes by hand\n\nKept across runs\./);
  assert.equal(second.match(/<!-- bench:begin -->/g)?.length, 1);
  assert.ok(BENCHMARKS.some((b) => b.id === 'capacity'));
});
