/**
 * The contract between models/ and its users (edge agent, `osprey infer`, benchmarks).
 * The manifest schema itself lives in protocol/manifest.ts.
 */
import type { Detection, Thresholds, Verdict } from '../protocol/messages.js';
import type { Manifest } from '../protocol/manifest.js';
import type { OptimizedModelCache } from './optimized-model.js';
import type { GrayThumbnail } from './thumbnail.js';

export interface InspectOptions {
  /** Per-edge overrides of the package's thresholds (default and per label). */
  thresholds?: Thresholds;
  /**
   * Anomaly models: return the anomaly map of a defect frame (Inspection.anomalyMap) so that a
   * heatmap can be rendered from it later, off the answer path (renderHeatmap).
   */
  heatmap?: boolean;
  /**
   * Return a gray thumbnail (longer side at most this many pixels) of the pixels the model's
   * pre-processing decoded, as `Inspection.thumbnail` (image health, issue 17). Absent: none, no cost.
   */
  thumbnail?: number;
  /** Classification: how many labels `top` lists (default the manifest's topK); occlusion maps ask for all. */
  topK?: number;
}

/** An anomaly map on the normalised scale (0.5 = threshold), row-major, width×height. */
export interface AnomalyMap {
  width: number;
  height: number;
  values: Float32Array;
}

export interface Inspection {
  verdict: Verdict;
  /**
   * Classification: the defect label that fired, else the top non-defect label ('ok' if every
   * label is a defect label). Anomaly: 'anomaly'/'good'. Detection: the defect label that fired
   * (highest score), else `missing:<label>`/`extra:<label>` for a broken expected count, else 'ok'.
   */
  label: string;
  /**
   * Defect score compared against the threshold (probability, normalised anomaly score,
   * confidence; for a broken expected count, the count found against the bound broken).
   */
  score: number;
  /** The threshold the score was compared against. */
  threshold: number;
  /** Detection: every box kept after confidence and NMS, in original image pixels, best first. */
  detections?: Detection[];
  /** Top-k labels for classification. */
  top?: { label: string; score: number }[];
  /** Present when InspectOptions.thumbnail asked for it. */
  thumbnail?: GrayThumbnail;
  /** Anomaly models, defect frames, when asked (InspectOptions.heatmap): the map, normalised 0..1. */
  anomalyMap?: AnomalyMap;
  timings: { decodeMs: number; inferMs: number; postMs: number; totalMs: number };
}

/** A loaded package: ORT session created once and reused for every frame. */
export interface ModelRunner {
  readonly manifest: Manifest;
  /** `name@version` — recorded with every result. */
  readonly id: string;
  /** Decode → pre-process → run → post-process one encoded image (JPEG/PNG/...). */
  inspect(image: Buffer, options?: InspectOptions): Promise<Inspection>;
  close(): Promise<void>;
}

export interface LoadOptions {
  /**
   * onnxruntime intra-op threads (default: one per core). session.run() blocks the JS thread, so
   * concurrent frames overlap decoding with inference but never run two inferences at once.
   */
  intraOpThreads?: number;
  /** Reject images above this many pixels before decoding (default 50 megapixels). */
  maxPixels?: number;
  /** Run one frame of padding at load so unreadable outputs fail at load, not on the line (default true). */
  warmup?: boolean;
  /** Longest wait for a post-processing plug-in that returns a Promise, per frame (default 10 s). */
  pluginTimeoutMs?: number;
  /**
   * Whether a package's plug-in may be imported (default true: the package's author running it).
   * False: a package with a plug-in is refused with OSP_ERR_MODEL_PLUGIN before its module is
   * read (the edge's `model.allowPlugins`).
   */
  allowPlugins?: boolean;
  /**
   * Load the model's optimised graph from here, building it in a child process the first time
   * (optimized-model.ts; the edge agent keeps one under its data directory). Without it the
   * session optimises the model in this process, which keeps more memory.
   */
  optimizedCache?: OptimizedModelCache;
}
