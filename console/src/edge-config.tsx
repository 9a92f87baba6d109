/**
 * An edge's configuration: the fleet, line and edge layers side by side with the effective value
 * and the layer it comes from (`GET /api/edges/:id/effective-config`), and, for those who may
 * write config, per-label threshold editing: validated, previewed against the edge's last 1000
 * verdicts (`POST /api/edges/:id/threshold-preview`) and then applied to the edge's own layer
 * (`PUT /api/edges/:id/config`). Whether the edge runs it shows when it reports its config version.
 */
import { useEffect, useState } from 'preact/hooks';
import { ApiError, type Api, type EdgeView, type SessionInfo } from './api.js';
import { num } from './format.js';

type Settings = {
  thresholds?: { default?: number; perLabel?: Record<string, number> };
  sampling?: { keepDefectImages?: boolean; uncertainBand?: number; keepGoodEvery?: number };
};
interface Effective {
  line: string | null;
  config: Settings;
  configVersion: number | null;
  reportedConfigVersion: number | null;
  layers: { fleet: Settings | null; line: Settings | null; edge: Settings | null };
}
interface Preview {
  label: string;
  threshold: number;
  current: number | null;
  considered: number;
  changed: number;
  toDefect: number;
  toOk: number;
}

const LAYERS = ['fleet', 'line', 'edge'] as const;

/** Every setting any layer names, as [title, read]. */
function rows(e: Effective): [string, (s: Settings | null) => unknown][] {
  const labels = new Set<string>();
  for (const s of [...LAYERS.map((l) => e.layers[l]), e.config]) for (const l of Object.keys(s?.thresholds?.perLabel ?? {})) labels.add(l);
  return [
    ['threshold (default)', (s) => s?.thresholds?.default],
    ...[...labels].sort().map((l): [string, (s: Settings | null) => unknown] => [`threshold: ${l}`, (s) => s?.thresholds?.perLabel?.[l]]),
    ['keep defect images', (s) => s?.sampling?.keepDefectImages],
    ['uncertain band', (s) => s?.sampling?.uncertainBand],
    ['keep every Nth good', (s) => s?.sampling?.keepGoodEvery],
  ];
}

const show = (v: unknown) => (v === undefined ? '' : typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v));

export function EdgeConfig({ api, edge, session, labels }: { api: Api; edge: EdgeView; session: SessionInfo; labels: string[] }) {
  const [eff, setEff] = useState<Effective | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [applied, setApplied] = useState(0);
  const c = edge.convergence;
  // While the edge has not reported the desired config version, each report of it (the event
  // stream) re-reads what it runs.
  const pending = eff !== null && eff.configVersion !== null && eff.reportedConfigVersion !== eff.configVersion ? edge.lastSeen : 0;
  useEffect(() => {
    let gone = false;
    api.get<Effective>(`/api/edges/${encodeURIComponent(edge.id)}/effective-config`).then(
      (r) => !gone && (setEff(r), setError(null)),
      (err: Error) => !gone && setError(err instanceof ApiError && err.status === 404 ? 'No configuration for this edge yet.' : err.message),
    );
    return () => {
      gone = true;
    };
    // Re-read when the edge's convergence moves (it reported a config version) or after an apply.
  }, [api, edge.id, c?.converged, c?.reason, applied, pending]);
  const canWrite = session.permissions.includes('config:write');
  return (
    <section class="edge-config">
      <h2>Configuration</h2>
      {error && <p class="muted">{error}</p>}
      {eff && (
        <>
          <p class="muted config-version" data-testid="config-version">
            Desired config version {eff.configVersion ?? '–'} · the edge reports {eff.reportedConfigVersion ?? '–'}
            {eff.configVersion !== null && eff.reportedConfigVersion === eff.configVersion ? ' (applied)' : eff.configVersion !== null ? ' (not yet applied)' : ''}
          </p>
          <table class="layers">
            <thead>
              <tr>
                <th>Setting</th>
                <th>Fleet</th>
                <th>Line {eff.line ?? ''}</th>
                <th>Edge</th>
                <th>Effective</th>
                <th>From</th>
              </tr>
            </thead>
            <tbody>
              {rows(eff).map(([title, read]) => {
                const from = [...LAYERS].reverse().find((l) => read(eff.layers[l]) !== undefined);
                const value = read(eff.config);
                return (
                  <tr key={title} data-setting={title}>
                    <td>{title}</td>
                    {LAYERS.map((l) => (
                      <td key={l} class={`num ${from === l ? 'wins' : read(eff.layers[l]) !== undefined ? 'overridden' : ''}`}>
                        {show(read(eff.layers[l]))}
                      </td>
                    ))}
                    <td class="num effective">{value === undefined ? <span class="muted">default</span> : show(value)}</td>
                    <td class="from">{from ?? "the edge's own (model package or local config)"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
      {canWrite && <ThresholdEditor api={api} edgeId={edge.id} labels={labels} onApplied={() => setApplied((n) => n + 1)} />}
    </section>
  );
}

/** The form's inputs checked; a one-line reason when they are not valid. */
function check(label: string, text: string): { label: string; threshold: number } | string {
  const l = label.trim();
  if (l.length === 0) return 'Name the label whose threshold you edit.';
  if (l.length > 128) return 'A label has at most 128 characters.';
  const t = Number(text);
  if (text.trim() === '' || !Number.isFinite(t)) return 'The threshold must be a number.';
  if (t < 0 || t > 1) return 'The threshold must be between 0 and 1 (scores are in [0, 1]).';
  return { label: l, threshold: t };
}

function ThresholdEditor({ api, edgeId, labels, onApplied }: { api: Api; edgeId: string; labels: string[]; onApplied: () => void }) {
  const [label, setLabel] = useState(labels[0] ?? '');
  const [text, setText] = useState('');
  const [preview, setPreview] = useState<Preview | null>(null);
  const [busy, setBusy] = useState(false);
  const [message, setMessage] = useState<{ error: boolean; text: string } | null>(null);
  const input = check(label, text);
  const invalid = typeof input === 'string' && (label !== '' || text !== '') ? input : null;
  const previewed = preview !== null && typeof input !== 'string' && preview.label === input.label && preview.threshold === input.threshold;
  const path = `/api/edges/${encodeURIComponent(edgeId)}`;

  const run = async (what: () => Promise<void>) => {
    setBusy(true);
    setMessage(null);
    try {
      await what();
    } catch (err) {
      setMessage({ error: true, text: (err as Error).message });
    } finally {
      setBusy(false);
    }
  };
  const doPreview = () =>
    run(async () => {
      if (typeof input === 'string') return;
      setPreview(await api.post<Preview>(`${path}/threshold-preview`, input));
    });
  const apply = () =>
    run(async () => {
      if (typeof input === 'string') return;
      // The edge's own layer, with this one label changed; its other settings stay.
      const layer = (await api.get<{ settings: Settings }>(`${path}/config`)).settings;
      const settings: Settings = { ...layer, thresholds: { ...layer.thresholds, perLabel: { ...layer.thresholds?.perLabel, [input.label]: input.threshold } } };
      const put = await api.send<{ version: number; republished: string[] }>('PUT', `${path}/config`, settings);
      setMessage({ error: false, text: `Applied: ${input.label} ≥ ${input.threshold} in the edge's layer (version ${put.version}).` });
      setPreview(null);
      onApplied();
    });

  return (
    <form
      class="threshold-editor"
      onSubmit={(e) => {
        e.preventDefault();
        void doPreview();
      }}
    >
      <h3>Per-label threshold</h3>
      <label>
        Label
        <input name="label" list="edge-labels" value={label} maxLength={128} onInput={(e) => setLabel((e.target as HTMLInputElement).value)} />
        <datalist id="edge-labels">
          {labels.map((l) => (
            <option key={l} value={l} />
          ))}
        </datalist>
      </label>
      <label>
        Threshold
        <input name="threshold" inputMode="decimal" placeholder="0 – 1" value={text} onInput={(e) => setText((e.target as HTMLInputElement).value)} />
      </label>
      <button type="submit" disabled={busy || typeof input === 'string'}>
        Preview
      </button>
      <button type="button" disabled={busy || !previewed} onClick={() => void apply()}>
        Apply
      </button>
      {invalid && <p class="error field-error">{invalid}</p>}
      {preview && (
        <p class={`preview ${previewed ? '' : 'outdated'}`} data-testid="threshold-preview" data-changed={preview.changed} data-considered={preview.considered}>
          {preview.label} ≥ {num(preview.threshold, 3)} would have changed <strong>{preview.changed}</strong> of the last {preview.considered} verdicts ({preview.toDefect} ok → defect,{' '}
          {preview.toOk} defect → ok). Now: {preview.current === null ? "the model's own threshold" : num(preview.current, 3)}.
        </p>
      )}
      {message && <p class={message.error ? 'error' : 'applied'} data-testid="threshold-message">{message.text}</p>}
    </form>
  );
}
