/**
 * An edge's image health and score drift (issue 17; docs/monitoring.md): the monitor's figures now
 * against their references, the monitor's alarms and which are in force (the live edge view), and
 * charts of the figures over the telemetry charts' time span (edge-telemetry.tsx's points and chart).
 */
import type { EdgeView } from './api.js';
import { num } from './format.js';
import { TimeChart, type ChartSpec, type Point } from './edge-telemetry.js';

/** The alarms the edge's monitor raises (protocol/monitoring.ts EDGE_ALARMS), and what each means. */
const MONITOR_ALARMS: [alarm: string, meaning: string][] = [
  ['image-brightness', 'brightness left its reference'],
  ['image-contrast', 'contrast left its reference'],
  ['image-blur', 'the image got blurred'],
  ['camera-shift', 'the camera moved'],
  ['score-drift', 'the scores drifted'],
  ['defect-rate-spike', 'defects spiked'],
];

/** The score-drift alarm's default raise mark (monitoring.psiLimit), for edges that do not report theirs. */
const DEFAULT_PSI_LIMIT = 0.25;

const pct = (v: number | null | undefined) => (v === null || v === undefined ? null : v * 100);
const m = (p: Point) => p.monitor;

/** The value axis around zero, symmetric, at least ±1. */
const symmetric = (min: number, max: number): [number, number] => {
  const a = Math.max(1, Math.abs(min), Math.abs(max)) * 1.15;
  return [-a, a];
};

/** The charts, with the edge's own score-drift raise mark. */
const charts = (psiLimit: number): ChartSpec[] => [
  {
    key: 'brightness',
    title: 'Brightness',
    unit: 'gray level',
    series: [
      { label: 'brightness', value: (p) => m(p)?.brightness ?? null, stroke: '#d97706' },
      { label: 'reference', value: (p) => m(p)?.brightnessReference ?? null, stroke: '#6b7280', dash: [6, 4] },
    ],
  },
  {
    key: 'contrast',
    title: 'Contrast',
    unit: 'std ÷ mean',
    series: [
      { label: 'contrast', value: (p) => m(p)?.contrast ?? null, stroke: '#0d9488' },
      { label: 'reference', value: (p) => m(p)?.contrastReference ?? null, stroke: '#6b7280', dash: [6, 4] },
    ],
  },
  {
    key: 'sharpness',
    title: 'Sharpness',
    unit: 'Laplacian variance',
    series: [
      { label: 'sharpness', value: (p) => m(p)?.sharpness ?? null, stroke: '#2563eb' },
      { label: 'reference', value: (p) => m(p)?.sharpnessReference ?? null, stroke: '#6b7280', dash: [6, 4] },
    ],
  },
  {
    key: 'shift',
    title: 'Camera shift',
    unit: '% of frame',
    series: [
      { label: 'x %', value: (p) => pct(m(p)?.shiftX), stroke: '#7c3aed' },
      { label: 'y %', value: (p) => pct(m(p)?.shiftY), stroke: '#db2777', dash: [6, 4] },
    ],
    range: symmetric,
  },
  {
    key: 'psi',
    title: 'Score drift',
    unit: 'PSI',
    series: [
      { label: 'score PSI', value: (p) => m(p)?.scorePsi ?? null, stroke: '#059669' },
      // Drawn where the score PSI is, so the line spans the same minutes.
      { label: `alarm ${psiLimit}`, value: (p) => (m(p)?.scorePsi == null ? null : psiLimit), stroke: '#b91c1c', dash: [4, 4] },
    ],
  },
  {
    key: 'defect-rate',
    title: 'Defect rate',
    unit: '%',
    series: [
      { label: 'defect rate %', value: (p) => pct(m(p)?.defectRate), stroke: '#dc2626' },
      { label: 'reference %', value: (p) => pct(m(p)?.defectRateReference), stroke: '#6b7280', dash: [6, 4] },
    ],
  },
];

/** A point with at least one monitor figure (none while the reference is collected). */
const hasFigures = (p: Point) => p.monitor !== null && Object.values(p.monitor).some((v) => v !== null);

type Figures = NonNullable<NonNullable<EdgeView['telemetry']>['monitor']>;

/** One figure's row: now, its reference, and the alarm that watches it. */
function Row({ name, now, reference, unit = '', alarm, alarms }: { name: string; now: string; reference: string; unit?: string; alarm: string; alarms: string[] }) {
  const raised = alarms.includes(alarm);
  return (
    <tr data-figure={name} class={raised ? 'raised' : ''}>
      <th scope="row">{name}</th>
      <td class="num">
        {now}
        {now !== '–' && unit}
      </td>
      <td class="num">
        {reference}
        {reference !== '–' && unit}
      </td>
      <td>{raised ? <span class="alarm raised">{alarm}</span> : <span class="muted">{alarm}</span>}</td>
    </tr>
  );
}

function FigureTable({ f, alarms }: { f: Figures; alarms: string[] }) {
  const shift = f.shiftX === undefined && f.shiftY === undefined ? '–' : `x ${num(pct(f.shiftX), 2)} · y ${num(pct(f.shiftY), 2)}`;
  return (
    <table class="monitor-figures">
      <thead>
        <tr>
          <th>Figure</th>
          <th class="num">Now</th>
          <th class="num">Reference</th>
          <th>Alarm</th>
        </tr>
      </thead>
      <tbody>
        <Row name="Brightness" now={num(f.brightness)} reference={num(f.brightnessReference)} alarm="image-brightness" alarms={alarms} />
        <Row name="Contrast" now={num(f.contrast, 2)} reference={num(f.contrastReference, 2)} alarm="image-contrast" alarms={alarms} />
        <Row name="Sharpness" now={num(f.sharpness, 0)} reference={num(f.sharpnessReference, 0)} alarm="image-blur" alarms={alarms} />
        <Row name="Camera shift" now={shift} reference={shift === '–' ? '–' : f.shiftLimit !== undefined ? `0 · limit ±${num(pct(f.shiftLimit), 1)}` : '0'} unit=" %" alarm="camera-shift" alarms={alarms} />
        <Row name="Score PSI" now={num(f.scorePsi, 3)} reference={`limit ${f.psiLimit ?? DEFAULT_PSI_LIMIT}`} alarm="score-drift" alarms={alarms} />
        <Row name="Defect rate" now={num(pct(f.defectRate), 2)} reference={num(pct(f.defectRateReference), 2)} unit=" %" alarm="defect-rate-spike" alarms={alarms} />
      </tbody>
    </table>
  );
}

const PHASES: Record<Figures['phase'], string> = {
  off: 'off',
  reference: 'collecting the reference',
  watching: 'watching every frame',
};

/** The "Image health" section; `points` are the telemetry charts' (null while they load). */
export function ImageHealth({ edge, points }: { edge: EdgeView; points: Point[] | null }) {
  const f = edge.telemetry?.monitor;
  const alarms = edge.telemetry?.alarms ?? [];
  const raised = MONITOR_ALARMS.filter(([a]) => alarms.includes(a));
  return (
    <section class="edge-monitor" data-phase={f?.phase ?? 'none'}>
      <h2>
        Image health <span class="muted">and score drift, same span as the telemetry</span>
      </h2>
      {!f ? (
        <p class="muted">{edge.telemetry ? 'The edge reports no image health figures (an agent without the monitor).' : 'No telemetry yet.'}</p>
      ) : (
        <div class="monitor-now">
          <div>
            <p class="monitor-state">
              <span class={`phase phase-${f.phase}`}>{PHASES[f.phase]}</span>
              {f.model && <span> · model {f.model}</span>}
              <span class="muted">
                {' '}
                · {num(f.frames, 0)} frames measured, {num(f.referenceFrames, 0)} in the image reference
                {f.scoreReference && `; scores against ${f.scoreReference === 'calibration' ? 'the calibration data' : 'the first frames'}`}
                {f.checkMs !== undefined && `; checks ${num(f.checkMs, 3)} ms/frame`}
              </span>
            </p>
            <FigureTable f={f} alarms={alarms} />
          </div>
          <ul class="monitor-alarms" aria-label="Monitor alarms">
            {MONITOR_ALARMS.map(([alarm, meaning]) => (
              <li key={alarm} data-alarm={alarm} class={alarms.includes(alarm) ? 'raised' : 'clear'}>
                <strong>{alarm}</strong> <span>{alarms.includes(alarm) ? `raised: ${meaning}` : 'clear'}</span>
              </li>
            ))}
            <li class="summary">{raised.length === 0 ? 'No monitor alarm in force.' : `${raised.length} in force.`}</li>
          </ul>
        </div>
      )}
      {points !== null &&
        (points.some(hasFigures) ? (
          <div class="chart-grid">
            {charts(f?.psiLimit ?? DEFAULT_PSI_LIMIT).map((c) => (
              <TimeChart key={`${c.key}:${f?.psiLimit ?? DEFAULT_PSI_LIMIT}`} spec={c} points={points} />
            ))}
          </div>
        ) : (
          f && <p class="muted no-monitor-charts">No figures to chart yet{f.phase === 'reference' ? ': the monitor is collecting its reference' : ''}.</p>
        ))}
    </section>
  );
}
