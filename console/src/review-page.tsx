/**
 * Review (inspectors): the line's queue of defect and uncertain frames, one large frame at a time
 * with the model's boxes, call, score and threshold; one key per verdict (C confirm, F false call,
 * M missed defect, L label, U or ← undo), big buttons for a tablet. The next frames are preloaded,
 * reviews are sent in order in the background, and the line's accuracy panel follows them.
 */
import { HeatmapCanvas } from './result-image.js';
import { ExplainControls, useExplain } from './explain.js';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Api, SessionInfo } from './api.js';
import type { Fleet } from './live.js';
import type { QueueItem, ReviewVerdict } from '../../fleet-manager/review-schemas.js';
import { AccuracyPanel } from './accuracy-panel.js';
import { clock, num } from './format.js';

const keyOf = (i: QueueItem) => `${i.edgeId}/${i.storeId ?? ''}/${i.seq}`;
const reviewUrl = (i: QueueItem) => `/api/results/${encodeURIComponent(i.edgeId)}/${i.seq}/review${i.storeId ? `?store=${encodeURIComponent(i.storeId)}` : ''}`;
/** Refill the queue when fewer than this many frames are left. */
const LOW_WATER = 5;
const BATCH = 30;
const PRELOAD = 2;

interface Done {
  item: QueueItem;
  review: ReviewVerdict;
  label?: string;
}

export function ReviewPage({ api, session, fleet, line: chosen }: { api: Api; session: SessionInfo; fleet: Fleet; line: string | null }) {
  const lines = useMemo(() => [...new Set([...(fleet.edges?.values() ?? [])].map((e) => e.line).filter((l): l is string => !!l))].sort(), [fleet.edges]);
  const line = chosen ?? lines[0] ?? null;
  const [order, setOrder] = useState<Order>('newest');
  if (!fleet.edges) return <p class="loading">Loading the fleet…</p>;
  if (!session.permissions.includes('results:read')) return <p class="empty">Your role cannot see result images, so it has no review queue.</p>;
  if (!line) return <p class="empty">No line has reported yet: nothing to review.</p>;
  return <LineReview key={`${line}|${order}`} api={api} session={session} fleet={fleet} line={line} lines={lines} order={order} setOrder={setOrder} />;
}

type Order = 'newest' | 'uncertain';

function LineReview(props: { api: Api; session: SessionInfo; fleet: Fleet; line: string; lines: string[]; order: Order; setOrder: (o: Order) => void }) {
  const { api, session, fleet, line, lines, order } = props;
  const canReview = session.permissions.includes('results:review');
  const [items, setItems] = useState<QueueItem[]>([]);
  const [done, setDone] = useState<Done[]>([]);
  const [loading, setLoading] = useState(true);
  // The line's stored-results count when the queue last came back with nothing new; null: not exhausted.
  const [exhaustedAt, setExhaustedAt] = useState<number | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [picking, setPicking] = useState(false);
  const [accVersion, setAccVersion] = useState(0);
  const [format, setFormat] = useState<'imagefolder' | 'yolo' | 'coco'>('imagefolder');
  // Reviews and undos go out one after another, in the order they were given.
  const chain = useRef<Promise<unknown>>(Promise.resolve());
  const send = (fn: () => Promise<unknown>, undoLocally: () => void) => {
    chain.current = chain.current.then(fn).then(
      () => setAccVersion((v) => v + 1),
      (err: Error) => {
        setMessage(`Not saved: ${err.message}`);
        undoLocally();
      },
    );
  };

  // New results on the line (the event stream moves the edges' stored seqs): an empty queue looks again.
  const lineSeq = [...(fleet.edges?.values() ?? [])].filter((e) => e.line === line).reduce((n, e) => n + e.ackedSeq, 0);
  const current = items[0];
  const fetching = useRef(false);
  const mounted = useRef(true);
  useEffect(() => () => void (mounted.current = false), []);
  useEffect(() => {
    if (fetching.current || items.length >= LOW_WATER || exhaustedAt === lineSeq) return;
    fetching.current = true;
    const seen = new Set([...items, ...done.map((d) => d.item)].map(keyOf));
    const asked = lineSeq;
    api
      .get<{ items: QueueItem[] }>(`/api/review/queue?line=${encodeURIComponent(line)}&limit=${BATCH}&order=${order}`)
      .then(
        (q) => {
          if (!mounted.current) return;
          const fresh = q.items.filter((i) => !seen.has(keyOf(i)));
          setExhaustedAt(fresh.length === 0 ? asked : null);
          if (fresh.length > 0) setItems((old) => [...old, ...fresh.filter((i) => !old.some((o) => keyOf(o) === keyOf(i)))]);
        },
        (err: Error) => {
          if (!mounted.current) return;
          setMessage(err.message);
          setExhaustedAt(asked);
        },
      )
      .finally(() => {
        fetching.current = false;
        if (mounted.current) setLoading(false);
      });
  }, [api, line, items.length, lineSeq, exhaustedAt]);

  // The next frames load while this one is looked at.
  useEffect(() => {
    for (const next of items.slice(1, 1 + PRELOAD)) new Image().src = next.image;
  }, [items[1] && keyOf(items[1])]);

  const applies = (i: QueueItem, r: ReviewVerdict) => (r === 'false-call' ? i.verdict === 'defect' : r === 'missed-defect' ? i.verdict === 'ok' : true);
  const act = (r: ReviewVerdict, label?: string) => {
    if (!canReview || !current) return;
    if (!applies(current, r)) {
      setMessage(r === 'false-call' ? 'False call is for a defect call; this frame was called ok (M marks a missed defect).' : 'Missed defect is for an ok call; this frame was called defect (F marks a false call).');
      return;
    }
    setMessage(null);
    setPicking(false);
    setItems((old) => old.slice(1));
    setDone((d) => [...d, { item: current, review: r, ...(label !== undefined && { label }) }]);
    const item = current;
    // Refused: the frame goes back to the front of the queue, unreviewed.
    send(
      () => api.put(reviewUrl(item), { review: r, ...(label !== undefined && { label }) }),
      () => {
        setDone((d) => d.filter((x) => x.item !== item));
        setItems((old) => [item, ...old.filter((o) => keyOf(o) !== keyOf(item))]);
      },
    );
  };
  const undo = () => {
    const last = done[done.length - 1];
    if (!canReview || !last) return;
    setMessage(null);
    setPicking(false);
    setDone((d) => d.slice(0, -1));
    setItems((old) => [last.item, ...old]);
    // Refused: the review stands, so the frame leaves the queue again.
    send(
      () => api.del(reviewUrl(last.item)),
      () => {
        setItems((old) => old.filter((o) => keyOf(o) !== keyOf(last.item)));
        setDone((d) => [...d, last]);
      },
    );
  };
  const labels = current ? pickable(current, items) : [];

  // The key handler reads this render's state through a ref set while rendering: an effect would
  // re-register it only after paint, and a key pressed as the next frame appears would act on the
  // frame before it.
  const live = useRef({ picking, labels, current, canReview, act, undo });
  live.current = { picking, labels, current, canReview, act, undo };
  useEffect(() => {
    const onKey = (ev: KeyboardEvent) => {
      const { picking, labels, current, canReview, act, undo } = live.current;
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      const tag = (ev.target as HTMLElement | null)?.tagName;
      if (tag === 'INPUT' || tag === 'SELECT' || tag === 'TEXTAREA') return;
      const k = ev.key.toLowerCase();
      if (picking) {
        const n = Number(k);
        if (Number.isInteger(n) && n >= 1 && n <= labels.length) act('relabelled', labels[n - 1]);
        else if (k === 'escape' || k === 'l') setPicking(false);
        else return;
      } else if (k === 'c') act('confirmed');
      else if (k === 'f') act('false-call');
      else if (k === 'm') act('missed-defect');
      else if (k === 'l' && canReview && current) setPicking(true);
      else if (k === 'u' || k === 'arrowleft' || k === 'backspace') undo();
      else return;
      ev.preventDefault();
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, []);

  const exportUrl = `/api/datasets/export?line=${encodeURIComponent(line)}&format=${format}`;
  return (
    <section class="review-page" data-line={line}>
      <div class="review-head">
        <h1>Review</h1>
        <label>
          Line{' '}
          <select value={line} onChange={(e) => (location.hash = `#/review/${encodeURIComponent((e.target as HTMLSelectElement).value)}`)} data-testid="review-line">
            {lines.map((l) => (
              <option key={l} value={l}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <label>
          Order{' '}
          <select value={order} onChange={(e) => props.setOrder((e.target as HTMLSelectElement).value as Order)} data-testid="review-order">
            <option value="newest">Newest first</option>
            <option value="uncertain">Most uncertain first</option>
          </select>
        </label>
        <span class="count" data-testid="review-left">
          {items.length}
          {exhaustedAt === null ? '+' : ''} to review
        </span>
        <span class="count" data-testid="review-done">
          {done.length} reviewed now
        </span>
        <span class="review-export">
          <select value={format} onChange={(e) => setFormat((e.target as HTMLSelectElement).value as typeof format)} aria-label="Export format">
            <option value="imagefolder">ImageFolder</option>
            <option value="yolo">YOLO</option>
            <option value="coco">COCO</option>
          </select>
          <a class="button" href={exportUrl} download data-testid="export">
            Export reviewed images
          </a>
        </span>
      </div>
      {message && (
        <p class="review-message" role="status">
          {message}
        </p>
      )}
      <div class="review-body">
        {current ? <Frame api={api} item={current} /> : <p class="empty review-empty">{loading ? 'Loading the queue…' : 'Nothing left to review on this line. New frames appear here as they arrive.'}</p>}
        <aside class="review-side">
          {current && <Call item={current} />}
          {canReview && current && (
            <div class="review-actions" data-testid="review-actions">
              <button type="button" class="act confirm" onClick={() => act('confirmed')}>
                <kbd>C</kbd> Confirm
              </button>
              <button type="button" class="act false-call" disabled={!applies(current, 'false-call')} onClick={() => act('false-call')}>
                <kbd>F</kbd> False call
              </button>
              <button type="button" class="act missed" disabled={!applies(current, 'missed-defect')} onClick={() => act('missed-defect')}>
                <kbd>M</kbd> Missed defect
              </button>
              <button type="button" class="act label" onClick={() => setPicking(!picking)} aria-expanded={picking}>
                <kbd>L</kbd> Set label
              </button>
              <button type="button" class="act undo" disabled={done.length === 0} onClick={undo}>
                <kbd>U</kbd> Undo
              </button>
              {picking && (
                <div class="label-picker" role="listbox" aria-label="Label">
                  {labels.length === 0 && <span class="muted">The model has no other label.</span>}
                  {labels.map((l, i) => (
                    <button type="button" key={l} class="act pick" onClick={() => act('relabelled', l)}>
                      <kbd>{i + 1}</kbd> {l}
                    </button>
                  ))}
                </div>
              )}
            </div>
          )}
          {!canReview && <p class="muted">Your role can look at the queue; reviewing needs the inspector role.</p>}
          <AccuracyPanel api={api} line={line} version={accVersion} compact />
        </aside>
      </div>
    </section>
  );
}

/** Labels a frame can be given: the model's, else those seen in the queue, never its own. */
function pickable(item: QueueItem, items: QueueItem[]): string[] {
  const known = item.labels.length > 0 ? item.labels : [...new Set(items.map((i) => i.label))];
  return known.filter((l) => l !== item.label).slice(0, 9);
}

/** The frame, as large as the screen allows, with the model's anomaly heatmap and boxes drawn over it. */
function Frame({ api, item }: { api: Api; item: QueueItem }) {
  const ex = useExplain(api, item);
  // Keyed by the image, so a frame never takes the previous frame's size.
  const [loaded, setLoaded] = useState<{ src: string; w: number; h: number } | null>(null);
  const size = loaded?.src === item.image ? loaded : null;
  // Box labels in image pixels, so they keep their size on screen whatever the image's.
  const fontSize = size ? Math.max(size.w, size.h) / 40 : 12;
  return (
    <figure class="frame" data-testid="frame" data-key={keyOf(item)}>
      {/* Once the size is known the box takes the image's aspect ratio, as large as the screen allows, so the boxes' viewBox matches the pixels. */}
      <div class={`frame-box ${size ? 'sized' : ''}`} style={size ? { width: `min(100%, calc(var(--frame-h) * ${size.w / size.h}))`, aspectRatio: `${size.w} / ${size.h}` } : {}}>
        <img
          src={item.image}
          alt={`frame ${item.seq} of ${item.edgeId}`}
          onLoad={(e) => {
            const img = e.currentTarget as HTMLImageElement;
            setLoaded({ src: item.image, w: img.naturalWidth, h: img.naturalHeight });
          }}
        />
        {size && item.heatmap && <HeatmapCanvas src={item.heatmap} />}
        {size && ex.overlay && <HeatmapCanvas key={ex.overlay.url} src={ex.overlay.url} label="occlusion map" />}
        {size && item.detections && item.detections.length > 0 && (
          <svg class="boxes" viewBox={`0 0 ${size.w} ${size.h}`} preserveAspectRatio="none" data-testid="boxes">
            {item.detections.map((d, i) => (
              <g key={i}>
                <rect x={d.box[0]} y={d.box[1]} width={d.box[2] - d.box[0]} height={d.box[3] - d.box[1]} vector-effect="non-scaling-stroke" />
                <text x={d.box[0]} y={Math.max(d.box[1] - fontSize / 3, fontSize)} font-size={fontSize}>
                  {d.label} {num(d.score, 2)}
                </text>
              </g>
            ))}
          </svg>
        )}
      </div>
      <figcaption class="muted">
        {item.edgeId} · {item.camera} · seq {item.seq} · {clock(item.ts)} <ExplainControls ex={ex} />
      </figcaption>
    </figure>
  );
}

/** The model's call: verdict, label, score against the threshold. */
function Call({ item }: { item: QueueItem }) {
  const share = Math.min(1, Math.max(0, item.score));
  return (
    <dl class="facts call" data-testid="call">
      <dt>Model</dt>
      <dd class="model">{item.model}</dd>
      <dt>Call</dt>
      <dd>
        <span class={`verdict ${item.verdict}`}>{item.verdict === 'defect' ? 'Defect' : 'OK'}</span> {item.label}
        {item.uncertain && <span class="uncertain"> uncertain</span>}
      </dd>
      <dt>Score</dt>
      <dd>
        {num(item.score, 3)} <span class="muted">(threshold {num(item.threshold, 3)})</span>
        <span class="score-bar" aria-hidden="true">
          <span class="score-fill" style={{ width: `${share * 100}%` }} />
          <span class="score-mark" style={{ left: `${item.threshold * 100}%` }} />
        </span>
      </dd>
    </dl>
  );
}
