/**
 * `osprey train anomaly`: a one-class model from images of good parts, written as an ordinary
 * model package (manifest.json + ONE model.onnx = backbone + Gaussian head) with model-card.json
 * beside it. The recipe (issue 15): grey → resize 224 → 3 channels, per-image standardisation,
 * SqueezeNet taps → features (features-graph.ts), Gaussian with a relative ridge (gaussian.ts),
 * threshold at a percentile of leave-one-out scores (calibration.ts).
 *
 * The score is the raw squared Mahalanobis distance; the manifest's `raw` normalisation
 * (min 0, max 2T, threshold T) puts the chosen threshold T at 0.5, the edge's usual scale.
 */
import { readFile } from 'node:fs/promises';
import { relative } from 'node:path';
import { OspreyError } from '../../protocol/errors.js';
import type { Manifest } from '../../protocol/manifest.js';
import { sha256Hex } from '../package-reader.js';
import { writeModelPackage } from '../package-writer.js';
import { Extractor, inputSpec, listImages, readAll, readBackbone } from './extract.js';
import { OPERATING_POINTS, percentile, scoreQuantiles, validationFigures } from './calibration.js';
import { ANOMALY_RECIPE, buildGraph, cutFor, featureCount, inputNormCard, prepareBackbone, type BackboneChoice, type FeatureSpec, type Head, type TapCandidates } from './features-graph.js';
import { fitGaussian, gaussianHead, gaussianScore } from './gaussian.js';
import { imageSetHash, MODEL_CARD_FILE, writeModelCard } from './model-card.js';
import { fitNearest, nearestHead, nearestScore } from './nearest-neighbour.js';
import {
  anomalySpace, describeAnomalyChoice, searchAnomaly, selectColumns, specAtSize, stratifiedHoldOut, subsetColumns, unionTaps,
  type AnomalyChoice, type AnomalyHead, type AnomalySpace, type ResolutionFeatures, type SearchMode, type SearchReport,
} from './search.js';
import { synthesiseAnomaly } from './synthetic-anomalies.js';
import { keepGoldenSet, spreadPick, type GoldenCandidate } from './golden-set.js';

export { MODEL_CARD_FILE, listImages };

/** Share of the good images the search holds out (every 5th name). */
export const SEARCH_HOLD_OUT = 0.2;
/** Fewer good images than this: no search, the fixed recipe. */
export const SEARCH_MIN_IMAGES = 10;

export interface TrainAnomalyOptions {
  good: string;
  /** Defect images (searched one folder deep) for validation figures (and the search's judge). */
  defects?: string;
  /** Held-out good images for validation; without it the good side is the leave-one-out scores. */
  validationGood?: string;
  out: string;
  /** Backbone ONNX file. */
  backbone: string;
  operatingPoint?: { name: string; percentile: number };
  /** The search over size, layers and head (default quick); `off` is the fixed recipe. */
  search?: SearchMode;
  /** The search space (default anomalySpace(mode) of the backbone); tests give a small one. */
  searchSpace?: AnomalySpace;
  /** Pins: with the search off they are the recipe, with it on they narrow the space. */
  head?: 'gaussian' | 'nearest';
  ridge?: number;
  size?: number;
  /** Feature recipe (default: derived from the backbone's shapes, features-graph.ts): the fixed recipe's taps and size. */
  features?: FeatureSpec;
  /** Taps and input normalisation (--taps, --input-norm; default: found in the backbone). Taps given pin the search's layers. */
  backboneChoice?: BackboneChoice;
  /** Golden-set images kept in the package (default 16 good + up to 8 defects; 0: none). */
  goldenImages?: number;
  /** Who asked for the model (the card's createdBy, e.g. user:alice or local:USER). */
  createdBy?: string;
  name?: string;
  version?: string;
  toolVersion?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface TrainAnomalyResult {
  manifest: Manifest;
  card: Record<string, unknown>;
  /** The search's report (absent with the search off). */
  search?: SearchReport<AnomalyChoice>;
}

/** The space actually searched: the mode's, narrowed by the pins. */
export function effectiveSpace(opts: Pick<TrainAnomalyOptions, 'searchSpace' | 'head' | 'ridge' | 'size'> & { pinTaps?: boolean }, base: FeatureSpec, mode: SearchMode, candidates?: TapCandidates): AnomalySpace {
  const ridge = opts.ridge ?? 0.01;
  const fixedHead: AnomalyHead = opts.head === 'nearest' ? { head: 'nearest' } : { head: 'gaussian', ridge };
  if (mode === 'off') return { sizes: [opts.size ?? base.size], layerSets: [base.taps], heads: [fixedHead] };
  const space = opts.searchSpace ?? anomalySpace(mode, base, candidates);
  let heads = space.heads;
  if (opts.head) heads = heads.filter((h) => h.head === opts.head);
  if (opts.ridge !== undefined) heads = [...heads.filter((h) => h.head !== 'gaussian'), ...(opts.head !== 'nearest' ? [fixedHead] : [])];
  if (heads.length === 0) heads = [fixedHead];
  return { sizes: opts.size ? [opts.size] : space.sizes, layerSets: opts.pinTaps ? [base.taps] : space.layerSets, heads };
}

function headFor(choice: AnomalyChoice, rows: Float32Array[], D: number): { head: Head; looScores: number[]; score: (x: Float32Array) => number; method: string; hyper: Record<string, unknown> } {
  if (choice.head === 'nearest') {
    const fit = fitNearest(rows, D);
    return { head: nearestHead(fit), looScores: fit.looScores, score: (x) => nearestScore(fit, x), method: 'nearest-neighbour-image-features', hyper: { head: '1-NN', distance: 'squared euclidean', bank: rows.length } };
  }
  const fit = fitGaussian(rows, D, choice.ridge ?? 0.01);
  return { head: gaussianHead(fit), looScores: fit.looScores, score: (x) => gaussianScore(fit, x), method: 'gaussian-image-features', hyper: { head: 'gaussian', ridge: fit.ridge } };
}

/** Trains, calibrates, validates and writes the package; returns the manifest and model card. */
export async function trainAnomaly(opts: TrainAnomalyOptions): Promise<TrainAnomalyResult> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  const op = opts.operatingPoint ?? { name: 'balanced', percentile: OPERATING_POINTS.balanced };

  const goodFiles = await listImages(opts.good);
  if (goodFiles.length < 3) throw new OspreyError('OSP_ERR_USAGE', `--good ${opts.good}: needs at least 3 images, found ${goodFiles.length}`);
  let mode = opts.search ?? 'quick';
  if (mode !== 'off' && goodFiles.length < SEARCH_MIN_IMAGES) {
    log(`search: off (${goodFiles.length} good images, needs ${SEARCH_MIN_IMAGES})`);
    mode = 'off';
  }
  const backboneBytes = await readBackbone(opts.backbone);
  const { spec: base, candidates } = await prepareBackbone(backboneBytes, opts.backbone, ANOMALY_RECIPE, { ...opts.backboneChoice, features: opts.features });
  const space = effectiveSpace({ ...opts, pinTaps: opts.backboneChoice?.taps !== undefined }, base, mode, candidates);
  const trialCount = space.sizes.length * space.layerSets.length * space.heads.length;
  const searching = trialCount > 1;
  const goodBytes = await readAll(goodFiles);
  const defectFiles = opts.defects ? await listImages(opts.defects, 1) : [];
  if (opts.defects && defectFiles.length === 0) throw new OspreyError('OSP_ERR_USAGE', `--defects ${opts.defects}: no images found`);
  const defectBytes = searching && defectFiles.length > 0 ? await readAll(defectFiles) : [];
  const held = searching ? stratifiedHoldOut(goodFiles.length, SEARCH_HOLD_OUT) : new Set<number>();
  const union = unionTaps(space.layerSets);

  // Features of every good image (and the search's anomalies) at each size, for the union of taps: one pass per size.
  const bySize: (ResolutionFeatures & { all: Float32Array[] })[] = [];
  for (const size of space.sizes) {
    const spec: FeatureSpec = { ...specAtSize(base, size), taps: union };
    const extractor = await Extractor.create(buildGraph(cutFor(backboneBytes, opts.backbone, spec), spec), 'features', inputSpec(spec));
    const res: ResolutionFeatures & { all: Float32Array[] } = { size, union, fit: [], good: [], anomalies: [], all: [] };
    try {
      for (const [i, f] of goodFiles.entries()) {
        const t = await extractor.preprocess(goodBytes[i], f);
        const row = await extractor.runTensor(t);
        res.all.push(row);
        if (!held.has(i)) res.fit.push(row);
        else {
          res.good.push(row);
          if (defectBytes.length === 0) res.anomalies.push(await extractor.runTensor(synthesiseAnomaly(t, i)));
        }
        if ((i + 1) % 100 === 0) log(`features ${size}px: ${i + 1}/${goodFiles.length}`);
      }
      if (searching) for (const [i, f] of defectFiles.entries()) res.anomalies.push(await extractor.run(defectBytes[i], f));
    } finally {
      await extractor.close();
    }
    bySize.push(res);
  }
  const extractMs = performance.now() - started;
  log(`features of ${goodFiles.length} images${searching ? ` (+ ${bySize[0].anomalies.length} ${defectBytes.length > 0 ? 'defect' : 'synthetic anomaly'} images) at ${space.sizes.join(', ')} px` : ''} in ${(extractMs / 1000).toFixed(1)} s`);

  let search: SearchReport<AnomalyChoice> | undefined;
  let choice: AnomalyChoice;
  if (searching) {
    const protocol = `fit on ${goodFiles.length - held.size} good images, judged by AUROC of ${held.size} held-out good images (every ${Math.round(1 / SEARCH_HOLD_OUT)}th name) against ${defectBytes.length > 0 ? `${defectBytes.length} --defects images` : `${held.size} synthetic anomalies made from them (patch, scar, blotch, shading; seeded)`}`;
    search = searchAnomaly(space, bySize, protocol, log);
    choice = search.chosen;
    log(`search: chose ${describeAnomalyChoice(choice)} (${search.trials.length} trials, ${search.seconds.toFixed(1)} s)`);
  } else {
    const h = space.heads[0];
    choice = { size: space.sizes[0], layers: space.layerSets[0].map((t) => t.name), head: h.head, ...(h.head === 'gaussian' && { ridge: h.ridge }) };
  }
  const taps = choice.layers.map((n) => union.find((t) => t.name === n)!);
  const spec: FeatureSpec = { ...specAtSize(base, choice.size), taps };
  const cols = subsetColumns(union, taps, spec.pooling === 'avg' ? 'avg' : 'avg+max');
  const features = selectColumns(bySize.find((r) => r.size === choice.size)!.all, cols);
  const D = featureCount(spec);
  const fitStarted = performance.now();
  const fit = headFor(choice, features, D);
  const threshold = percentile(fit.looScores, op.percentile);
  const trainMs = performance.now() - started;
  log(`fitted ${describeAnomalyChoice(choice)} on all ${goodFiles.length} images in ${((performance.now() - fitStarted) / 1000).toFixed(1)} s; threshold ${threshold.toPrecision(6)} (p${op.percentile} of leave-one-out scores)`);
  const backbone = cutFor(backboneBytes, opts.backbone, spec);
  // The edge's score-drift reference (edge-agent/monitor.ts): the leave-one-out scores as the runtime normalises them.
  const calibrationQuantiles = scoreQuantiles(fit.looScores, { min: 0, max: 2 * threshold, threshold });

  const modelBytes = buildGraph(backbone, spec, fit.head, { 'osprey.trainer': choice.head === 'nearest' ? 'anomaly-nearest-v1' : 'anomaly-gaussian-v1' }, 'osprey_trained_anomaly', `Osprey one-class model: frozen backbone + ${choice.head === 'nearest' ? '1-NN' : 'Gaussian'} head`);
  const name = opts.name ?? 'osprey-trained-anomaly';
  const manifest = await writeModelPackage(opts.out, {
    schemaVersion: 1,
    name,
    version: opts.version ?? '1.0.0',
    task: 'anomaly',
    description: `One-class model trained on ${goodFiles.length} good images (frozen backbone + ${choice.head === 'nearest' ? '1-NN' : 'Gaussian'} head)`,
    input: inputSpec(spec),
    outputs: { anomaly: { format: 'raw', score: 'score', normalization: { min: 0, max: 2 * threshold, threshold } } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
    metadata: {
      generator: 'osprey train anomaly v1',
      trainImages: String(goodFiles.length),
      operatingPoint: op.name,
      modelCard: MODEL_CARD_FILE,
      scoreQuantiles: calibrationQuantiles.join(','),
    },
  }, modelBytes);

  // The package graph must give what the JavaScript computation gives.
  const scorer = await Extractor.create(modelBytes, 'score', inputSpec(spec));
  let maxRelDiff = 0;
  try {
    // Training images, and synthetic anomalies of them (a 1-NN head scores its own bank 0: those check nothing).
    const featureGraph = await Extractor.create(buildGraph(backbone, spec), 'features', inputSpec(spec));
    try {
      for (let i = 0; i < Math.min(3, goodFiles.length); i++) {
        const t = await scorer.preprocess(goodBytes[i], goodFiles[i]);
        const altered = synthesiseAnomaly(t, i);
        for (const [g, js] of [
          [(await scorer.runTensor(t))[0], fit.score(features[i])],
          [(await scorer.runTensor(altered))[0], fit.score(await featureGraph.runTensor(altered))],
        ]) maxRelDiff = Math.max(maxRelDiff, Math.abs(g - js) / Math.max(Math.abs(js), 1e-9));
      }
    } finally {
      await featureGraph.close();
    }
    if (!(maxRelDiff < 1e-4)) throw new OspreyError('OSP_ERR_INFERENCE', `the package graph's scores differ from the fit by ${maxRelDiff.toExponential(2)} (relative)`);

    let validation: Record<string, unknown> | undefined;
    if (opts.defects) {
      const score = async (files: string[]) => {
        const out: number[] = [];
        for (const f of files) out.push((await scorer.run(await readFile(f), f))[0]);
        return out;
      };
      const defectScores = await score(defectFiles);
      const valGoodFiles = opts.validationGood ? await listImages(opts.validationGood) : [];
      const goodScores = opts.validationGood ? await score(valGoodFiles) : fit.looScores;
      const figures = validationFigures(fit.looScores, goodScores, defectScores, threshold);
      validation = {
        ...(search && defectBytes.length > 0 && { note: 'the search was judged on these defect images too: the figures are optimistic' }),
        goodSource: opts.validationGood ? 'held-out good images' : 'leave-one-out scores of the training images',
        goodImages: goodScores.length,
        defectImages: defectScores.length,
        ...figures,
      };
      const at = figures.atOperatingPoint;
      log(`validation: AUROC ${(figures.auroc * 100).toFixed(1)} %, false rejects ${(at.falseRejectRate * 100).toFixed(1)} %, caught ${(at.catchRate * 100).toFixed(1)} %`);
    }

    // The golden set: good training images spread over the leave-one-out order below the threshold (typical to borderline), and some of the defects given.
    const goldenCount = opts.goldenImages ?? 24;
    let goldenSet: Record<string, unknown> | undefined;
    if (goldenCount > 0) {
      const below = fit.looScores.map((v, i) => ({ v, i })).filter((x) => x.v < threshold).sort((a, b) => a.v - b.v);
      const goodPicks = spreadPick(below, Math.ceil((goldenCount * 2) / 3));
      const defectPicks = spreadPick(defectFiles, goldenCount - goodPicks.length);
      const candidates: GoldenCandidate[] = [
        ...goodPicks.map(({ i }) => ({ source: `good/${relative(opts.good, goodFiles[i])}`, bytes: goodBytes[i], truth: { verdict: 'ok' as const } })),
        ...(await Promise.all(defectPicks.map(async (f) => ({ source: `defects/${relative(opts.defects!, f)}`, bytes: await readFile(f), truth: { verdict: 'defect' as const } })))),
      ];
      goldenSet = await keepGoldenSet(opts.out, candidates, log, { maxImages: goldenCount });
    }

    const card = await writeModelCard(opts.out, {
      model: { name, version: manifest.version, sha256: manifest.model.sha256, size: manifest.model.size },
      ...(opts.createdBy && { createdBy: opts.createdBy }),
      data: { goodImages: goodFiles.length, goodSha256: imageSetHash(opts.good, goodFiles, goodBytes) },
      backbone: { file: opts.backbone, sha256: sha256Hex(backboneBytes), taps: spec.taps.map((t) => t.name), input: inputNormCard(spec) },
      method: {
        name: fit.method,
        hyperParameters: { size: spec.size, input: spec.input?.kind ?? 'standardise', grid: spec.grid, border: spec.border, interpolation: spec.interpolation, resize: spec.resize, inputScale: spec.inputScale, transform: 'relu+sqrt', pooling: 'avg+max', features: D, ...fit.hyper },
      },
      search: search ? { mode, protocol: search.protocol, trials: search.trials, chosen: search.chosen, seconds: search.seconds } : { mode, chosen: choice },
      calibration: {
        source: 'closed-form leave-one-out scores of the good images',
        looScores: { min: Math.min(...fit.looScores), median: percentile(fit.looScores, 50), max: Math.max(...fit.looScores) },
        scoreQuantiles: calibrationQuantiles,
      },
      operatingPoint: { name: op.name, percentile: op.percentile, rawThreshold: threshold, normalisedThreshold: 0.5 },
      ...(validation && { validation }),
      ...(goldenSet && { goldenSet }),
      check: { graphVsJsMaxRelDiff: maxRelDiff },
      timing: { trainSeconds: trainMs / 1000 },
      tool: { name: 'osprey', version: opts.toolVersion ?? 'unknown' },
    });
    return { manifest, card, ...(search && { search }) };
  } finally {
    await scorer.close();
  }
}
