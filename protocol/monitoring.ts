/**
 * Monitoring at the edge (issue 17): the alarm names every part raises, and the message parts the
 * monitors add to the layered config, the telemetry and the reported state. Image health and
 * score drift own `MonitorSettingsSchema`/`MonitorFiguresSchema`; the golden-set self-test owns
 * `GoldenSetSettingsSchema`/`GoldenSetReportSchema`. messages.ts embeds them.
 */
import { Type, type Static } from '@sinclair/typebox';

const strict = { additionalProperties: false } as const;

/**
 * Every alarm an edge may raise. Raised and cleared alarms are published as `alert` events with
 * `data.alarm` set to the name (and `data.cleared: true` when it clears); the names in force are
 * listed in telemetry `alarms` and in the edge's `/health`.
 */
export const EDGE_ALARMS = [
  // Storage (issue 5, issue 13).
  'result-quota',
  'result-store-error',
  'result-store-replaced',
  'image-quota',
  'disk-low',
  // Image health (issue 17).
  'image-brightness',
  'image-contrast',
  'image-blur',
  'camera-shift',
  // Scores (issue 17).
  'score-drift',
  'defect-rate-spike',
  // Golden-set self-test (issue 17).
  'golden-set-failed',
] as const;
export type EdgeAlarm = (typeof EDGE_ALARMS)[number];

const EDGE_ALARM_SET: ReadonlySet<string> = new Set(EDGE_ALARMS);
/** Whether `name` is an alarm edges raise: the fleet keeps alerts for these only. */
export const isEdgeAlarm = (name: unknown): name is EdgeAlarm => typeof name === 'string' && EDGE_ALARM_SET.has(name);

/** Image health and score drift settings (layered config `monitoring`); docs/monitoring.md has the defaults and why. */
export const MonitorSettingsSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ description: 'image health and score drift checks on every frame (default true)' })),
    thumbnailSize: Type.Optional(
      Type.Integer({ minimum: 16, maximum: 256, description: 'longest side of the gray thumbnail image health is measured on, in pixels (default 128)' }),
    ),
    referenceFrames: Type.Optional(
      Type.Integer({ minimum: 10, maximum: 10_000, description: 'frames after activation (or POST /monitor/reference) that make the image reference (default 100)' }),
    ),
    window: Type.Optional(Type.Integer({ minimum: 5, maximum: 1000, description: 'frames of the rolling medians of the image figures (default 25)' })),
    sigmas: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 100, description: 'brightness, contrast and blur limit: this many standard errors of the rolling median from the reference (default 5)' }),
    ),
    shiftLimit: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 0.5, description: 'camera-shift limit: rolling median shift as a fraction of the frame (default 0.05)' }),
    ),
    scoreReferenceFrames: Type.Optional(
      Type.Integer({ minimum: 20, maximum: 100_000, description: 'frames after activation that make the score reference (default 300)' }),
    ),
    scoreWindow: Type.Optional(Type.Integer({ minimum: 20, maximum: 100_000, description: 'frames of the rolling score window (default 300)' })),
    psiLimit: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 10, description: 'score-drift raise mark: population stability index (default 0.25)' })),
    defectWindow: Type.Optional(Type.Integer({ minimum: 10, maximum: 100_000, description: 'frames of the rolling defect rate (default 100)' })),
    defectAlpha: Type.Optional(
      Type.Number({ exclusiveMinimum: 0, maximum: 0.5, description: 'defect-rate-spike: binomial tail probability of the window count under the reference rate (default 1e-4)' }),
    ),
    holdMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 86_400_000, description: 'an alarm clears only after its condition has been gone this long (default 60000)' })),
  },
  { ...strict, description: 'image health and score drift (issue 17)' },
);
export type MonitorSettings = Static<typeof MonitorSettingsSchema>;

/** The golden-set self-test's schedule when the layered config names none: 03:00 on the 1st of each month. */
export const DEFAULT_GOLDEN_SCHEDULE = '0 3 1 * *';

/** Golden-set self-test settings (layered config `goldenSet`; docs/monitoring.md). */
export const GoldenSetSettingsSchema = Type.Object(
  {
    schedule: Type.Optional(
      Type.String({ minLength: 1, maxLength: 100, description: 'node-cron expression, 5 or 6 fields (default "0 3 1 * *": monthly); checked by node-cron where it is accepted' }),
    ),
    runOnActivation: Type.Optional(Type.Boolean({ description: 'run right after a model is activated or a shadow candidate loads (default true)' })),
    timeoutMs: Type.Optional(Type.Integer({ minimum: 1000, maximum: 3_600_000, description: 'longest run of one model over its golden set (default 120000)' })),
  },
  { ...strict, description: 'golden-set self-test (issue 17)' },
);
export type GoldenSetSettings = Static<typeof GoldenSetSettingsSchema>;

const Fig = (description: string) => Type.Optional(Type.Number({ description }));

/** The monitors' figures: the rolling values, their references and limits, now. */
export const MonitorFiguresSchema = Type.Object(
  {
    phase: Type.Union([Type.Literal('off'), Type.Literal('reference'), Type.Literal('watching')], {
      description: 'off: disabled; reference: collecting the reference frames; watching: checking every frame',
    }),
    model: Type.Optional(Type.String({ maxLength: 200, description: 'the model whose activation started the reference' })),
    referenceFrames: Type.Integer({ minimum: 0, description: 'frames in the image reference so far' }),
    frames: Type.Integer({ minimum: 0, description: 'frames measured since the reference was reset' }),
    brightness: Fig('rolling median of the mean gray level (0..255)'),
    brightnessReference: Fig('reference median'),
    contrast: Fig('rolling median of the contrast: the gray levels’ standard deviation ÷ their mean'),
    contrastReference: Fig('reference median'),
    sharpness: Fig('rolling median of the variance of the Laplacian'),
    sharpnessReference: Fig('reference median'),
    shiftX: Fig('rolling median of the horizontal shift against the reference, fraction of the width'),
    shiftY: Fig('rolling median of the vertical shift, fraction of the height'),
    scorePsi: Fig('population stability index of the score window against the score reference'),
    labelPsi: Fig('population stability index of the label rates'),
    scoreReference: Type.Optional(Type.Union([Type.Literal('calibration'), Type.Literal('frames')], { description: 'where the score reference comes from' })),
    defectRate: Fig('defect rate in the rolling defect window'),
    defectRateReference: Fig('defect rate of the reference frames'),
    defectLimit: Fig('defects in the window that raise defect-rate-spike'),
    checkMs: Fig('mean cost of the checks per frame, ms (thumbnail excluded: it is part of the model’s decode)'),
    psiLimit: Fig('the score-drift raise mark in force (monitoring.psiLimit)'),
    shiftLimit: Fig('the camera-shift limit in force, fraction of the frame (monitoring.shiftLimit)'),
  },
  { ...strict, description: 'image health and score drift figures (issue 17)' },
);
export type MonitorFigures = Static<typeof MonitorFiguresSchema>;

/** The last golden-set self-test of a model, reported in the edge's state (`goldenSet`) and in the `golden-set` event. */
export const GoldenSetReportSchema = Type.Object(
  {
    model: Type.String({ minLength: 1, maxLength: 200, description: 'name@version of the model tested' }),
    sha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$', description: 'its archive (absent for the edge\'s local model)' })),
    role: Type.Union([Type.Literal('active'), Type.Literal('shadow')]),
    trigger: Type.Union([Type.Literal('activation'), Type.Literal('schedule'), Type.Literal('demand')]),
    ranAt: Type.Integer({ minimum: 0, description: 'epoch ms when the run ended' }),
    durationMs: Type.Number({ minimum: 0 }),
    passed: Type.Union([Type.Boolean(), Type.Null()], {
      description: 'true: every image got its expected answer within tolerance; false: one did not (or the run failed); null: the package has no golden set',
    }),
    accuracy: Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()], { description: 'share of images answered as their truth' }),
    expectedAccuracy: Type.Union([Type.Number({ minimum: 0, maximum: 1 }), Type.Null()], { description: 'the same share when the package was made' }),
    images: Type.Integer({ minimum: 0 }),
    mismatches: Type.Integer({ minimum: 0, description: 'images whose answer differs from the expected one (or that failed)' }),
    reason: Type.Optional(Type.String({ maxLength: 300, description: 'why it failed, or why there is no result' })),
  },
  { ...strict, description: 'the last golden-set self-test (issue 17)' },
);
export type GoldenSetReport = Static<typeof GoldenSetReportSchema>;

const GoldenAnswerSchema = Type.Object(
  {
    verdict: Type.Union([Type.Literal('ok'), Type.Literal('defect')]),
    label: Type.String({ maxLength: 64 }),
    score: Type.Number(),
  },
  strict,
);

/** One golden image's outcome, in the `golden-set` event (`data.outcomes`, at most GOLDEN_MAX_OUTCOMES). */
export const GoldenImageOutcomeSchema = Type.Object(
  {
    file: Type.String({ maxLength: 100 }),
    source: Type.Optional(Type.String({ maxLength: 200, description: 'where the trainer took it from' })),
    truth: Type.String({ maxLength: 64, description: 'the verdict (anomaly) or label (classification) it truly is' }),
    expected: GoldenAnswerSchema,
    got: Type.Union([GoldenAnswerSchema, Type.Null()], { description: 'null: the image could not be inspected (see error)' }),
    match: Type.Boolean({ description: 'same verdict and label as expected, score within tolerance' }),
    correct: Type.Boolean({ description: 'the answer agrees with the truth' }),
    error: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { ...strict, description: 'one golden image (issue 17)' },
);
export type GoldenImageOutcome = Static<typeof GoldenImageOutcomeSchema>;

/** Outcomes carried by one `golden-set` event (a golden set has at most 48 images). */
export const GOLDEN_MAX_OUTCOMES = 64;

/** The `golden-set` event's data: the report and its per-image outcomes. */
export const GoldenSetEventDataSchema = Type.Object(
  { ...GoldenSetReportSchema.properties, outcomes: Type.Array(GoldenImageOutcomeSchema, { maxItems: GOLDEN_MAX_OUTCOMES }) },
  { ...strict, description: 'a golden-set event (issue 17)' },
);
export type GoldenSetEventData = Static<typeof GoldenSetEventDataSchema>;
