/**
 * An edge's latest results (`GET /api/results?edge=`), each with its kept image
 * (`GET /api/results/:edge/:seq/image`) and the model's detection boxes drawn over it in SVG,
 * scaled from the image's own pixels, and an anomaly model's heatmap as a see-through overlay
 * (result-image.tsx; a toggle hides the heatmaps, a legend reads their colours). Re-read when the
 * fleet stores more of the edge's results (its ack moves on the event stream).
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, EdgeView } from './api.js';
import { clock, num } from './format.js';
import { HeatmapLegend, ResultImage } from './result-image.js';
import { ExplainControls, useExplain } from './explain.js';

export interface ResultView {
  edgeId: string;
  seq: number;
  ts: number;
  storeId?: string;
  camera: string;
  model: string;
  verdict: 'ok' | 'defect';
  label: string;
  score: number;
  latencyMs: number;
  detections?: { label: string; score: number; box: [number, number, number, number] }[];
  hasImage: boolean;
  hasHeatmap?: boolean;
}

const SHOWN = 8;

/** The latest results of the edge; `onLabels` hears the defect labels they carry. */
export function EdgeResults({ api, edge, onLabels }: { api: Api; edge: EdgeView; onLabels: (labels: string[]) => void }) {
  const [items, setItems] = useState<ResultView[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [heatmaps, setHeatmaps] = useState(true);
  useEffect(() => {
    let gone = false;
    api.get<{ items: ResultView[] }>(`/api/results?edge=${encodeURIComponent(edge.id)}&limit=${SHOWN}`).then(
      (r) => {
        if (gone) return;
        setItems(r.items);
        setError(null);
        onLabels([...new Set(r.items.flatMap((i) => [...(i.verdict === 'defect' ? [i.label] : []), ...(i.detections ?? []).map((d) => d.label)]))]);
      },
      (err: Error) => !gone && setError(err.message),
    );
    return () => {
      gone = true;
    };
  }, [api, edge.id, edge.ackedSeq]);
  return (
    <section class="edge-results">
      <h2>Recent results</h2>
      {error && <p class="error">{error}</p>}
      {items && items.length === 0 && <p class="muted">No results stored yet.</p>}
      {items && items.some((r) => r.hasImage && r.hasHeatmap) && (
        <div class="heatmap-controls">
          <label>
            <input type="checkbox" checked={heatmaps} onChange={(e) => setHeatmaps((e.target as HTMLInputElement).checked)} /> Show anomaly heatmaps
          </label>
          {heatmaps && <HeatmapLegend />}
        </div>
      )}
      {items && items.some((r) => r.hasImage) && (
        <div class="result-grid">
          {items
            .filter((r) => r.hasImage)
            .map((r) => (
              <ResultFigure key={`${r.storeId ?? ''}-${r.seq}`} api={api} r={r} heatmaps={heatmaps} />
            ))}
        </div>
      )}
      {items && items.some((r) => !r.hasImage) && (
        <table class="results-without-image">
          <thead>
            <tr>
              <th>Result</th>
              <th>Verdict</th>
              <th>Label</th>
              <th class="num">Score</th>
              <th>Camera</th>
              <th>When</th>
              <th>Image</th>
            </tr>
          </thead>
          <tbody>
            {items
              .filter((r) => !r.hasImage)
              .map((r) => (
                <tr key={`${r.storeId ?? ''}-${r.seq}`} data-seq={r.seq} data-verdict={r.verdict}>
                  <td>#{r.seq}</td>
                  <td class={`verdict ${r.verdict}`}>{r.verdict}</td>
                  <td>{r.label}</td>
                  <td class="num">{num(r.score, 3)}</td>
                  <td>{r.camera}</td>
                  <td class="seen">{clock(r.ts)}</td>
                  <td class="muted">not kept</td>
                </tr>
              ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

/** One kept result: its image with what the model saw, its call, and Explain for a classifier. */
function ResultFigure({ api, r, heatmaps }: { api: Api; r: ResultView; heatmaps: boolean }) {
  const ex = useExplain(api, r);
  return (
    <figure class={`result ${r.verdict}`} data-seq={r.seq} data-verdict={r.verdict}>
      <ResultImage result={r} showHeatmap={heatmaps} occlusion={ex.overlay?.url ?? null} />
      <figcaption>
        <strong class={`verdict ${r.verdict}`}>{r.verdict}</strong> {r.label} · {num(r.score, 3)}
        <br />
        <span class="muted">
          #{r.seq} · {r.camera} · {clock(r.ts)}
        </span>
        <ExplainControls ex={ex} />
      </figcaption>
    </figure>
  );
}
