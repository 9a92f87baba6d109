/**
 * Runs one benchmark module as a program (`node dist/bench/catch-up.js [--quick] [--out FILE]`)
 * and merges its sections into docs/BENCHMARKS.md exactly as `npm run bench -- --only ID` would,
 * for benchmarks the runner does not list yet.
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
import type { BenchRun } from './types.js';

/** True when `moduleUrl` (import.meta.url) is the program node was started with. */
export function isMain(moduleUrl: string): boolean {
  return process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(moduleUrl);
}

/** Runs `run` with the runner's options and writes (or prints, with --quick) the report. */
export async function runStandalone(run: BenchRun): Promise<void> {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false }, out: { type: 'string' } } });
  const quick = values.quick || process.env.OSPREY_BENCH_QUICK === '1';
  const workDir = await mkdtemp(join(tmpdir(), 'osprey-bench-'));
  const t0 = performance.now();
  const date = new Date();
  const machine = machineInfo();
  try {
    const produced = await run({
      quick,
      log: (m) => process.stderr.write(`${m}\n`),
      workDir,
      modelCache: defaultModelCache(),
      previous: new Map(),
    });
    const sections = Array.isArray(produced) ? produced : [produced];
    const input = { machine, date, durationS: (performance.now() - t0) / 1000, quick, sections };
    const root = resolve(fileURLToPath(new URL('../..', import.meta.url)));
    const out = values.out ?? (quick ? undefined : join(root, 'docs', 'BENCHMARKS.md'));
    if (out) {
      await writeFile(out, mergeReport(await readFile(out, 'utf8').catch(() => ''), input));
      process.stderr.write(`report written to ${out}\n`);
    } else process.stdout.write(`${renderGenerated(input)}\n`);
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}
