/**
 * The edge's per-frame monitor (issue 17): image health (image-health.ts) and score drift
 * (score-drift.ts) against references taken when a model is activated (or when an operator asks,
 * POST /monitor/reference), each check a hysteresis alarm (hysteresis-alarm.ts) published as an
 * `alert` event `{alarm, ...figures}` / `{alarm, cleared: true, ...}` like the storage alarms.
 * observe() runs on the JS thread after each stored result: it costs a few hundredths of a
 * millisecond and never throws into the pipeline.
 */
import type { Logger } from 'pino';
import type { EventMessage } from '../protocol/messages.js';
import type { EdgeAlarm, MonitorFigures, MonitorSettings } from '../protocol/monitoring.js';
import type { ModelRunner } from '../models/types.js';
import { createHysteresisAlarm, type HysteresisAlarm } from './hysteresis-alarm.js';
import { frameShift, measureFrame, ProfileBuffers, shiftReference, type FrameHealth, type ShiftReference } from './image-health.js';
import type { InspectOutcome } from './pipeline.js';
import {
  binomialCriticalCount,
  binOf,
  labelPsi,
  psi,
  Ring,
  scoreReferenceFromQuantiles,
  scoreReferenceOf,
  type ScoreReference,
} from './score-drift.js';

/** Every default, one place (docs/monitoring.md says why each is what it is). */
export const MONITOR_DEFAULTS: Required<MonitorSettings> = {
  enabled: true,
  thumbnailSize: 128,
  referenceFrames: 100,
  window: 25,
  sigmas: 5,
  shiftLimit: 0.05,
  scoreReferenceFrames: 300,
  scoreWindow: 300,
  psiLimit: 0.25,
  defectWindow: 100,
  defectAlpha: 1e-4,
  holdMs: 60_000,
};

/** Clear marks, as a share of the raise mark: a level must come well back before an alarm clears. */
const CLEAR_SHARE = 0.6;
/** PSI clear mark: the usual "no change" reading. */
const PSI_CLEAR = 0.1;
/**
 * Score bins: about 30 frames of the smaller sample per bin, 2 to 10 bins. PSI's sampling noise
 * is about (bins − 1)(1/reference + 1/window): 0.06 at the default 300/300 and 10 bins, but 0.9
 * for 10 bins of 20 frames, so small windows get fewer bins.
 */
export function psiBins(referenceFrames: number, window: number): number {
  return Math.max(2, Math.min(10, Math.floor(Math.min(referenceFrames, window) / 30)));
}
/** Floors of the reference spreads (gray levels; log units for contrast and sharpness). */
const SPREAD_FLOOR = { brightness: 1, contrast: 0.02, sharpness: 0.05 } as const;
/** Largest shift looked for, as a fraction of the frame. */
const MAX_LAG = 0.15;
/** The rolling defect rate is judged against at least this rate (a reference without defects). */
const MIN_DEFECT_RATE = 0.005;

type Metric = 'brightness' | 'contrast' | 'sharpness';
const METRIC_ALARM: Record<Metric, EdgeAlarm> = { brightness: 'image-brightness', contrast: 'image-contrast', sharpness: 'image-blur' };
/** Contrast and sharpness are compared in log units: both are ratios, and sharpness spans decades. */
const valueOf = (m: Metric, f: FrameHealth): number => (m === 'brightness' ? f.brightness : Math.log(Math.max(1e-6, m === 'contrast' ? f.contrast : f.sharpness)));
const shown = (m: Metric, v: number): number => (m === 'brightness' ? v : Math.exp(v));

export interface MonitorOptions {
  settings?: MonitorSettings;
  logger: Logger;
  publishEvent?: (kind: EventMessage['kind'], level: EventMessage['level'], message: string, data?: Record<string, unknown>) => void;
  /** Clock of the alarms' hold times (default performance.now). */
  now?: () => number;
}

export interface Monitor {
  /** InspectOptions.thumbnail for the next frame: the thumbnail's longest side, or undefined when off. */
  thumbnailSize(): number | undefined;
  /** After each stored result (the pipeline's onResult). Never throws. */
  observe(outcome: InspectOutcome, runner?: ModelRunner): void;
  /** Starts a new reference from the next frames (model activation, or an operator); alarms in force clear. */
  resetReference(reason: string): void;
  /** The layered config's `monitoring` (undefined: the defaults); a change starts a new reference. */
  setSettings(settings: MonitorSettings | undefined): void;
  readonly settings: Required<MonitorSettings>;
  alarms(): EdgeAlarm[];
  figures(): MonitorFigures;
}

interface MetricRef {
  median: number;
  /** Robust standard deviation of single frames (1.4826 · MAD). */
  spread: number;
  /** The rolling median's limit: sigmas standard errors of (window median − reference median). */
  limit: number;
}

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Creates the monitor; it starts collecting a reference at the first frame. */
export function createMonitor(opts: MonitorOptions): Monitor {
  const log = opts.logger;
  let s: Required<MonitorSettings> = { ...MONITOR_DEFAULTS, ...opts.settings };
  let model: string | undefined;

  // Image reference and windows.
  let refFrames: FrameHealth[] = [];
  let refs: Record<Metric, MetricRef> | undefined;
  let shiftRef: ShiftReference | undefined;
  let windows = newWindows();
  const profiles = new ProfileBuffers();
  let frames = 0;
  // Score reference and windows.
  let refScores: number[] = [];
  let refLabels: string[] = [];
  let refDefects = 0;
  let scoreRef: ScoreReference | undefined;
  let scoreBins: number[] = [];
  let scoreRing: Ring | undefined;
  let labelRing: string[] = [];
  let labelCounts = new Map<string, number>();
  let labelAt = 0;
  let defectRing: Ring | undefined;
  let defectCount = 0;
  let refRate: number | undefined;
  let defectLimit: number | undefined;
  let lastPsi: number | undefined;
  let lastLabelPsi: number | undefined;
  let costMs = 0;
  let costFrames = 0;
  // The figures each alarm reports when it changes.
  const lastData = new Map<EdgeAlarm, Record<string, unknown>>();
  let alarms = newAlarms();

  function newWindows() {
    return {
      brightness: new Ring(s.window),
      contrast: new Ring(s.window),
      sharpness: new Ring(s.window),
      shiftX: new Ring(s.window),
      shiftY: new Ring(s.window),
    };
  }

  function event(level: EventMessage['level'], message: string, data: Record<string, unknown>): void {
    try {
      opts.publishEvent?.('alert', level, message, data);
    } catch (err) {
      log.error({ err }, 'event hook threw');
    }
  }

  function newAlarms(): Map<EdgeAlarm, HysteresisAlarm> {
    const names: EdgeAlarm[] = ['image-brightness', 'image-contrast', 'image-blur', 'camera-shift', 'score-drift', 'defect-rate-spike'];
    return new Map(
      names.map((alarm) => [
        alarm,
        createHysteresisAlarm({
          holdMs: s.holdMs,
          ...(opts.now ? { now: opts.now } : {}),
          onChange: (raised) => {
            const data = { alarm, model, ...lastData.get(alarm) };
            if (raised) {
              log.warn(data, 'monitor alarm raised');
              event('warn', `${alarm}: ${describe(alarm, data)}`, data);
            } else {
              log.info(data, 'monitor alarm cleared');
              event('info', `${alarm} cleared`, { ...data, cleared: true });
            }
          },
        }),
      ]),
    );
  }

  function describe(alarm: EdgeAlarm, d: Record<string, unknown>): string {
    const n = (v: unknown) => (typeof v === 'number' ? Number(v.toPrecision(4)) : v);
    if (alarm === 'camera-shift') return `the view moved by ${n(d.shiftX)} × width, ${n(d.shiftY)} × height (limit ${n(d.limit)})`;
    if (alarm === 'score-drift') return `score PSI ${n(d.scorePsi)}, label PSI ${n(d.labelPsi)} (limit ${n(d.limit)})`;
    if (alarm === 'defect-rate-spike') return `${d.defects} defects in the last ${d.window} frames (limit ${d.limit}, reference rate ${n(d.referenceRate)})`;
    const range = d.high === undefined ? `at least ${n(d.low)}` : `${n(d.low)}..${n(d.high)}`;
    return `rolling median ${n(d.value)}, reference ${n(d.reference)} (allowed ${range})`;
  }

  /** Clears whatever is raised (a new reference makes the old comparison void). */
  function clearAll(reason: string): void {
    for (const [alarm, a] of alarms) {
      if (a.raised) event('info', `${alarm} cleared: ${reason}`, { alarm, model, cleared: true, reason });
    }
    lastData.clear();
    alarms = newAlarms();
  }

  function reset(reason: string, nextModel: string | undefined): void {
    clearAll(reason);
    model = nextModel;
    refFrames = [];
    refs = undefined;
    shiftRef = undefined;
    windows = newWindows();
    frames = 0;
    refScores = [];
    refLabels = [];
    refDefects = 0;
    scoreRef = undefined;
    scoreBins = [];
    scoreRing = undefined;
    labelRing = [];
    labelCounts = new Map();
    labelAt = 0;
    defectRing = undefined;
    defectCount = 0;
    refRate = undefined;
    defectLimit = undefined;
    lastPsi = undefined;
    lastLabelPsi = undefined;
    log.info({ model, reason }, 'monitor reference reset');
  }

  function calibrationReference(runner: ModelRunner | undefined): ScoreReference | undefined {
    const text = runner?.manifest.metadata?.scoreQuantiles;
    if (!text) return undefined;
    return scoreReferenceFromQuantiles(text.split(',').map(Number));
  }

  function buildImageReference(): void {
    const refOf = (m: Metric): MetricRef => {
      const v = refFrames.map((f) => valueOf(m, f));
      const med = median(v);
      const spread = Math.max(SPREAD_FLOOR[m], 1.4826 * median(v.map((x) => Math.abs(x - med))));
      // The median of n frames has a standard error of about 1.2533·σ/√n; both medians are estimates.
      const se = 1.2533 * spread * Math.sqrt(1 / s.window + 1 / refFrames.length);
      return { median: med, spread, limit: s.sigmas * se };
    };
    refs = { brightness: refOf('brightness'), contrast: refOf('contrast'), sharpness: refOf('sharpness') };
    shiftRef = shiftReference(refFrames);
    refFrames = [];
  }

  function checkImage(f: FrameHealth): void {
    if (!refs || !shiftRef) {
      refFrames.push(f);
      if (refFrames.length >= s.referenceFrames) buildImageReference();
      return;
    }
    for (const m of ['brightness', 'contrast', 'sharpness'] as const) windows[m].push(valueOf(m, f));
    const shift = frameShift(f, shiftRef, MAX_LAG);
    windows.shiftX.push(shift.x);
    windows.shiftY.push(shift.y);
    if (!windows.brightness.full) return;
    for (const m of ['brightness', 'contrast', 'sharpness'] as const) {
      const r = refs[m];
      const dev = windows[m].median() - r.median;
      // Blur is a loss of sharpness only; more sharpness (noise, a cleaned lens) is no alarm.
      const d = m === 'sharpness' ? Math.max(0, -dev) : Math.abs(dev);
      const alarm = METRIC_ALARM[m];
      const lo = r.median - r.limit;
      const hi = r.median + r.limit;
      lastData.set(alarm, { value: shown(m, r.median + dev), reference: shown(m, r.median), low: shown(m, lo), ...(m !== 'sharpness' && { high: shown(m, hi) }) });
      alarms.get(alarm)!.update(d > r.limit, d < r.limit * CLEAR_SHARE);
    }
    const sx = windows.shiftX.median();
    const sy = windows.shiftY.median();
    const far = Math.max(Math.abs(sx), Math.abs(sy));
    lastData.set('camera-shift', { shiftX: sx, shiftY: sy, limit: s.shiftLimit });
    alarms.get('camera-shift')!.update(far > s.shiftLimit, far < s.shiftLimit * CLEAR_SHARE);
  }

  function checkScores(outcome: InspectOutcome, runner: ModelRunner | undefined): void {
    const { score, label, verdict } = outcome.record;
    const defect = verdict === 'defect' ? 1 : 0;
    if (refRate === undefined) {
      refScores.push(score);
      refLabels.push(label);
      refDefects += defect;
      if (refScores.length < s.scoreReferenceFrames) return;
      // Label rates always come from the frames: calibration gives scores only.
      const fromFrames = scoreReferenceOf(refScores, refLabels, psiBins(s.scoreReferenceFrames, s.scoreWindow));
      scoreRef = { ...(calibrationReference(runner) ?? fromFrames), labels: fromFrames.labels! };
      refRate = refDefects / refScores.length;
      defectLimit = binomialCriticalCount(s.defectWindow, Math.max(MIN_DEFECT_RATE, refRate), s.defectAlpha);
      scoreBins = new Array<number>(scoreRef.edges.length + 1).fill(0);
      scoreRing = new Ring(s.scoreWindow);
      labelRing = new Array<string>(s.scoreWindow);
      defectRing = new Ring(s.defectWindow);
      refScores = [];
      refLabels = [];
      return;
    }
    // Running bin counts: O(log bins) a frame instead of re-binning the window.
    const old = scoreRing!.push(score);
    if (old !== undefined) scoreBins[binOf(old, scoreRef!.edges)]!--;
    scoreBins[binOf(score, scoreRef!.edges)]!++;
    const oldLabel = labelRing[labelAt];
    if (oldLabel !== undefined) labelCounts.set(oldLabel, labelCounts.get(oldLabel)! - 1);
    labelRing[labelAt] = label;
    labelAt = (labelAt + 1) % s.scoreWindow;
    labelCounts.set(label, (labelCounts.get(label) ?? 0) + 1);
    const oldDefect = defectRing!.push(defect);
    defectCount += defect - (oldDefect ?? 0);

    if (scoreRing!.full) {
      lastPsi = psi(scoreRef!.shares, scoreBins);
      lastLabelPsi = labelPsi(scoreRef!.labels!, labelCounts);
      const drift = Math.max(lastPsi, lastLabelPsi);
      lastData.set('score-drift', { scorePsi: lastPsi, labelPsi: lastLabelPsi, limit: s.psiLimit, window: s.scoreWindow, reference: scoreRef!.source });
      alarms.get('score-drift')!.update(drift > s.psiLimit, drift < Math.min(PSI_CLEAR, s.psiLimit * CLEAR_SHARE));
    }
    if (defectRing!.full) {
      const clearBelow = Math.max(1, Math.ceil(s.defectWindow * Math.max(MIN_DEFECT_RATE, refRate) * 2));
      lastData.set('defect-rate-spike', { defects: defectCount, window: s.defectWindow, limit: defectLimit, referenceRate: refRate });
      alarms.get('defect-rate-spike')!.update(defectCount >= defectLimit!, defectCount <= Math.min(clearBelow, defectLimit! - 1));
    }
  }

  return {
    thumbnailSize() {
      return s.enabled ? s.thumbnailSize : undefined;
    },
    observe(outcome, runner) {
      if (!s.enabled) return;
      const t0 = performance.now();
      try {
        const id = outcome.record.model;
        if (id !== model) reset(model === undefined ? 'first frame' : 'model activated', id);
        frames++;
        const thumb = outcome.inspection.thumbnail;
        // A reference frame keeps its profiles; a watched frame's are read once, in reused arrays.
        if (thumb) checkImage(measureFrame(thumb, refs && shiftRef ? profiles : undefined));
        checkScores(outcome, runner);
      } catch (err) {
        log.error({ err }, 'monitor check failed');
      }
      costMs += performance.now() - t0;
      costFrames++;
    },
    resetReference(reason) {
      reset(reason, model);
    },
    setSettings(next) {
      const merged = { ...MONITOR_DEFAULTS, ...next };
      if (JSON.stringify(merged) === JSON.stringify(s)) return;
      s = merged;
      reset('monitoring settings changed', model);
      log.info({ settings: s }, 'monitoring settings applied');
    },
    get settings() {
      return s;
    },
    alarms() {
      return [...alarms].filter(([, a]) => a.raised).map(([name]) => name);
    },
    figures() {
      const f: MonitorFigures = {
        phase: !s.enabled ? 'off' : refs && refRate !== undefined ? 'watching' : 'reference',
        referenceFrames: refs ? s.referenceFrames : refFrames.length,
        frames,
      };
      if (model !== undefined) f.model = model;
      const round = (v: number) => Number(v.toPrecision(5));
      if (refs && windows.brightness.length > 0) {
        for (const m of ['brightness', 'contrast', 'sharpness'] as const) {
          f[m] = round(shown(m, windows[m].median()));
          f[`${m}Reference`] = round(shown(m, refs[m].median));
        }
        f.shiftX = round(windows.shiftX.median());
        f.shiftY = round(windows.shiftY.median());
      }
      if (lastPsi !== undefined) f.scorePsi = round(lastPsi);
      if (lastLabelPsi !== undefined) f.labelPsi = round(lastLabelPsi);
      if (scoreRef) f.scoreReference = scoreRef.source;
      if (defectRing && defectRing.length > 0) f.defectRate = round(defectCount / defectRing.length);
      if (refRate !== undefined) f.defectRateReference = round(refRate);
      if (defectLimit !== undefined) f.defectLimit = defectLimit;
      if (costFrames > 0) f.checkMs = round(costMs / costFrames);
      if (s.enabled) {
        f.psiLimit = s.psiLimit;
        f.shiftLimit = s.shiftLimit;
      }
      return f;
    },
  };
}
