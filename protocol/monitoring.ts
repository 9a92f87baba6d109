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

/** Image health and score drift settings (layered config `monitoring`). */
export const MonitorSettingsSchema = Type.Object(
  {
    enabled: Type.Optional(Type.Boolean({ description: 'image health and score drift checks on every frame (default true)' })),
  },
  { ...strict, description: 'image health and score drift (issue 17)' },
);
export type MonitorSettings = Static<typeof MonitorSettingsSchema>;

/** Golden-set self-test settings (layered config `goldenSet`). */
export const GoldenSetSettingsSchema = Type.Object(
  {
    schedule: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'node-cron expression (default monthly)' })),
  },
  { ...strict, description: 'golden-set self-test (issue 17)' },
);
export type GoldenSetSettings = Static<typeof GoldenSetSettingsSchema>;

/** The monitors' figures in one telemetry interval. */
export const MonitorFiguresSchema = Type.Object({}, { ...strict, description: 'image health and score drift figures (issue 17)' });
export type MonitorFigures = Static<typeof MonitorFiguresSchema>;

/** The last golden-set self-test of a model, reported in the edge's state. */
export const GoldenSetReportSchema = Type.Object({}, { ...strict, description: 'the last golden-set self-test (issue 17)' });
export type GoldenSetReport = Static<typeof GoldenSetReportSchema>;
