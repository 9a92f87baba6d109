/**
 * `npm run bench`: runs every benchmark in order and writes docs/BENCHMARKS.md (machine, date,
 * each figure, its ratio to a baseline measured in the same run, goals met or missed).
 *
 *   node dist/bench/run.js [--quick] [--only ID[,ID...]] [--out FILE]
 *
 * `--quick` (or OSPREY_BENCH_QUICK=1) is the smoke version: tiny models and sizes, seconds not
 * minutes; it prints the report instead of writing docs/BENCHMARKS.md unless `--out` says where.
 * A benchmark is a module exporting `run` (bench/types.ts); add it to BENCHMARKS below. Optional
 * entries are skipped while their module does not exist yet.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { machineInfo } from './machine.js';
import { defaultModelCache } from './models/bench-models.js';
import { mergeReport, renderGenerated } from './report.js';
import type { BenchOptions, BenchRun, BenchSection } from './types.js';

export interface BenchEntry {
  id: string;
  /** Module path relative to this file (compiled: dist/bench/). */
  module: string;
  /** Skipped silently while the module does not exist (benchmarks other people are writing). */
  optional?: boolean;
}

/** Every benchmark, in run order; capacity comes last because it reads the others' figures. */
export const BENCHMARKS: readonly BenchEntry[] = [
  { id: 'edge-pipeline', module: './edge-pipeline.js' },
  { id: 'fleet-ingest', module: './fleet-ingest.js' },
  { id: 'rollback', module: './rollback.js' },
  { id: 'rollout-scale', module: './rollout-scale.js' },
  { id: 'catch-up', module: './catch-up.js' },
  { id: 'edge-write', module: './edge-write.js' },
  { id: 'security-cost', module: './security-cost.js' },
  { id: 'training', module: './training.js' },
  { id: 'console', module: './console.js' },
  { id: 'monitoring', module: './monitoring.js' },
  { id: 'pg-ingest', module: './pg-ingest.js' },
  { id: 'capacity', module: './capacity.js' },
];

export interface RunBenchmarksOptions {
  quick: boolean;
  /** Only these ids (default: all). */
  only?: readonly string[];
  log?: (message: string) => void;
  modelCache?: string;
}

export interface BenchOutcome {
  sections: BenchSection[];
  /** Benchmarks that threw: their error, also recorded as a section note. */
  failures: { id: string; error: Error }[];
  durationS: number;
}

async function loadRun(entry: BenchEntry): Promise<BenchRun | undefined> {
  try {
    const mod = (await import(entry.module)) as { run?: BenchRun };
    if (typeof mod.run !== 'function') throw new Error(`${entry.module} does not export run()`);
    return mod.run;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const missing = code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(entry.module.slice(2));
    if (entry.optional && missing) return undefined;
    throw err;
  }
}

/** Runs the benchmarks in process and returns their sections (nothing is written). */
export async function runBenchmarks(opts: RunBenchmarksOptions): Promise<BenchOutcome> {
  const log = opts.log ?? ((m: string) => process.stderr.write(`${m}\n`));
  const t0 = performance.now();
  const sections: BenchSection[] = [];
  const failures: BenchOutcome['failures'] = [];
  const previous = new Map<string, BenchSection>();
  for (const entry of BENCHMARKS) {
    if (opts.only && !opts.only.includes(entry.id)) continue;
    let runFn: BenchRun | undefined;
    try {
      runFn = await loadRun(entry);
    } catch (err) {
      failures.push({ id: entry.id, error: err as Error });
      sections.push({ id: entry.id, title: entry.id, figures: [], notes: [`failed to load: ${(err as Error).message}`] });
      continue;
    }
    if (!runFn) continue;
    const workDir = await mkdtemp(join(tmpdir(), `osprey-bench-${entry.id}-`));
    const benchOpts: BenchOptions = { quick: opts.quick, log, workDir, modelCache: opts.modelCache ?? defaultModelCache(), previous };
    const started = performance.now();
    log(`== ${entry.id}${opts.quick ? ' (quick)' : ''}`);
    try {
      const out = await runFn(benchOpts);
      for (const s of Array.isArray(out) ? out : [out]) {
        sections.push(s);
        previous.set(s.id, s);
      }
      log(`== ${entry.id} done in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    } catch (err) {
      log(`== ${entry.id} FAILED: ${(err as Error).stack ?? String(err)}`);
      failures.push({ id: entry.id, error: err as Error });
      sections.push({ id: entry.id, title: entry.id, figures: [], notes: [`failed: ${(err as Error).message.split('\n')[0]}`] });
    } finally {
      await rm(workDir, { recursive: true, force: true });
    }
  }
  return { sections, failures, durationS: (performance.now() - t0) / 1000 };
}

const USAGE = `usage: node dist/bench/run.js [--quick] [--only ID[,ID...]] [--out FILE]
  --quick   smoke run: tiny sizes, prints the report (also OSPREY_BENCH_QUICK=1)
  --only    run only these benchmarks: ${BENCHMARKS.map((b) => b.id).join(', ')}
  --out     write the report here (default docs/BENCHMARKS.md; with --quick: stdout)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const quick = values.quick || process.env.OSPREY_BENCH_QUICK === '1';
  const only = values.only?.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = only?.filter((id) => !BENCHMARKS.some((b) => b.id === id)) ?? [];
  if (unknown.length > 0) {
    process.stderr.write(`osprey bench: unknown benchmark ${unknown.join(', ')}\n${USAGE}\n`);
    return 2;
  }
  const date = new Date();
  const machine = machineInfo();
  const outcome = await runBenchmarks({ quick, ...(only ? { only } : {}) });
  const input = { machine, date, durationS: outcome.durationS, quick, sections: outcome.sections };
  // dist/bench/run.js → the project root.
  const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
  const out = values.out ?? (quick ? undefined : join(root, 'docs', 'BENCHMARKS.md'));
  if (out) {
    const existing = await readFile(out, 'utf8').catch(() => '');
    await writeFile(out, mergeReport(existing, input));
    process.stderr.write(`report written to ${out}\n`);
  } else {
    process.stdout.write(`${renderGenerated(input)}\n`);
  }
  for (const f of outcome.failures) process.stderr.write(`benchmark ${f.id} failed: ${f.error.message.split('\n')[0]}\n`);
  return outcome.failures.length > 0 ? 1 : 0;
}

// Only as a program: the smoke test imports runBenchmarks from this module.
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`osprey bench: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
