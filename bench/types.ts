/**
 * The contract between the benchmark runner (bench/run.ts) and each benchmark. A benchmark is a
 * module exporting `run(opts)`; it measures its figures and its baselines in the same run and
 * returns one or more sections. The runner renders every section into docs/BENCHMARKS.md, so a
 * benchmark never writes the file itself.
 *
 * @example
 *   export const run: BenchRun = async ({ quick, log }) => {
 *     const base = await measureBaseline(quick ? 10 : 1000);
 *     const ours = await measureOsprey(quick ? 10 : 1000);
 *     return {
 *       id: 'my-bench', title: 'My benchmark',
 *       figures: [{ name: 'throughput', value: ours, unit: 'frames/s',
 *                   baseline: { name: 'bare loop', value: base },
 *                   goal: { ratio: '>=', target: 0.9 } }],
 *     };
 *   };
 */

export interface BenchOptions {
  /** Smoke mode: tiny sizes and short runs; figures are well-formed but not meaningful. */
  quick: boolean;
  /** Progress lines for the person watching (stderr); never part of the report. */
  log: (message: string) => void;
  /** A scratch directory for this benchmark, removed by the runner afterwards. */
  workDir: string;
  /** Where generated benchmark models are cached (shared between benchmarks and runs). */
  modelCache: string;
  /** Sections produced earlier in this run, by id (the capacity projection reads them). */
  previous: ReadonlyMap<string, BenchSection>;
}

/**
 * A goal a figure is judged against: on the value itself (`value`), on its ratio to the baseline
 * (`ratio`), or on its difference from the baseline (`delta`, value − baseline), e.g.
 * `{ ratio: '>=', target: 0.9 }`, `{ value: '<=', target: 200 }`, `{ delta: '<=', target: 2 }`.
 */
export type Goal =
  | { value: '>=' | '<='; target: number }
  | { ratio: '>=' | '<='; target: number }
  | { delta: '>=' | '<='; target: number };

export interface Figure {
  /** What was measured, e.g. `ResNet-18 @224, POST /inspect throughput`. */
  name: string;
  value: number;
  unit: string;
  /** The baseline measured in the same run; the report shows value / baseline. */
  baseline?: { name: string; value: number };
  goal?: Goal;
  /** One line of context (sample size, settings). */
  note?: string;
}

export interface Table {
  title: string;
  columns: string[];
  rows: (string | number)[][];
}

export interface BenchSection {
  /** Stable id (kebab-case); sections are ordered by the runner, keyed by id. */
  id: string;
  title: string;
  /** Markdown paragraph(s) under the title: what was measured and how. */
  summary?: string;
  figures: Figure[];
  /** Supporting tables (tuning sweeps, per-stage timings). */
  tables?: Table[];
  /** Markdown bullets after the figures: causes, fixes, limits. */
  notes?: string[];
  /** Raw numbers for later sections (not rendered), e.g. `{ resultsPerSecond: 123456 }`. */
  data?: Record<string, number>;
}

/** What every benchmark module exports as `run`. */
export type BenchRun = (opts: BenchOptions) => Promise<BenchSection | BenchSection[]>;

/** A figure's ratio to its baseline, when it has one. */
export function ratioOf(f: Figure): number | undefined {
  if (!f.baseline || f.baseline.value === 0) return undefined;
  return f.value / f.baseline.value;
}

/** value − baseline, when the figure has a baseline. */
export function deltaOf(f: Figure): number | undefined {
  return f.baseline ? f.value - f.baseline.value : undefined;
}

/** Whether the figure meets its goal; undefined when it has none (or no baseline for a ratio goal). */
export function goalMet(f: Figure): boolean | undefined {
  if (!f.goal) return undefined;
  const g = f.goal;
  const [op, actual] =
    'ratio' in g ? [g.ratio, ratioOf(f)] : 'delta' in g ? [g.delta, deltaOf(f)] : [g.value, f.value];
  if (actual === undefined || !Number.isFinite(actual)) return undefined;
  return op === '>=' ? actual >= f.goal.target : actual <= f.goal.target;
}
