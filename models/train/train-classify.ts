/**
 * `osprey train classify`: a classifier from one folder of images per label, written as an
 * ordinary model package (manifest.json + ONE model.onnx = backbone + Gemm + Softmax) with
 * model-card.json beside it. Recipe (issue 15): the shared gray input and per-image
 * standardisation (features-graph.ts), SqueezeNet fire9 global-average-pooled (512 features),
 * softmax regression (softmax-regression.ts). Validation: a deterministic stratified split
 * (per label, sorted names, evenly spaced picks), accuracy and confusion matrix in the card.
 *
 * Defect labels: every label is a defect type (NEU-style data: the classes are kinds of
 * defect) unless `goodLabel` names the label of good parts, which is then left out.
 */
import { readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { keepGoldenSet, spreadPick, type GoldenCandidate } from './golden-set.js';
import { OspreyError } from '../../protocol/errors.js';
import { sha256Hex } from '../package-reader.js';
import { writeModelPackage } from '../package-writer.js';
import { Extractor, inputSpec, listImages, readAll, readBackbone } from './extract.js';
import { buildGraph, CLASSIFY_RECIPE, cutFor, featureCount, inputNormCard, prepareBackbone, type BackboneChoice, type FeatureSpec } from './features-graph.js';
import { imageSetHash, MODEL_CARD_FILE, writeModelCard } from './model-card.js';
import {
  classifySpace, describeClassifyChoice, searchClassify, selectColumns, stratifiedHoldOut, subsetColumns, unionTaps,
  type ClassifyChoice, type ClassifySpace, type SearchMode, type SearchReport,
} from './search.js';
import { fitSoftmax, softmaxHead, softmaxProbabilities } from './softmax-regression.js';

export interface TrainClassifyOptions {
  /** One sub-folder per label. */
  data: string;
  out: string;
  backbone: string;
  /** Share of each label held out for validation (default 0.2; 0 = none). */
  valFraction?: number;
  /** The label of good parts (not a defect); default: every label is a defect type. */
  goodLabel?: string;
  /** Feature recipe (default: derived from the backbone's shapes, features-graph.ts). */
  features?: FeatureSpec;
  /** Taps and input normalisation (--taps, --input-norm; default: found in the backbone). */
  backboneChoice?: BackboneChoice;
  /** The search over features and L2 on a split of the training part (default quick); `off`: the fixed recipe. */
  search?: SearchMode;
  searchSpace?: ClassifySpace;
  epochs?: number;
  l2?: number;
  /** Golden-set images kept in the package, spread over the labels (default 24; 0: none). */
  goldenImages?: number;
  /** Who asked for the model (the card's createdBy). */
  createdBy?: string;
  name?: string;
  version?: string;
  toolVersion?: string;
  log?: (line: string) => void;
}

export { stratifiedHoldOut };

/** Share of each label's TRAINING images the search holds out (the reported hold-out is never seen). */
export const CLASSIFY_SEARCH_HOLD_OUT = 0.2;

export async function trainClassify(opts: TrainClassifyOptions) {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  const fraction = opts.valFraction ?? 0.2;
  if (!(fraction >= 0 && fraction < 1)) throw new OspreyError('OSP_ERR_USAGE', `--val-fraction must be in [0, 1), got ${fraction}`);
  let entries;
  try {
    entries = await readdir(opts.data, { withFileTypes: true });
  } catch (err) {
    throw new OspreyError('OSP_ERR_USAGE', `--data ${opts.data}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const labels = entries.filter((e) => e.isDirectory() || e.isSymbolicLink()).map((e) => e.name).sort();
  if (labels.length < 2) throw new OspreyError('OSP_ERR_USAGE', `--data ${opts.data}: needs one sub-folder per label (at least 2), found ${labels.length}`);
  if (opts.goodLabel !== undefined && !labels.includes(opts.goodLabel)) throw new OspreyError('OSP_ERR_USAGE', `--good-label ${opts.goodLabel} is not one of the labels (${labels.join(', ')})`);
  const train: { file: string; label: number }[] = [];
  const val: { file: string; label: number }[] = [];
  for (const [li, label] of labels.entries()) {
    const files = await listImages(join(opts.data, label));
    const held = stratifiedHoldOut(files.length, fraction);
    if (files.length - held.size < 1) throw new OspreyError('OSP_ERR_USAGE', `--data ${join(opts.data, label)}: needs at least one training image, found ${files.length - held.size}`);
    files.forEach((file, i) => (held.has(i) ? val : train).push({ file, label: li }));
  }

  const mode = opts.search ?? 'quick';
  const epochs = opts.epochs ?? 200;
  const backboneBytes = await readBackbone(opts.backbone);
  const { spec: base, candidates } = await prepareBackbone(backboneBytes, opts.backbone, CLASSIFY_RECIPE, { ...opts.backboneChoice, features: opts.features });
  let space: ClassifySpace = mode === 'off' ? { features: [{ taps: base.taps, pooling: base.pooling ?? 'avg+max' }], l2: [opts.l2 ?? 1e-3] } : (opts.searchSpace ?? classifySpace(mode, base, candidates));
  // Taps given by name (--taps) pin the layers; the search still tries the pooling and L2.
  if (opts.backboneChoice?.taps && mode !== 'off') space = { ...space, features: space.features.filter((f) => f.taps.length === base.taps.length && f.taps.every((t, i) => t.name === base.taps[i]!.name)) };
  const union = unionTaps(space.features.map((f) => f.taps));
  // One pass over the training images for the union of taps, average ‖ max: every candidate's features are columns of it.
  const unionSpec: FeatureSpec = { ...base, taps: union, pooling: 'avg+max' };
  const trainBytes = await readAll(train.map((s) => s.file));
  const extractor = await Extractor.create(buildGraph(cutFor(backboneBytes, opts.backbone, unionSpec), unionSpec), 'features', inputSpec(unionSpec));
  let unionRows: Float32Array[];
  try {
    unionRows = await extractor.runAll(train.map((s) => s.file), trainBytes, log);
  } finally {
    await extractor.close();
  }
  const extractMs = performance.now() - started;

  let search: SearchReport<ClassifyChoice> | undefined;
  let choice: ClassifyChoice = { layers: space.features[0].taps.map((t) => t.name), pooling: space.features[0].pooling, l2: space.l2[0] };
  if (space.features.length * space.l2.length > 1) {
    // The inner split: per label, every 5th of its training images (name order); the reported hold-out stays unseen.
    const inner = new Set<number>();
    for (const li of labels.keys()) {
      const idx = train.flatMap((s, i) => (s.label === li ? [i] : []));
      for (const k of stratifiedHoldOut(idx.length, CLASSIFY_SEARCH_HOLD_OUT)) inner.add(idx[k]);
    }
    if (inner.size > 0) {
      const part = (keep: boolean) => ({ rows: unionRows.filter((_, i) => inner.has(i) === keep), labels: train.filter((_, i) => inner.has(i) === keep).map((s) => s.label) });
      const protocol = `fit on ${train.length - inner.size} training images, judged by accuracy (then log-loss) on ${inner.size} other training images (every ${Math.round(1 / CLASSIFY_SEARCH_HOLD_OUT)}th per label); the validation hold-out is not used`;
      search = searchClassify(space, union, part(false), part(true), labels.length, protocol, { epochs, log });
      choice = search.chosen;
      log(`search: chose ${describeClassifyChoice(choice)} (${search.trials.length} trials, ${search.seconds.toFixed(1)} s)`);
    } else log('search: off (too few training images for an inner split)');
  }
  const spec: FeatureSpec = { ...base, taps: choice.layers.map((n) => union.find((t) => t.name === n)!), pooling: choice.pooling };
  const features = selectColumns(unionRows, subsetColumns(union, spec.taps, choice.pooling));
  const backbone = cutFor(backboneBytes, opts.backbone, spec);
  const D = featureCount(spec);
  const l2 = choice.l2;
  const fit = fitSoftmax(features, train.map((s) => s.label), D, labels.length, { epochs, l2 });
  const trainMs = performance.now() - started;
  log(`features of ${train.length} images in ${(extractMs / 1000).toFixed(1)} s; softmax regression (${describeClassifyChoice(choice)}) in ${((trainMs - extractMs) / 1000).toFixed(1)} s (loss ${fit.loss.toFixed(4)})`);

  const modelBytes = buildGraph(backbone, spec, softmaxHead(fit), { 'osprey.trainer': 'classify-softmax-v1' }, 'osprey_trained_classifier', 'Osprey classifier: frozen backbone + softmax regression');
  const name = opts.name ?? 'osprey-trained-classifier';
  const defectLabels = labels.filter((l) => l !== opts.goodLabel);
  const manifest = await writeModelPackage(opts.out, {
    schemaVersion: 1,
    name,
    version: opts.version ?? '1.0.0',
    task: 'classification',
    description: `Classifier of ${labels.length} labels trained on ${train.length} images (frozen backbone + softmax regression)`,
    input: inputSpec(spec),
    outputs: { classification: { output: 'probabilities', activation: 'none', topK: Math.min(5, labels.length) } },
    labels,
    defectLabels,
    thresholds: { default: 0.5 },
    metadata: { generator: 'osprey train classify v1', trainImages: String(train.length), modelCard: MODEL_CARD_FILE },
  }, modelBytes);

  const scorer = await Extractor.create(modelBytes, 'probabilities', inputSpec(spec));
  try {
    let maxAbsDiff = 0;
    for (let i = 0; i < Math.min(3, train.length); i++) {
      const g = await scorer.run(trainBytes[i], train[i].file);
      const js = softmaxProbabilities(fit, features[i]);
      for (let k = 0; k < labels.length; k++) maxAbsDiff = Math.max(maxAbsDiff, Math.abs(g[k] - js[k]));
    }
    if (!(maxAbsDiff < 1e-4)) throw new OspreyError('OSP_ERR_INFERENCE', `the package graph's probabilities differ from the fit by ${maxAbsDiff.toExponential(2)}`);

    let validation: Record<string, unknown> | undefined;
    if (val.length > 0) {
      const confusion = labels.map(() => labels.map(() => 0));
      const valBytes = await readAll(val.map((s) => s.file));
      let correct = 0;
      for (const [i, s] of val.entries()) {
        const p = await scorer.run(valBytes[i], s.file);
        let best = 0;
        for (let k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
        confusion[s.label][best]++;
        if (best === s.label) correct++;
      }
      validation = {
        split: `stratified hold-out: ${fraction} of each label (sorted names, evenly spaced)`,
        images: val.length,
        accuracy: correct / val.length,
        confusion: { rows: 'true label', columns: 'predicted label', labels, matrix: confusion },
      };
      log(`validation: accuracy ${((correct / val.length) * 100).toFixed(1)} % on ${val.length} held-out images`);
    }
    // The golden set: training images of every label, spread in name order.
    const goldenCount = opts.goldenImages ?? 24;
    const perLabel = Math.max(1, Math.floor(goldenCount / labels.length));
    const candidates: GoldenCandidate[] = goldenCount === 0 ? [] : labels.flatMap((label, li) =>
      spreadPick(train.flatMap((s, i) => (s.label === li ? [i] : [])), perLabel).map((i) => ({ source: relative(opts.data, train[i].file), bytes: trainBytes[i], truth: { label } })),
    );
    const goldenSet = await keepGoldenSet(opts.out, candidates, log, { maxImages: goldenCount });

    const card = await writeModelCard(opts.out, {
      ...(opts.createdBy && { createdBy: opts.createdBy }),
      model: { name, version: manifest.version, sha256: manifest.model.sha256, size: manifest.model.size },
      data: {
        trainImages: train.length,
        perLabel: Object.fromEntries(labels.map((l, li) => [l, train.filter((s) => s.label === li).length])),
        trainSha256: imageSetHash(opts.data, train.map((s) => s.file), trainBytes),
      },
      backbone: { file: opts.backbone, sha256: sha256Hex(backboneBytes), taps: spec.taps.map((t) => t.name), input: inputNormCard(spec) },
      method: {
        name: 'softmax-regression-image-features',
        hyperParameters: { size: spec.size, input: spec.input?.kind ?? 'standardise', pooling: spec.pooling ?? 'avg+max', features: D, optimiser: 'adam', learningRate: 0.01, epochs, batch: 'full', l2 },
      },
      labels: { labels, defectLabels, goodLabel: opts.goodLabel ?? null },
      search: search ? { mode, protocol: search.protocol, trials: search.trials, chosen: search.chosen, seconds: search.seconds } : { mode: 'off', chosen: choice },
      ...(validation && { validation }),
      ...(goldenSet && { goldenSet }),
      check: { graphVsJsMaxAbsDiff: maxAbsDiff },
      timing: { trainSeconds: trainMs / 1000 },
      tool: { name: 'osprey', version: opts.toolVersion ?? 'unknown' },
    });
    return { manifest, card, ...(search && { search }) };
  } finally {
    await scorer.close();
  }
}
