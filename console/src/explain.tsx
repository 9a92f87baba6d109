/**
 * "Explain" for classifier results with a kept image (issue 17): asks the fleet for the result's
 * occlusion map (`POST /api/results/:edge/:seq/occlusion`; it runs the model that made the result
 * with each cell of an 8 × 8 grid greyed in turn) and draws it over the image like an anomaly
 * heatmap (result-image.tsx HeatmapCanvas): red where hiding the cell lowers the predicted label's
 * probability most. Whether a result's model is a classifier comes from the registry
 * (`GET /api/models`, then `GET /api/models/:name/versions` once per model).
 */
import { useEffect, useState } from 'preact/hooks';
import type { Api } from './api.js';
import { num } from './format.js';

/** The registry's model names, re-read at most every 30 s (a model registered later shows up). */
let names: { at: number; list: Promise<Set<string>> } | null = null;
/** Tasks of each registered version, by model name. */
const versions = new Map<string, Promise<Map<string, string>>>();

/**
 * Task of a model version (`name@version`), null where the registry does not have it: the list
 * first, so a model that only lives on an edge costs no refused request.
 */
export async function modelTask(api: Api, model: string): Promise<string | null> {
  const at = model.lastIndexOf('@');
  if (at <= 0) return null;
  const name = model.slice(0, at);
  if (!names || Date.now() - names.at > 30_000) {
    names = { at: Date.now(), list: api.get<{ models: { name: string }[] }>('/api/models').then((r) => new Set(r.models.map((m) => m.name)), () => new Set<string>()) };
  }
  if (!(await names.list).has(name)) return null;
  let v = versions.get(name);
  if (!v) {
    v = api.get<{ versions: { version: string; task: string }[] }>(`/api/models/${encodeURIComponent(name)}/versions`).then(
      (r) => new Map(r.versions.map((x) => [x.version, x.task])),
      () => new Map<string, string>(),
    );
    versions.set(name, v);
  }
  const task = (await v).get(model.slice(at + 1));
  if (task === undefined) versions.delete(name); // a version registered since: asked again next time
  return task ?? null;
}

/** The result an explanation is for. */
export interface ExplainTarget {
  edgeId: string;
  seq: number;
  storeId?: string | null;
  model: string;
  hasImage?: boolean;
}

export interface Explanation {
  /** A classifier result with an image: the button is shown. */
  available: boolean;
  busy: boolean;
  error: string | null;
  /** The occlusion map's URL once computed (drawn over the image), with what it follows. */
  overlay: { url: string; label: string; score: number } | null;
  explain(): void;
  hide(): void;
}

/** State of one result's explanation. */
export function useExplain(api: Api, target: ExplainTarget): Explanation {
  const [classifier, setClassifier] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [overlay, setOverlay] = useState<Explanation['overlay']>(null);
  const key = `${target.edgeId}/${target.storeId ?? ''}/${target.seq}`;
  useEffect(() => {
    let gone = false;
    setOverlay(null);
    setError(null);
    void modelTask(api, target.model).then((task) => !gone && setClassifier(task === 'classification'));
    return () => {
      gone = true;
    };
  }, [api, key, target.model]);
  return {
    available: classifier && target.hasImage !== false,
    busy,
    error,
    overlay,
    explain() {
      if (busy) return;
      setBusy(true);
      setError(null);
      const q = target.storeId ? `?store=${encodeURIComponent(target.storeId)}` : '';
      api.post<{ url: string; label: string; score: number; drops: number[] }>(`/api/results/${encodeURIComponent(target.edgeId)}/${target.seq}/occlusion${q}`).then(
        (r) => {
          setBusy(false);
          // Served with no-cache: a later computation that replaced it is fetched again, not an old copy.
          setOverlay({ url: r.url, label: r.label, score: r.score });
        },
        (err: Error) => {
          setBusy(false);
          setError(err.message);
        },
      );
    },
    hide() {
      setOverlay(null);
    },
  };
}

/** The button (and what came of it) for a result's caption. */
export function ExplainControls({ ex }: { ex: Explanation }) {
  if (!ex.available) return null;
  return (
    <span class="explain-controls">
      {ex.overlay ? (
        <button type="button" class="explain" onClick={() => ex.hide()} title="hide the occlusion map">
          Hide explanation
        </button>
      ) : (
        <button type="button" class="explain" disabled={ex.busy} onClick={() => ex.explain()} title="where the model looked: an occlusion map computed by the fleet">
          {ex.busy ? 'Explaining…' : 'Explain'}
        </button>
      )}
      {ex.overlay && (
        <span class="explain-note muted" data-testid="occlusion-note">
          red: hiding this area lowers p({ex.overlay.label}) = {num(ex.overlay.score, 2)} most
        </span>
      )}
      {ex.error && <span class="error">{ex.error}</span>}
    </span>
  );
}
