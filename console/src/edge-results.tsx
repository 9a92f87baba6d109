/**
 * An edge's latest results (`GET /api/results?edge=`), each with its kept image
 * (`GET /api/results/:edge/:seq/image`) and the model's detection boxes drawn over it in SVG,
 * scaled from the image's own pixels. Re-read when the fleet stores more of the edge's results
 * (its ack moves on the event stream).
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api, EdgeView } from './api.js';
import { clock, num } from './format.js';

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
}

const SHOWN = 8;

/** The latest results of the edge; `onLabels` hears the defect labels they carry. */
export function EdgeResults({ api, edge, onLabels }: { api: Api; edge: EdgeView; onLabels: (labels: string[]) => void }) {
  const [items, setItems] = useState<ResultView[] | null>(null);
  const [error, setError] = useState<string | null>(null);
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
      {items && items.some((r) => r.hasImage) && (
        <div class="result-grid">
          {items
            .filter((r) => r.hasImage)
            .map((r) => (
              <figure key={`${r.storeId ?? ''}-${r.seq}`} class={`result ${r.verdict}`} data-seq={r.seq} data-verdict={r.verdict}>
                <ResultImage result={r} />
                <figcaption>
                  <strong class={`verdict ${r.verdict}`}>{r.verdict}</strong> {r.label} · {num(r.score, 3)}
                  <br />
                  <span class="muted">
                    #{r.seq} · {r.camera} · {clock(r.ts)}
                  </span>
                </figcaption>
              </figure>
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

/** The result's image with its detection boxes over it (SVG in the image's pixel space). */
export function ResultImage({ result }: { result: ResultView }) {
  const [size, setSize] = useState<{ w: number; h: number } | null>(null);
  const src = `/api/results/${encodeURIComponent(result.edgeId)}/${result.seq}/image${result.storeId ? `?store=${encodeURIComponent(result.storeId)}` : ''}`;
  const boxes = result.detections ?? [];
  return (
    <div class="shot">
      <img src={src} alt={`result ${result.seq}: ${result.verdict} ${result.label}`} loading="lazy" onLoad={(e) => {
        const img = e.target as HTMLImageElement;
        setSize({ w: img.naturalWidth, h: img.naturalHeight });
      }} />
      {size && boxes.length > 0 && (
        <svg class="boxes" viewBox={`0 0 ${size.w} ${size.h}`} preserveAspectRatio="none" data-boxes={boxes.length}>
          {boxes.map((d, i) => {
            const [x1, y1, x2, y2] = d.box;
            const stroke = Math.max(1, size.w / 160);
            return (
              <g key={i} class="box">
                <rect x={x1} y={y1} width={Math.max(0, x2 - x1)} height={Math.max(0, y2 - y1)} stroke-width={stroke} />
                <text x={x1 + stroke} y={Math.max(y1 - stroke * 2, size.h / 18)} font-size={size.h / 16}>
                  {d.label} {num(d.score, 2)}
                </text>
              </g>
            );
          })}
        </svg>
      )}
    </div>
  );
}
