/**
 * models/ for people making packages (`osprey model …`, benchmarks, tests): writing and packing
 * packages, reading and building ONNX graphs (protobufjs through onnx-proto), proposing
 * manifests, fitting the built-in anomaly model. Never imported by the daemons.
 */
export { writeModelPackage, type ManifestDraft, type PackageFiles } from './package-writer.js';
export { describeOnnx, decodeOnnx, inspectOnnxFile, parsePythonNames, type OnnxDescription, type TensorInfo, type Convention } from './onnx-inspect.js';
export { proposeManifest, type PackDeclarations } from './propose-manifest.js';
export { packModel, type PackOptions } from './pack.js';
export {
  OnnxModelBuilder,
  OnnxElementTypes,
  encodeTensorValues,
  type OnnxElementType,
  type Dim,
  type TensorValues,
  type TensorSpec,
  type AttributeValue,
  type NodeOptions,
  type BuilderOptions,
} from './onnx-builder.js';
export { fitBuiltinAnomalyModel, boxMean, type BuiltinAnomalyOptions, type BuiltinAnomalyFit } from './builtin-anomaly.js';
