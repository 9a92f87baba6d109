/**
 * JSON Schema of a model package's `manifest.json` (DESIGN.md "Model package"). The type is
 * derived from the schema. Outputs are described per task under `outputs.<task>`, so one
 * manifest shape covers classifiers, anomaly models (Osprey's own, anomalib v2, raw-score) and
 * detectors (Ultralytics, end-to-end, plug-in) without a union that ajv reports badly.
 *
 * Defaults written below (`default:`) are documentation: ajv runs with `useDefaults: false`, and
 * models/manifest-check.ts applies them in code, in one place.
 */
import { Type, type Static } from '@sinclair/typebox';

export const MANIFEST_SCHEMA_VERSION = 1;

const strict = { additionalProperties: false } as const;

/** A string enum as JSON Schema `enum` (ajv then says "must be equal to one of the allowed values"). */
function StringEnum<T extends string[]>(values: [...T], opts: object = {}) {
  return Type.Unsafe<T[number]>({ type: 'string', enum: values, ...opts });
}

/** A file inside the package directory: no separators, no `..`, so it cannot escape the package. */
const PackageFile = Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$' });
/**
 * A plug-in module inside the package. `.mjs` so Node loads it as an ES module wherever the
 * package directory lives (a `.js` file's module type depends on the nearest package.json).
 */
const PluginFile = Type.String({ pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]{0,123}\\.mjs$' });
const Name = Type.String({ minLength: 1, maxLength: 128 });
const Sha256 = Type.String({ pattern: '^[0-9a-f]{64}$' });
const Probability = Type.Number({ minimum: 0 });

export const Tasks = ['classification', 'anomaly', 'detection'] as const;
export type Task = (typeof Tasks)[number];

/** The model input and how an image becomes it (see docs/models.md for each resize mode). */
export const ManifestInputSchema = Type.Object(
  {
    name: Type.String({ minLength: 1, description: 'name of the model input tensor' }),
    layout: StringEnum(['nchw', 'nhwc']),
    width: Type.Integer({ minimum: 1, maximum: 8192 }),
    height: Type.Integer({ minimum: 1, maximum: 8192 }),
    dtype: StringEnum(['float32', 'float16', 'uint8']),
    color: StringEnum(['rgb', 'bgr', 'gray']),
    resize: StringEnum(['stretch', 'letterbox', 'center-crop'], {
      description:
        'stretch: plain resize to width×height; letterbox: Ultralytics LetterBox (keep aspect, centre, pad ' +
        'with padValue); center-crop: resize so the image covers (width/cropFraction)×(height/cropFraction), ' +
        'then crop the centre width×height (torchvision Resize+CenterCrop, timm crop_pct)',
    }),
    padValue: Type.Optional(Type.Integer({ minimum: 0, maximum: 255, default: 114 })),
    cropFraction: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 1 })),
    interpolation: Type.Optional(StringEnum(['nearest', 'linear', 'cubic', 'lanczos3'], { default: 'linear' })),
    scale: Type.Optional(Type.Number({ exclusiveMinimum: 0, default: 1, description: 'value = (pixel·scale − mean[c]) / std[c]' })),
    mean: Type.Optional(Type.Array(Type.Number(), { minItems: 1, maxItems: 3, default: [0] })),
    std: Type.Optional(Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1, maxItems: 3, default: [1] })),
  },
  strict,
);
export type ManifestInput = Static<typeof ManifestInputSchema>;

/** How a classifier's output is read: one value per label. */
export const ClassificationOutputSchema = Type.Object(
  {
    output: Type.String({ minLength: 1, description: 'output tensor holding one value per label' }),
    activation: StringEnum(['softmax', 'sigmoid', 'none'], {
      description: 'softmax: the output is logits; sigmoid: multi-label logits; none: already probabilities',
    }),
    topK: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 5 })),
  },
  strict,
);

/** How an anomaly model's outputs are read and put on the normalised (0.5 = threshold) scale. */
export const AnomalyOutputSchema = Type.Object(
  {
    format: StringEnum(['osprey', 'anomalib-v2', 'raw', 'plugin'], {
      description:
        'osprey/anomalib-v2: the score is already normalised (exported threshold 0.5); raw: normalised ' +
        'here with anomalib min-max normalisation ((x − threshold)/(max − min) + 0.5, clipped to [0, 1]); ' +
        'plugin: postprocess.module returns { score, map? }, normalised with `normalization` when given',
    }),
    score: Type.Optional(Type.String({ minLength: 1, description: 'image score output; max of the map when absent' })),
    map: Type.Optional(Type.String({ minLength: 1, description: 'anomaly map output ([1,1,H,W], [1,H,W] or [H,W])' })),
    normalization: Type.Optional(
      Type.Object(
        {
          min: Type.Number(),
          max: Type.Number(),
          threshold: Type.Number(),
          pixelThreshold: Type.Optional(Type.Number()),
        },
        strict,
      ),
    ),
  },
  strict,
);

/** How a detector's output is decoded, filtered (confidence, NMS) and judged (expected counts). */
export const DetectionOutputSchema = Type.Object(
  {
    format: StringEnum(['yolov8', 'end2end', 'plugin'], {
      description:
        'yolov8: Ultralytics raw [1, 4+nc, N]; end2end: [1, N, 6] (x1, y1, x2, y2, score, class); ' +
        'plugin: decoded by postprocess.module',
    }),
    output: Type.Optional(Type.String({ minLength: 1 })),
    iou: Type.Optional(Type.Number({ minimum: 0, maximum: 1, default: 0.7 })),
    confidence: Type.Optional(Type.Number({ minimum: 0, maximum: 1, default: 0.25 })),
    maxDetections: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 300 })),
    classAgnosticNms: Type.Optional(Type.Boolean({ default: false })),
    expectedCounts: Type.Optional(
      Type.Record(
        Type.String(),
        Type.Object({ min: Type.Optional(Type.Integer({ minimum: 0 })), max: Type.Optional(Type.Integer({ minimum: 0 })) }, strict),
        { description: 'per label: a count outside [min, max] is a defect (e.g. exactly 4 screws)' },
      ),
    ),
  },
  strict,
);

/** The package's default thresholds; edges may override them (InspectOptions.thresholds). */
export const ManifestThresholdsSchema = Type.Object(
  {
    default: Probability,
    perLabel: Type.Optional(Type.Record(Type.String(), Probability)),
  },
  strict,
);

/** manifest.json of a model package. */
export const ManifestSchema = Type.Object(
  {
    schemaVersion: Type.Literal(MANIFEST_SCHEMA_VERSION),
    name: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' }),
    version: Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$' }),
    task: StringEnum([...Tasks]),
    description: Type.Optional(Type.String({ maxLength: 2000 })),
    model: Type.Object(
      {
        file: PackageFile,
        sha256: Sha256,
        size: Type.Optional(Type.Integer({ minimum: 0 })),
      },
      strict,
    ),
    input: ManifestInputSchema,
    outputs: Type.Object(
      {
        classification: Type.Optional(ClassificationOutputSchema),
        anomaly: Type.Optional(AnomalyOutputSchema),
        detection: Type.Optional(DetectionOutputSchema),
      },
      { ...strict, description: 'how to read the outputs; the entry named by `task` is required' },
    ),
    labels: Type.Array(Name, { maxItems: 100000, description: 'class names in output order' }),
    defectLabels: Type.Array(Name, { description: 'labels that make a frame a defect' }),
    thresholds: ManifestThresholdsSchema,
    postprocess: Type.Optional(
      Type.Object(
        {
          module: PluginFile,
          sha256: Type.String({ pattern: '^[0-9a-f]{64}$', description: 'sha256 of the module: the signature covers the code the edge runs' }),
          options: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'passed to the plug-in as context.options' })),
        },
        {
          ...strict,
          description: 'plug-in module (an ES module file in the package) that decodes raw outputs; used by format plugin',
        },
      ),
    ),
    metadata: Type.Optional(
      Type.Record(Type.String(), Type.String(), { description: 'provenance: framework, metadata_props, training run' }),
    ),
    signature: Type.Optional(
      Type.Object(
        {
          algorithm: StringEnum(['ed25519']),
          keyId: Type.Optional(Type.String({ minLength: 1, maxLength: 128 })),
          value: Type.String({ minLength: 1, description: 'base64 signature of the manifest without `signature`' }),
        },
        strict,
      ),
    ),
  },
  { $id: 'osprey.v1.manifest', ...strict },
);
export type Manifest = Static<typeof ManifestSchema>;
