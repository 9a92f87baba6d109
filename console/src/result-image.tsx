/**
 * One result's kept image with what the model saw drawn over it, for any screen that shows
 * results (edge page, review): detection boxes in SVG in the image's own pixels, and an anomaly
 * model's heatmap (`GET /api/results/:edge/:seq/heatmap`) on a canvas stretched over the image.
 * The heatmap PNG is a jet colour ramp (blue = normal, red = anomalous, 0.5 = the threshold); each
 * pixel's opacity follows its value, so normal areas stay see-through and the anomaly glows.
 * A classifier's occlusion map (explain.tsx) is drawn the same way when the caller has one.
 */
import { useEffect, useRef, useState } from 'preact/hooks';
import { num } from './format.js';

/** What the component needs of a result (a subset of `GET /api/results` items). */
export interface ResultImageSource {
  edgeId: string;
  seq: number;
  storeId?: string;
  verdict: 'ok' | 'defect';
  label: string;
  detections?: { label: string; score: number; box: [number, number, number, number] }[];
  hasHeatmap?: boolean;
}

/** URL of a result's image or heatmap. */
export function resultFileUrl(r: Pick<ResultImageSource, 'edgeId' | 'seq' | 'storeId'>, kind: 'image' | 'heatmap'): string {
  return `/api/results/${encodeURIComponent(r.edgeId)}/${r.seq}/${kind}${r.storeId ? `?store=${encodeURIComponent(r.storeId)}` : ''}`;
}

/**
 * The jet value (0..1) of a colour from models/postprocess/heatmap.ts's ramp: its hue runs from
 * blue (240°) at 0.125 to red (0°) at 0.875; darker blue below, darker red above.
 */
export function jetValue(r: number, g: number, b: number): number {
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  if (max === 0) return 0;
  if (max === min) return 0.5;
  let hue: number;
  if (max === r) hue = (60 * (g - b)) / (max - min);
  else if (max === g) hue = 120 + (60 * (b - r)) / (max - min);
  else hue = 240 + (60 * (r - g)) / (max - min);
  hue = Math.min(240, Math.max(0, hue));
  let t = 0.125 + (0.75 * (240 - hue)) / 240;
  // The dark ends: the ramp's brightness falls off below 0.125 and above 0.875.
  if (hue >= 240) t = 0.125 * (max / 255 - 0.5) * 2;
  if (hue <= 0 && max < 255) t = 0.875 + 0.125 * (1 - (max / 255 - 0.5) * 2);
  return Math.min(1, Math.max(0, t));
}

/** Opacity of a heatmap pixel of value t: faint below the threshold's neighbourhood, strong above. */
export function heatAlpha(t: number): number {
  const s = Math.min(1, Math.max(0, (t - 0.3) / 0.4));
  return 0.08 + 0.62 * s * s * (3 - 2 * s);
}

/** The heatmap drawn onto a canvas with per-pixel opacity; the canvas is stretched over the image by CSS. */
export function HeatmapCanvas({ src, label = 'anomaly heatmap' }: { src: string; label?: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let gone = false;
    const img = new Image();
    img.onload = () => {
      const c = canvas.current;
      if (gone || !c) return;
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d');
      if (!ctx) return;
      ctx.drawImage(img, 0, 0);
      const px = ctx.getImageData(0, 0, c.width, c.height);
      const d = px.data;
      for (let i = 0; i < d.length; i += 4) d[i + 3] = Math.round(255 * heatAlpha(jetValue(d[i]!, d[i + 1]!, d[i + 2]!)));
      ctx.putImageData(px, 0, 0);
      c.dataset['drawn'] = 'true';
    };
    img.onerror = () => !gone && setFailed(true);
    img.src = src;
    return () => {
      gone = true;
    };
  }, [src]);
  if (failed) return null;
  return <canvas ref={canvas} class="heatmap" aria-label={label} />;
}

/** The colour scale of the heatmap overlay. */
export function HeatmapLegend() {
  return (
    <div class="heatmap-legend" aria-label="heatmap colour scale">
      <span>normal</span>
      <span class="heatmap-scale" title="anomaly map value: 0 (blue) to 1 (red); 0.5 is the model's threshold" />
      <span>anomalous</span>
      <span class="muted">(0 … 0.5 threshold … 1)</span>
    </div>
  );
}

/** The result's image with its detection boxes and, when shown, its anomaly heatmap (or `occlusion` map) over it. */
export function ResultImage({ result, showHeatmap = true, occlusion }: { result: ResultImageSource; showHeatmap?: boolean; occlusion?: string | null }) {
  const [size, setSize] = useState<{ w: number; h: number } | null>(null);
  const boxes = result.detections ?? [];
  return (
    <div class="shot" data-heatmap={result.hasHeatmap ? (showHeatmap ? 'shown' : 'hidden') : 'none'}>
      <img src={resultFileUrl(result, 'image')} alt={`result ${result.seq}: ${result.verdict} ${result.label}`} loading="lazy" onLoad={(e) => {
        const img = e.target as HTMLImageElement;
        setSize({ w: img.naturalWidth, h: img.naturalHeight });
      }} />
      {size && result.hasHeatmap && showHeatmap && <HeatmapCanvas src={resultFileUrl(result, 'heatmap')} />}
      {size && occlusion && <HeatmapCanvas key={occlusion} src={occlusion} label="occlusion map" />}
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
