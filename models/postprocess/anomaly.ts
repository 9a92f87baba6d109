/**
 * Anomaly models: an image score (and optionally a map) → 'anomaly'/'good'.
 *
 * Scores are compared on anomalib's normalised scale, where 0.5 is the threshold chosen at
 * export: Osprey's built-in model and anomalib v2 emit it directly; raw-score models are mapped
 * onto it with anomalib's min-max normalisation from the manifest.
 */
import { OspreyError } from '../../protocol/errors.js';
import type { Manifest } from '../../protocol/manifest.js';
import { pluginAnomaly, type Plugin } from '../plugin.js';
import type { Judgement, OutputReader, RawOutput, RawOutputs } from './output-reader.js';
import { resolveThreshold } from './thresholds.js';

export type AnomalyNormalization = NonNullable<NonNullable<Manifest['outputs']['anomaly']>['normalization']>;

/** anomalib's min-max normalisation: ((x − threshold) / (max − min)) + 0.5, clipped to [0, 1]. */
export function normalizeAnomalyScore(raw: number, n: { min: number; max: number; threshold: number }): number {
  const v = (raw - n.threshold) / (n.max - n.min) + 0.5;
  return Math.min(1, Math.max(0, v));
}

/**
 * A copy of a map on the normalised scale: the caller may keep it after the session's output
 * buffers are reused. Rendering it as a PNG is left to whoever keeps it (off the answer path).
 */
function normalizedMap(data: ArrayLike<number>, pixelNorm: { min: number; max: number; threshold: number } | undefined): Float32Array {
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = pixelNorm ? normalizeAnomalyScore(data[i]!, pixelNorm) : data[i]!;
  return out;
}

/** Height and width of an anomaly map: the last two dims of [1,1,H,W], [1,H,W] or [H,W]. */
export function mapSize(out: RawOutput): { width: number; height: number } {
  const dims = out.dims;
  if (dims.length < 2 || dims.slice(0, -2).some((d) => d !== 1)) {
    throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `anomaly map has shape [${dims.join(',')}], expected [1,1,H,W], [1,H,W] or [H,W]`);
  }
  return { height: dims[dims.length - 2], width: dims[dims.length - 1] };
}

/** What the anomaly reader needs besides the manifest (format plugin). */
export interface AnomalyReaderOptions {
  plugin?: Plugin;
  /** Every output of the session: a plug-in receives them all. */
  sessionOutputs?: readonly string[];
}

/** The anomaly reader for a validated manifest (task anomaly). */
export function createAnomalyReader(manifest: Manifest, opts: AnomalyReaderOptions = {}): OutputReader {
  const spec = manifest.outputs.anomaly!;
  if (spec.format === 'plugin') return createPluginAnomalyReader(manifest, opts);
  const names = [spec.score, spec.map].filter((n): n is string => Boolean(n));
  const norm = spec.format === 'raw' ? spec.normalization : undefined;
  const pixelNorm = norm ? { ...norm, threshold: norm.pixelThreshold ?? norm.threshold } : undefined;

  const get = (outputs: RawOutputs, name: string) => {
    const out = outputs[name];
    if (!out) throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `model produced no output ${name}`);
    return out;
  };

  return {
    outputNames: names,
    async read(outputs, options): Promise<Judgement> {
      const map = spec.map ? get(outputs, spec.map) : undefined;
      const size = map ? mapSize(map) : undefined;
      let raw: number;
      if (spec.score) {
        const s = get(outputs, spec.score);
        if (s.data.length !== 1) {
          throw new OspreyError('OSP_ERR_MODEL_OUTPUT', `score output ${spec.score} has ${s.data.length} values, expected 1`);
        }
        raw = s.data[0];
      } else {
        raw = -Infinity;
        for (const v of map!.data) raw = Math.max(raw, v);
      }
      if (Number.isNaN(raw)) throw new OspreyError('OSP_ERR_INFERENCE', 'anomaly score is NaN');
      const score = norm ? normalizeAnomalyScore(raw, norm) : raw;
      const threshold = resolveThreshold('anomaly', manifest.thresholds, options.thresholds);
      const defect = score >= threshold;
      const result: Judgement = { verdict: defect ? 'defect' : 'ok', label: defect ? 'anomaly' : 'good', score, threshold };
      if (defect && options.heatmap && map && size) {
        result.anomalyMap = { width: size.width, height: size.height, values: normalizedMap(map.data, pixelNorm) };
      }
      return result;
    },
  };
}

/** Format plugin: the module computes { score, map? }; `normalization`, when given, applies to both. */
function createPluginAnomalyReader(manifest: Manifest, opts: AnomalyReaderOptions): OutputReader {
  const spec = manifest.outputs.anomaly!;
  const plugin = opts.plugin;
  if (!plugin) throw new OspreyError('OSP_ERR_MODEL_PLUGIN', 'anomaly format plugin needs its plug-in module loaded');
  const norm = spec.normalization;
  const pixelNorm = norm ? { ...norm, threshold: norm.pixelThreshold ?? norm.threshold } : undefined;
  return {
    outputNames: [...(opts.sessionOutputs ?? [])],
    async read(outputs, options, pre): Promise<Judgement> {
      const result = await plugin.run(outputs, {
        task: 'anomaly',
        inputWidth: pre.plan.width,
        inputHeight: pre.plan.height,
        labels: manifest.labels,
        confidence: 0,
        iou: 0,
        options: manifest.postprocess?.options ?? {},
      });
      const { score: raw, map } = pluginAnomaly(result, plugin.name);
      const score = norm ? normalizeAnomalyScore(raw, norm) : raw;
      const threshold = resolveThreshold('anomaly', manifest.thresholds, options.thresholds);
      const defect = score >= threshold;
      const judgement: Judgement = { verdict: defect ? 'defect' : 'ok', label: defect ? 'anomaly' : 'good', score, threshold };
      if (defect && options.heatmap && map) {
        judgement.anomalyMap = { width: map.width, height: map.height, values: normalizedMap(map.data, pixelNorm) };
      }
      return judgement;
    },
  };
}
