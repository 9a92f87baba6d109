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
import { OspreyError } from '../../protocol/errors.js';
import type { Manifest } from '../../protocol/manifest.js';
import { sha256Hex } from '../package-reader.js';
import { writeModelPackage } from '../package-writer.js';
import { Extractor, inputSpec, listImages, readAll, readBackbone } from './extract.js';
import { percentile, validationFigures } from './calibration.js';
import { ANOMALY_RECIPE, buildGraph, featureCount, inputNormCard, prepareBackbone, type BackboneChoice, type FeatureSpec } from './features-graph.js';
import { fitGaussian, gaussianHead, gaussianScore } from './gaussian.js';
import { imageSetHash, MODEL_CARD_FILE, writeModelCard } from './model-card.js';

export { MODEL_CARD_FILE, listImages };

export interface TrainAnomalyOptions {
  good: string;
  /** Defect images (searched one folder deep) for validation figures. */
  defects?: string;
  /** Held-out good images for validation; without it the good side is the leave-one-out scores. */
  validationGood?: string;
  out: string;
  /** Backbone ONNX file. */
  backbone: string;
  operatingPoint?: { name: string; percentile: number };
  ridge?: number;
  /** Feature recipe (default: derived from the backbone's shapes, features-graph.ts). */
  features?: FeatureSpec;
  /** Taps and input normalisation (--taps, --input-norm; default: found in the backbone). */
  backboneChoice?: BackboneChoice;
  name?: string;
  version?: string;
  toolVersion?: string;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

export interface TrainAnomalyResult {
  manifest: Manifest;
  card: Record<string, unknown>;
}

/** Trains, calibrates, validates and writes the package; returns the manifest and model card. */
export async function trainAnomaly(opts: TrainAnomalyOptions): Promise<TrainAnomalyResult> {
  const log = opts.log ?? (() => {});
  const started = performance.now();
  const op = opts.operatingPoint ?? { name: 'balanced', percentile: 95 };
  const ridge = opts.ridge ?? 0.01;

  const goodFiles = await listImages(opts.good);
  if (goodFiles.length < 3) throw new OspreyError('OSP_ERR_USAGE', `--good ${opts.good}: needs at least 3 images, found ${goodFiles.length}`);
  const backboneBytes = await readBackbone(opts.backbone);
  const { backbone, spec } = await prepareBackbone(backboneBytes, opts.backbone, ANOMALY_RECIPE, { ...opts.backboneChoice, features: opts.features });
  const D = featureCount(spec);

  const extractor = await Extractor.create(buildGraph(backbone, spec), 'features', inputSpec(spec));
  const goodBytes = await readAll(goodFiles);
  let features: Float32Array[];
  try {
    features = await extractor.runAll(goodFiles, goodBytes, log);
  } finally {
    await extractor.close();
  }
  const extractMs = performance.now() - started;
  log(`features of ${goodFiles.length} images in ${(extractMs / 1000).toFixed(1)} s; fitting`);
  const fit = fitGaussian(features, D, ridge);
  const threshold = percentile(fit.looScores, op.percentile);
  const trainMs = performance.now() - started;
  log(`fitted in ${((trainMs - extractMs) / 1000).toFixed(1)} s; threshold ${threshold.toPrecision(6)} (p${op.percentile} of leave-one-out scores)`);

  const modelBytes = buildGraph(backbone, spec, gaussianHead(fit), { 'osprey.trainer': 'anomaly-gaussian-v1' });
  const name = opts.name ?? 'osprey-trained-anomaly';
  const manifest = await writeModelPackage(opts.out, {
    schemaVersion: 1,
    name,
    version: opts.version ?? '1.0.0',
    task: 'anomaly',
    description: `One-class model trained on ${goodFiles.length} good images (frozen backbone + Gaussian head)`,
    input: inputSpec(spec),
    outputs: { anomaly: { format: 'raw', score: 'score', normalization: { min: 0, max: 2 * threshold, threshold } } },
    labels: [],
    defectLabels: ['anomaly'],
    thresholds: { default: 0.5 },
    metadata: { generator: 'osprey train anomaly v1', trainImages: String(goodFiles.length), operatingPoint: op.name, modelCard: MODEL_CARD_FILE },
  }, modelBytes);

  // The package graph must give what the JavaScript computation gives.
  const scorer = await Extractor.create(modelBytes, 'score', inputSpec(spec));
  let maxRelDiff = 0;
  try {
    for (let i = 0; i < Math.min(3, goodFiles.length); i++) {
      const g = (await scorer.run(goodBytes[i], goodFiles[i]))[0];
      const js = gaussianScore(fit, features[i]);
      maxRelDiff = Math.max(maxRelDiff, Math.abs(g - js) / Math.max(Math.abs(js), 1e-9));
    }
    if (!(maxRelDiff < 1e-4)) throw new OspreyError('OSP_ERR_INFERENCE', `the package graph's scores differ from the fit by ${maxRelDiff.toExponential(2)} (relative)`);

    let validation: Record<string, unknown> | undefined;
    if (opts.defects) {
      const defectFiles = await listImages(opts.defects, 1);
      if (defectFiles.length === 0) throw new OspreyError('OSP_ERR_USAGE', `--defects ${opts.defects}: no images found`);
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
        goodSource: opts.validationGood ? 'held-out good images' : 'leave-one-out scores of the training images',
        goodImages: goodScores.length,
        defectImages: defectScores.length,
        ...figures,
      };
      const at = figures.atOperatingPoint;
      log(`validation: AUROC ${(figures.auroc * 100).toFixed(1)} %, false rejects ${(at.falseRejectRate * 100).toFixed(1)} %, caught ${(at.catchRate * 100).toFixed(1)} %`);
    }

    const card = await writeModelCard(opts.out, {
      model: { name, version: manifest.version, sha256: manifest.model.sha256, size: manifest.model.size },
      data: { goodImages: goodFiles.length, goodSha256: imageSetHash(opts.good, goodFiles, goodBytes) },
      backbone: { file: opts.backbone, sha256: sha256Hex(backboneBytes), taps: spec.taps.map((t) => t.name), input: inputNormCard(spec) },
      method: {
        name: 'gaussian-image-features',
        hyperParameters: { size: spec.size, input: spec.input?.kind ?? 'standardise', grid: spec.grid, border: spec.border, interpolation: spec.interpolation, resize: spec.resize, inputScale: spec.inputScale, transform: 'relu+sqrt', pooling: 'avg+max', features: D, ridge },
      },
      calibration: {
        source: 'closed-form leave-one-out scores of the good images',
        looScores: { min: Math.min(...fit.looScores), median: percentile(fit.looScores, 50), max: Math.max(...fit.looScores) },
      },
      operatingPoint: { name: op.name, percentile: op.percentile, rawThreshold: threshold, normalisedThreshold: 0.5 },
      ...(validation && { validation }),
      check: { graphVsJsMaxRelDiff: maxRelDiff },
      timing: { trainSeconds: trainMs / 1000 },
      tool: { name: 'osprey', version: opts.toolVersion ?? 'unknown' },
    });
    return { manifest, card };
  } finally {
    await scorer.close();
  }
}
