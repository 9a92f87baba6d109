/**
 * The trainers' small automatic search over their few choices (issue 15), judged by a validation
 * protocol that never looks at test data, every trial reported.
 *
 * Features are extracted ONCE per input resolution for the union of the candidate taps (one graph,
 * features = global average ‖ global max of every tap, features-graph.ts); a tap subset's features
 * are columns of the union's (pooling is per channel), so every (layers, head) pair is evaluated on
 * cached features without running the backbone again.
 *
 * Anomaly protocol (searchAnomaly): the good images are split (every 5th name held out,
 * stratifiedHoldOut); each candidate is fitted on the rest and judged by the AUROC of the held-out
 * good images against anomalies — the user's `--defects` images when given (they are validation
 * data), else synthetic defects made from the held-out good images (synthetic-anomalies.ts).
 * Classifier protocol (searchClassify): a stratified split of the TRAINING part only; the reported
 * hold-out is never seen. The best score wins; ties go to the earlier trial (the fixed recipe is first).
 */
import { OspreyError } from '../../protocol/errors.js';
import { auroc } from './calibration.js';
import type { FeatureSpec, TapCandidates } from './features-graph.js';
import { gaussianScorers } from './gaussian.js';
import { fitNearest, nearestScore } from './nearest-neighbour.js';
import { fitSoftmax, softmaxProbabilities } from './softmax-regression.js';

export type SearchMode = 'off' | 'quick' | 'full';

export function parseSearchMode(text: string): SearchMode {
  if (text === 'off' || text === 'quick' || text === 'full') return text;
  throw new OspreyError('OSP_ERR_USAGE', `--search must be quick, full or off, got "${text}"`);
}

export type Tap = FeatureSpec['taps'][number];

/** Indices of the `n` sorted items held out for validation: round(n·f) of them, evenly spaced. */
export function stratifiedHoldOut(n: number, fraction: number): Set<number> {
  const k = Math.round(n * fraction);
  const out = new Set<number>();
  for (let i = 0; i < n; i++) if (Math.floor(((i + 1) * k) / n) > Math.floor((i * k) / n)) out.add(i);
  return out;
}

/** The union of tap lists, in first-seen order (no duplicates by name). */
export function unionTaps(lists: readonly (readonly Tap[])[]): Tap[] {
  const out: Tap[] = [];
  for (const list of lists) for (const t of list) if (!out.some((u) => u.name === t.name)) out.push(t);
  return out;
}

/**
 * Columns of a union feature row (average of every union tap, then maximum of every union tap)
 * that make the features of `subset` with `pooling`: what a graph tapping only `subset` computes.
 */
export function subsetColumns(union: readonly Tap[], subset: readonly Tap[], pooling: 'avg+max' | 'avg'): Int32Array {
  const total = union.reduce((a, t) => a + t.channels, 0);
  const cols: number[] = [];
  for (const base of pooling === 'avg' ? [0] : [0, total]) {
    for (const t of subset) {
      const i = union.findIndex((u) => u.name === t.name);
      if (i < 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', `tap ${t.name} is not in the extracted union`);
      const start = union.slice(0, i).reduce((a, u) => a + u.channels, 0);
      for (let c = 0; c < t.channels; c++) cols.push(base + start + c);
    }
  }
  return Int32Array.from(cols);
}

export function selectColumns(rows: readonly Float32Array[], cols: Int32Array): Float32Array[] {
  return rows.map((r) => Float32Array.from(cols, (c) => r[c]));
}

/** The spec at another input size: the tap grid scales with it (27 at 224 → 31 at 256). */
export function specAtSize(base: FeatureSpec, size: number): FeatureSpec {
  return { ...base, size, grid: Math.round((base.grid * size) / base.size) };
}

export interface Trial<C> {
  choice: C;
  /** The protocol's score (AUROC or accuracy), higher is better. */
  score: number;
  seconds: number;
  /** Secondary figures (e.g. the classifier's log-loss, the tie-break). */
  detail?: Record<string, number>;
}

export interface SearchReport<C> {
  protocol: string;
  trials: Trial<C>[];
  chosen: C;
  seconds: number;
}

// ---------------------------------------------------------------- one-class

export type AnomalyHead = { head: 'gaussian'; ridge: number } | { head: 'nearest' };

export interface AnomalyChoice {
  size: number;
  /** Tap names, e.g. fire3/concat_1 … */
  layers: string[];
  head: 'gaussian' | 'nearest';
  ridge?: number;
}

export interface AnomalySpace {
  sizes: number[];
  /** Candidate tap lists (the first is the fixed recipe's). */
  layerSets: Tap[][];
  heads: AnomalyHead[];
}

/**
 * The one-class search space for any backbone (quick: 224, 160, 128 px at a 224 backbone × {the
 * recipe's taps, the same without the shallowest} × {Gaussian ridge 0.01, 0.03, 1-NN} = 18 trials;
 * full: five sizes × up to 3 tap sets (+ the recipe's taps with the classifier-level tap: more
 * features, a slower final fit) × 4 heads (+ ridge 0.1)). The first choice of each list is the
 * fixed recipe. SqueezeNet 1.1: fire3+5+7, fire5+7 (+ fire3+5+7+9). Smaller inputs cost less: a
 * 128 px pass is about a third of a 224 px one.
 */
export function anomalySpace(mode: 'quick' | 'full', base: FeatureSpec, candidates?: TapCandidates): AnomalySpace {
  const layerSets: Tap[][] = [base.taps];
  if (base.taps.length >= 2) layerSets.push(base.taps.slice(1));
  const heads: AnomalyHead[] = [{ head: 'gaussian', ridge: 0.01 }, { head: 'gaussian', ridge: 0.03 }, { head: 'nearest' }];
  const scaled = (f: number) => Math.round((base.size * f) / 8) * 8;
  if (mode === 'quick') return { sizes: [base.size, scaled(5 / 7), scaled(4 / 7)], layerSets, heads };
  const deeper = candidates?.classify;
  if (deeper && !base.taps.some((t) => t.name === deeper.name)) layerSets.push([...base.taps, deeper]);
  return { sizes: [base.size, scaled(6 / 7), scaled(5 / 7), scaled(4 / 7), scaled(3 / 7)], layerSets, heads: [...heads, { head: 'gaussian', ridge: 0.1 }] };
}

/** Cached features of one resolution: union rows for the fit part, the held-out good images and the anomalies. */
export interface ResolutionFeatures {
  size: number;
  union: Tap[];
  fit: Float32Array[];
  good: Float32Array[];
  anomalies: Float32Array[];
}

/** Runs every (size, layers, head) trial on cached features; the best AUROC wins (ties: the earlier trial). */
export function searchAnomaly(space: AnomalySpace, data: readonly ResolutionFeatures[], protocol: string, log: (line: string) => void = () => {}): SearchReport<AnomalyChoice> {
  const started = performance.now();
  const trials: Trial<AnomalyChoice>[] = [];
  for (const size of space.sizes) {
    const res = data.find((d) => d.size === size);
    if (!res) throw new OspreyError('OSP_ERR_BAD_REQUEST', `no features extracted at ${size}`);
    for (const taps of space.layerSets) {
      let t0 = performance.now();
      const cols = subsetColumns(res.union, taps, 'avg+max');
      const fit = selectColumns(res.fit, cols);
      const good = selectColumns(res.good, cols);
      const bad = selectColumns(res.anomalies, cols);
      const D = cols.length;
      const gaussian = space.heads.some((h) => h.head === 'gaussian') ? gaussianScorers(fit, D) : undefined;
      let shared = (performance.now() - t0) / 1000;
      for (const h of space.heads) {
        t0 = performance.now();
        let score: (x: Float32Array) => number;
        if (h.head === 'gaussian') score = gaussian!(h.ridge);
        else {
          const nn = fitNearest(fit, D, false);
          score = (x) => nearestScore(nn, x);
        }
        const value = auroc(good.map(score), bad.map(score));
        const choice: AnomalyChoice = { size, layers: taps.map((t) => t.name), head: h.head, ...(h.head === 'gaussian' && { ridge: h.ridge }) };
        const seconds = (performance.now() - t0) / 1000 + shared;
        shared = 0;
        trials.push({ choice, score: value, seconds });
        log(`search: ${describeAnomalyChoice(choice)}  AUROC ${(value * 100).toFixed(2)} %  (${seconds.toFixed(1)} s)`);
      }
    }
  }
  return { protocol, trials, chosen: best(trials).choice, seconds: (performance.now() - started) / 1000 };
}

export function describeAnomalyChoice(c: AnomalyChoice): string {
  const layers = c.layers.map((l) => l.replace(/\/.*$/, '')).join('+');
  return `${c.size}px ${layers} ${c.head === 'gaussian' ? `gaussian ridge ${c.ridge}` : '1-NN'}`;
}

function best<C>(trials: readonly Trial<C>[], tieBreak?: (t: Trial<C>) => number): Trial<C> {
  if (trials.length === 0) throw new OspreyError('OSP_ERR_BAD_REQUEST', 'the search has no trials');
  let top = trials[0];
  for (const t of trials.slice(1)) {
    if (t.score > top.score + 1e-12 || (tieBreak && Math.abs(t.score - top.score) <= 1e-12 && tieBreak(t) < tieBreak(top))) top = t;
  }
  return top;
}

// ---------------------------------------------------------------- classifier

export interface ClassifyChoice {
  layers: string[];
  pooling: 'avg' | 'avg+max';
  l2: number;
}

export interface ClassifySpace {
  features: { taps: Tap[]; pooling: 'avg' | 'avg+max' }[];
  l2: number[];
}

/**
 * The classifier's search space for any backbone: the classifier-level tap averaged (the fixed
 * recipe) first, then with the deepest anomaly tap before it (SqueezeNet 1.1: fire9, then fire7 +
 * fire9 = 896 features); full adds the tap's average ‖ max and L2 1e-4. Quick: 2 × 2 = 4 trials,
 * full: 3 × 3 = 9.
 */
export function classifySpace(mode: 'quick' | 'full', base: FeatureSpec, candidates?: TapCandidates): ClassifySpace {
  const features: ClassifySpace['features'] = [{ taps: base.taps, pooling: 'avg' }];
  const before = candidates?.anomaly.at(-1);
  if (before && !base.taps.some((t) => t.name === before.name)) features.push({ taps: [before, ...base.taps], pooling: 'avg' });
  if (mode === 'full') features.push({ taps: base.taps, pooling: 'avg+max' });
  return { features, l2: mode === 'quick' ? [1e-3, 1e-2] : [1e-3, 1e-2, 1e-4] };
}

/**
 * Runs every (features, L2) trial: fitted on `fit`, judged on `check` (both from the training part);
 * accuracy first, then the lower log-loss, then the earlier trial.
 */
export function searchClassify(space: ClassifySpace, union: Tap[], fit: { rows: Float32Array[]; labels: number[] }, check: { rows: Float32Array[]; labels: number[] }, classes: number, protocol: string, opts: { epochs?: number; log?: (line: string) => void } = {}): SearchReport<ClassifyChoice> {
  const started = performance.now();
  const log = opts.log ?? (() => {});
  const trials: Trial<ClassifyChoice>[] = [];
  for (const f of space.features) {
    const cols = subsetColumns(union, f.taps, f.pooling);
    const x = selectColumns(fit.rows, cols);
    const v = selectColumns(check.rows, cols);
    for (const l2 of space.l2) {
      const t0 = performance.now();
      const model = fitSoftmax(x, fit.labels, cols.length, classes, { epochs: opts.epochs, l2 });
      let correct = 0;
      let logLoss = 0;
      for (const [i, row] of v.entries()) {
        const p = softmaxProbabilities(model, row);
        let top = 0;
        for (let k = 1; k < p.length; k++) if (p[k] > p[top]) top = k;
        if (top === check.labels[i]) correct++;
        logLoss -= Math.log(Math.max(p[check.labels[i]], 1e-12)) / v.length;
      }
      const choice: ClassifyChoice = { layers: f.taps.map((t) => t.name), pooling: f.pooling, l2 };
      const score = v.length > 0 ? correct / v.length : 0;
      const seconds = (performance.now() - t0) / 1000;
      trials.push({ choice, score, seconds, detail: { logLoss } });
      log(`search: ${describeClassifyChoice(choice)}  accuracy ${(score * 100).toFixed(1)} %, log-loss ${logLoss.toFixed(4)}  (${seconds.toFixed(1)} s)`);
    }
  }
  return { protocol, trials, chosen: best(trials, (t) => t.detail!.logLoss).choice, seconds: (performance.now() - started) / 1000 };
}

export function describeClassifyChoice(c: ClassifyChoice): string {
  return `${c.layers.map((l) => l.replace(/\/.*$/, '')).join('+')} ${c.pooling} L2 ${c.l2}`;
}

/** The CLI's table of a search: one line per trial, the chosen one marked. */
export function searchTable<C>(report: SearchReport<C>, describe: (c: C) => string, scoreName: string): string {
  const lines = [`search (${report.protocol}): ${report.trials.length} trials in ${report.seconds.toFixed(1)} s`];
  for (const t of report.trials) {
    const mark = JSON.stringify(t.choice) === JSON.stringify(report.chosen) ? '*' : ' ';
    lines.push(`${mark} ${describe(t.choice).padEnd(44)} ${scoreName} ${(t.score * 100).toFixed(2).padStart(6)} %  ${t.seconds.toFixed(1).padStart(5)} s`);
  }
  return lines.join('\n');
}
