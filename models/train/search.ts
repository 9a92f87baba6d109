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
import type { FeatureSpec } from './features-graph.js';
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

const SQUEEZENET_CHANNELS: Record<number, number> = { 2: 128, 3: 128, 4: 256, 5: 256, 6: 384, 7: 384, 8: 512, 9: 512 };

/**
 * A SqueezeNet 1.1 tap by short or full name (fire3 or fire3/concat_1): fire2 and fire3 (55×55 at
 * 224) average-pooled 3/2 as in SQUEEZENET_TAPS; a one-line error for anything else.
 */
export function squeezenetTap(name: string): Tap {
  const m = /^fire([2-9])(?:\/concat_1)?$/.exec(name.trim());
  if (!m) throw new OspreyError('OSP_ERR_USAGE', `--layers: unknown SqueezeNet 1.1 tap "${name}" (fire2 … fire9)`);
  const k = Number(m[1]);
  const tap: Tap = { name: `fire${k}/concat_1`, channels: SQUEEZENET_CHANNELS[k] };
  return k <= 3 ? { ...tap, avgPool: { kernel: 3, stride: 2 } } : tap;
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
 * The SqueezeNet 1.1 search spaces (quick: 224, 160, 128 px × {fire3+5+7, fire5+7} × {Gaussian
 * ridge 0.01, 0.03, 1-NN} = 18 trials; full: 224, 192, 160, 128, 96 px × 4 layer sets (+
 * fire3+5+7+9, fire2+3+5+7: up to 2560 features, a slower final fit) × 4 heads (+ ridge 0.1) = 80).
 * The first choice of each list is the fixed recipe. Smaller inputs cost less: a 128 px pass is
 * about a third of a 224 px one.
 */
export function squeezenetAnomalySpace(mode: 'quick' | 'full', base: FeatureSpec): AnomalySpace {
  const fire = (k: number): Tap => base.taps.find((t) => t.name === `fire${k}/concat_1`) ?? squeezenetTap(`fire${k}`);
  const layerSets = [base.taps, [fire(5), fire(7)]];
  const heads: AnomalyHead[] = [{ head: 'gaussian', ridge: 0.01 }, { head: 'gaussian', ridge: 0.03 }, { head: 'nearest' }];
  const scaled = (f: number) => Math.round((base.size * f) / 8) * 8;
  if (mode === 'quick') return { sizes: [base.size, scaled(5 / 7), scaled(4 / 7)], layerSets, heads };
  const more = [[fire(3), fire(5), fire(7), fire(9)], [fire(2), fire(3), fire(5), fire(7)]];
  return { sizes: [base.size, scaled(6 / 7), scaled(5 / 7), scaled(4 / 7), scaled(3 / 7)], layerSets: [...layerSets, ...more], heads: [...heads, { head: 'gaussian', ridge: 0.1 }] };
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
 * SqueezeNet 1.1: fire9 average (the fixed recipe) first, then fire7 + fire9 average (896); full
 * adds fire9 average ‖ max and L2 1e-4. Quick: 2 × 2 = 4 trials, full: 3 × 3 = 9.
 */
export function squeezenetClassifySpace(mode: 'quick' | 'full', base: FeatureSpec): ClassifySpace {
  const fire9 = base.taps;
  const fire7: Tap = { name: 'fire7/concat_1', channels: 384 };
  const features = [
    { taps: fire9, pooling: 'avg' as const },
    { taps: [fire7, ...fire9], pooling: 'avg' as const },
    ...(mode === 'full' ? [{ taps: fire9, pooling: 'avg+max' as const }] : []),
  ];
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
