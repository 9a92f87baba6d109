/**
 * models/ for the daemons: what turns an image into a verdict (package loading and checking,
 * decode, pre- and post-processing, plug-ins). Nothing here loads protobufjs/onnx-proto; the
 * edge agent and the fleet manager import models only through this entry or single modules.
 * The contract is in types.ts. Authoring (packing, fitting, ONNX building): authoring.ts;
 * synthetic images and the demo model: fixtures.ts.
 */
export type { Inspection, InspectOptions, LoadOptions, ModelRunner } from './types.js';
export type { Manifest, ManifestInput, Task } from '../protocol/manifest.js';
export { ManifestSchema, MANIFEST_SCHEMA_VERSION } from '../protocol/manifest.js';
export { loadModelPackage } from './package.js';
export { createOptimizedModelCache, type OptimizedModelCache, type OptimizedModelCacheOptions } from './optimized-model.js';
export { readManifest, readVerifiedModel, verifyModelFile, sha256File, verifyModelPackage, verifyPlugin, sha256Hex, MANIFEST_FILE } from './package-reader.js';
export { loadPlugin, pluginBoxes, pluginAnomaly, type Plugin, type PluginContext } from './plugin.js';
export { parseManifest, resolveInput, type ResolvedInput } from './manifest-check.js';
export { probeImage, decodePixels, DEFAULT_MAX_PIXELS, type ImageHeader, type DecodeOptions } from './decode.js';
export { preprocessImage, type Preprocessed } from './preprocess.js';
export { planResize, boxToOriginal, roundHalfEven, type ResizePlan, type InputTransform } from './geometry.js';
export { pixelsToTensor, luma, type RawImage, type InputTensor, type TensorData } from './tensor.js';
export {
  float32ToFloat16,
  float16ToFloat32,
  float32ArrayToFloat16,
  float16ArrayToFloat32,
  halfBitsFromFloatBits,
} from './float16.js';
export { classify, softmax, sigmoid, toProbabilities, createClassificationReader, type Activation } from './postprocess/classification.js';
export { createAnomalyReader, normalizeAnomalyScore, mapSize } from './postprocess/anomaly.js';
export {
  createDetectionReader,
  decodeYolov8,
  decodeEnd2End,
  nms,
  iou,
  labelBoxes,
  detectionVerdict,
  type RawBox,
  type DetectionRules,
  type ExpectedCount,
} from './postprocess/detection.js';
export { renderHeatmap, jet } from './postprocess/heatmap.js';
export { resolveThreshold, defaultThreshold, hasOwnThreshold } from './postprocess/thresholds.js';
export type { OutputReader, RawOutput, RawOutputs, Judgement } from './postprocess/output-reader.js';
