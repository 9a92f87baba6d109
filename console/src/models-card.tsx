/**
 * One model version and its model card: data, backbone, method, operating point, validation
 * figures (AUROC or accuracy), the false-reject / catch-rate curve (uPlot) with the operating
 * point marked, the confusion matrix as a grid, search trials, and the golden set.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import uPlot from 'uplot';
import type { Api } from './api.js';
import { bytes, clock, num } from './format.js';
import { enc, pct, Problem, signatureText, type Json, type VersionView } from './models-shared.js';

export function VersionPage({ api, name, version }: { api: Api; name: string; version: string }) {
  const [v, setV] = useState<VersionView | null>(null);
  const [card, setCard] = useState<Json | null | undefined>(undefined);
  const [golden, setGolden] = useState<Json | null | undefined>(undefined);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const base = `/api/models/${enc(name)}/versions/${enc(version)}`;
    // The card and the golden set are asked for only where the package says it has them
    // (a trainer's manifest names its card; the card or manifest names a golden set).
    api.get<VersionView>(base).then(
      async (view) => {
        setV(view);
        const meta = (view.manifest.metadata ?? {}) as Json;
        const c = meta.modelCard ? await api.get<Json>(`${base}/card`).catch(() => null) : null;
        setCard(c);
        setGolden(c?.goldenSet || meta.golden ? await api.get<Json>(`${base}/golden`).catch(() => null) : null);
      },
      (err: Error) => setError(err.message),
    );
  }, [api, name, version]);
  return (
    <section class="models-page version-page" data-version={`${name}@${version}`}>
      <p class="crumbs">
        <a href="#/models">Models</a> › {name} › {version}
      </p>
      <h1>
        {name}@{version}
      </h1>
      <Problem text={error} />
      {v && (
        <dl class="facts">
          <dt>Task</dt>
          <dd>{v.task}</dd>
          <dt>Size</dt>
          <dd>{bytes(v.size)}</dd>
          <dt>Registered</dt>
          <dd>{clock(v.createdAt)}</dd>
          <dt>Uploaded by</dt>
          <dd>{v.uploadedBy ?? '–'}</dd>
          <dt>Trained / packed by</dt>
          <dd>{v.trainedBy ?? '–'}</dd>
          <dt>Signature</dt>
          <dd>{signatureText(v)}</dd>
          <dt>sha256</dt>
          <dd class="mono">{v.sha256}</dd>
          <dt>Input</dt>
          <dd>
            {v.manifest.input.width}×{v.manifest.input.height} {v.manifest.input.color}, {v.manifest.input.resize}
          </dd>
          <dt>Labels</dt>
          <dd>{(v.manifest.labels as string[]).join(', ') || '–'}</dd>
        </dl>
      )}
      {card === null && <p class="muted">No model card: this version was not made by osprey train.</p>}
      {card && <ModelCard card={card} />}
      {golden && <Golden golden={golden} />}
    </section>
  );
}

function ModelCard({ card }: { card: Json }) {
  const val = card.validation as Json | undefined;
  const trials = (card.search?.trials ?? card.trials) as Json[] | undefined;
  return (
    <section class="card" data-testid="model-card">
      <h2>Model card</h2>
      <div class="panels">
        <dl class="facts">
          <dt>Data</dt>
          <dd>
            {Object.entries((card.data ?? {}) as Json)
              .filter(([k, n]) => typeof n === 'number' || (k === 'perLabel' && n))
              .map(([k, n]) => (k === 'perLabel' ? Object.entries(n as Json).map(([l, c]) => `${l}: ${c}`).join(', ') : `${n} ${k.replace(/([A-Z])/g, ' $1').toLowerCase()}`))
              .join(' · ') || '–'}
          </dd>
          <dt>Backbone</dt>
          <dd>
            {backboneName(card.backbone as Json | undefined)} <span class="muted mono">sha256 {String(card.backbone?.sha256 ?? '–').slice(0, 12)}…</span>
            {Array.isArray(card.backbone?.taps) && <span class="muted"> · {card.backbone.taps.length} feature {card.backbone.taps.length === 1 ? 'tap' : 'taps'}</span>}
          </dd>
          <dt>Method</dt>
          <dd>{card.method?.name ?? '–'}</dd>
          <dt>Hyper-parameters</dt>
          <dd class="mono small">
            {Object.entries((card.method?.hyperParameters ?? {}) as Json)
              .map(([k, x]) => `${k}=${typeof x === 'object' ? JSON.stringify(x) : String(x)}`)
              .join(' ')}
          </dd>
          {card.operatingPoint && (
            <>
              <dt>Operating point</dt>
              <dd>
                {card.operatingPoint.name} (p{card.operatingPoint.percentile} of calibration scores, raw threshold {num(card.operatingPoint.rawThreshold, 4)})
              </dd>
            </>
          )}
          <dt>Made</dt>
          <dd>
            {typeof card.createdAt === 'string' ? clock(Date.parse(card.createdAt)) : '–'} by {card.createdBy ?? '–'} with {card.tool?.name} {card.tool?.version}, {num(card.timing?.trainSeconds)} s
          </dd>
        </dl>
        <dl class="facts validation" data-testid="validation">
          <dt>Validation</dt>
          <dd>{val ? (val.goodSource ?? val.split ?? '–') : 'none (no defect or held-out images)'}</dd>
          {val?.auroc !== undefined && (
            <>
              <dt>AUROC</dt>
              <dd class="figure">{pct(val.auroc)}</dd>
              <dt>Images</dt>
              <dd>
                {val.goodImages} good, {val.defectImages} defect
              </dd>
              <dt>At the operating point</dt>
              <dd>
                false rejects {pct(val.atOperatingPoint?.falseRejectRate)}, caught {pct(val.atOperatingPoint?.catchRate)}
              </dd>
            </>
          )}
          {val?.accuracy !== undefined && (
            <>
              <dt>Accuracy</dt>
              <dd class="figure">{pct(val.accuracy)}</dd>
              <dt>Images</dt>
              <dd>{val.images} held out</dd>
            </>
          )}
        </dl>
      </div>
      {Array.isArray(val?.curve) && <RateCurve curve={val!.curve as Json[]} operating={card.operatingPoint?.percentile as number | undefined} />}
      {val?.confusion && <Confusion confusion={val.confusion as Json} />}
      {trials && trials.length > 0 && <Trials trials={trials} />}
    </section>
  );
}

/** The backbone's file name, unless the fleet stores it by its hash (then the hash says it). */
function backboneName(b: Json | undefined): string {
  const file = String(b?.file ?? '').split('/').pop() ?? '';
  if (!file) return '–';
  return b?.sha256 && String(b.sha256).startsWith(file.replace(/\.onnx$/, '').slice(0, 12)) ? '' : file;
}

/** False-reject and catch rates against the threshold (a percentile of the calibration scores), the operating point marked. */
function RateCurve({ curve, operating }: { curve: Json[]; operating: number | undefined }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current!;
    const xs = curve.map((p) => p.percentile as number);
    const data: uPlot.AlignedData = [xs, curve.map((p) => (p.falseRejectRate as number) * 100), curve.map((p) => (p.catchRate as number) * 100)];
    const mark: uPlot.Plugin = {
      hooks: {
        draw: (u) => {
          if (operating === undefined) return;
          const x = u.valToPos(operating, 'x', true);
          const ctx = u.ctx;
          ctx.save();
          ctx.strokeStyle = '#111827';
          ctx.setLineDash([4, 4]);
          ctx.lineWidth = 1.5 * devicePixelRatio;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
          ctx.setLineDash([]);
          ctx.fillStyle = '#111827';
          ctx.font = `${12 * devicePixelRatio}px system-ui, sans-serif`;
          ctx.fillText(`operating point p${operating}`, x + 6 * devicePixelRatio, u.bbox.top + 14 * devicePixelRatio);
          ctx.restore();
        },
      },
    };
    const plot = new uPlot(
      {
        width: el.clientWidth || 800,
        height: 260,
        plugins: [mark],
        series: [
          { label: 'threshold (percentile)', value: (_u, v) => (v === null ? '–' : `p${v}`) },
          { label: 'false rejects %', stroke: '#b91c1c', width: 2, points: { show: true, size: 6 }, value: (_u, v) => (v === null ? '–' : `${v.toFixed(1)} %`) },
          { label: 'caught %', stroke: '#15803d', width: 2, points: { show: true, size: 6 }, value: (_u, v) => (v === null ? '–' : `${v.toFixed(1)} %`) },
        ],
        axes: [
          { label: 'threshold: percentile of the good images\' calibration scores', values: (_u, ticks) => ticks.map((t) => `p${t}`) },
          { label: '% of images', values: (_u, ticks) => ticks.map((t) => `${t} %`) },
        ],
        scales: { x: { time: false, range: [50, 100] }, y: { range: [0, 100] } },
      },
      data,
      el,
    );
    const resize = () => plot.setSize({ width: el.clientWidth, height: 260 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.destroy();
    };
  }, [curve, operating]);
  return (
    <figure class="chart curve" data-testid="rate-curve">
      <figcaption>False rejects and catch rate by threshold (validation images)</figcaption>
      <div ref={box} />
    </figure>
  );
}

function Confusion({ confusion }: { confusion: Json }) {
  const labels = confusion.labels as string[];
  const matrix = confusion.matrix as number[][];
  const max = Math.max(1, ...matrix.flat());
  return (
    <figure class="confusion" data-testid="confusion">
      <figcaption>Confusion matrix (rows: true label, columns: predicted)</figcaption>
      <table>
        <thead>
          <tr>
            <th />
            {labels.map((l) => (
              <th key={l}>{l}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {matrix.map((row, i) => (
            <tr key={labels[i]}>
              <th>{labels[i]}</th>
              {row.map((n, j) => (
                <td key={j} class={i === j ? 'diag' : n > 0 ? 'miss' : ''} style={{ '--a': String(n / max) }}>
                  {n}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

function Trials({ trials }: { trials: Json[] }) {
  const keys = [...new Set(trials.flatMap((t) => Object.keys(t)))].slice(0, 8);
  return (
    <figure class="trials">
      <figcaption>Search trials</figcaption>
      <table>
        <thead>
          <tr>
            {keys.map((k) => (
              <th key={k}>{k}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {trials.map((t, i) => (
            <tr key={i}>
              {keys.map((k) => (
                <td key={k}>{typeof t[k] === 'number' ? num(t[k] as number, 4) : typeof t[k] === 'object' ? JSON.stringify(t[k]) : String(t[k] ?? '–')}</td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}

function Golden({ golden }: { golden: Json }) {
  const items = (golden.images ?? []) as Json[];
  return (
    <section class="panel golden" data-testid="golden">
      <h2>Golden set</h2>
      <p class="muted">
        {Array.isArray(items) ? `${items.length} images with their expected answers` : 'present'}
        {typeof golden.expectedAccuracy === 'number' ? ` (expected accuracy ${pct(golden.expectedAccuracy)})` : ''}; training images kept with the package's own answers, for the edges' golden-set self-test.
      </p>
      {Array.isArray(items) && items.length > 0 && (
        <table>
          <thead>
            <tr>
              <th>Image</th>
              <th>Truth</th>
              <th>Expected answer</th>
            </tr>
          </thead>
          <tbody>
            {items.slice(0, 20).map((g, i) => (
              <tr key={i}>
                <td class="mono">{String(g.source ?? g.file ?? i)}</td>
                <td>{String(g.truth?.verdict ?? g.truth?.label ?? '–')}</td>
                <td>
                  {String(g.expected?.verdict ?? '')} {String(g.expected?.label ?? '')} {typeof g.expected?.score === 'number' ? num(g.expected.score, 3) : ''}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
