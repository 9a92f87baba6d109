/**
 * A new rollout (`#/rollouts/new`, for `rollouts:write`): a registered version, a target and
 * stages with their gates, starting from defaults that are explained beside each field; starts
 * it with `POST /api/rollouts` and opens its live page.
 */
import { useEffect, useMemo, useState } from 'preact/hooks';
import type { Api } from './api.js';
import type { Fleet } from './live.js';
import type { RolloutView } from './rollout-live.js';
import { clock } from './format.js';

export type GateName = 'minFrames' | 'maxErrorRate' | 'maxP95LatencyMs' | 'minAgreement' | 'maxDefectRateChange' | 'goldenSet';
/** Gates that are on or off, without a number. */
const SWITCH_GATES: readonly GateName[] = ['goldenSet'];

interface GateDraft {
  on: boolean;
  value: string;
}
interface StageDraft {
  name: string;
  mode: 'shadow' | 'live';
  /** '': every target edge; otherwise a percentage. */
  percent: string;
  gates: Record<GateName, GateDraft>;
  soakSeconds: string;
  promotion: 'auto' | 'manual';
}

const gatesDraft = (on: Partial<Record<GateName, string>>): Record<GateName, GateDraft> => {
  const defaults: Record<GateName, string> = { minFrames: '200', maxErrorRate: '1', maxP95LatencyMs: '200', minAgreement: '95', maxDefectRateChange: '5', goldenSet: '' };
  return Object.fromEntries((Object.keys(defaults) as GateName[]).map((g) => [g, { on: on[g] !== undefined, value: on[g] ?? defaults[g] }])) as Record<GateName, GateDraft>;
};

/** Shadow on every target edge, then a live canary on 10 %, then the whole target. */
function defaultStages(): StageDraft[] {
  return [
    { name: 'shadow', mode: 'shadow', percent: '', gates: gatesDraft({ minFrames: '200', maxErrorRate: '1', minAgreement: '95' }), soakSeconds: '0', promotion: 'auto' },
    { name: 'canary', mode: 'live', percent: '10', gates: gatesDraft({ minFrames: '200', maxErrorRate: '1', maxDefectRateChange: '5' }), soakSeconds: '600', promotion: 'manual' },
    { name: 'full', mode: 'live', percent: '', gates: gatesDraft({ maxErrorRate: '1' }), soakSeconds: '0', promotion: 'auto' },
  ];
}

const GATE_HELP: Record<GateName, { label: string; unit: string; help: string }> = {
  minFrames: { label: 'Frames before judging', unit: 'frames', help: 'No gate is judged until the stage has seen this many frames with the new version (default 200).' },
  maxErrorRate: { label: 'Highest error rate', unit: '%', help: 'Frames the new version failed on, out of all it got. Above the limit the stage fails (default 1 %).' },
  maxP95LatencyMs: { label: 'Highest p95 latency', unit: 'ms', help: '95 % of frames must be inspected within this time, from the edges’ telemetry (default 200 ms).' },
  minAgreement: { label: 'Lowest agreement', unit: '%', help: 'Shadow only: frames where the new version gives the same verdict as the current one (default 95 %).' },
  maxDefectRateChange: {
    label: 'Largest defect-rate change',
    unit: 'points',
    help: 'How far the share of defect verdicts may move from the current model’s, in percentage points (default 5). Skipped on edges with no history.',
  },
  goldenSet: {
    label: 'Golden set passed on every edge',
    unit: '',
    help: 'Every edge runs the version’s golden set (its labelled reference images) when it gets it; the stage waits for a pass from each and fails on a mismatch, or when the version has no golden set.',
  },
};

interface ModelList {
  models: { name: string; latestVersion: string }[];
}
interface VersionList {
  versions: { version: string; createdAt: number; uploadedBy: string | null }[];
}

export function CreateRollout({ api, fleet }: { api: Api; fleet: Fleet }) {
  const [models, setModels] = useState<ModelList['models'] | null>(null);
  const [model, setModel] = useState('');
  const [versions, setVersions] = useState<VersionList['versions']>([]);
  const [version, setVersion] = useState('');
  const lines = useMemo(() => [...new Set([...(fleet.edges?.values() ?? [])].map((e) => e.line).filter((l): l is string => !!l))].sort(), [fleet.edges]);
  const [targetKind, setTargetKind] = useState<'line' | 'edges' | 'all'>('line');
  const [line, setLine] = useState('');
  const [edges, setEdges] = useState<string[]>([]);
  const [stages, setStages] = useState<StageDraft[]>(defaultStages);
  const [onFailure, setOnFailure] = useState<'rollback' | 'pause'>('rollback');
  const [silence, setSilence] = useState('300');
  const [minSample, setMinSample] = useState('1');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    api.get<ModelList>('/api/models').then(
      (m) => {
        setModels(m.models);
        if (m.models[0]) setModel(m.models[0].name);
      },
      (err: Error) => setError(err.message),
    );
  }, [api]);
  useEffect(() => {
    if (!model) return;
    api.get<VersionList>(`/api/models/${encodeURIComponent(model)}/versions`).then(
      (v) => {
        const sorted = [...v.versions].sort((a, b) => b.createdAt - a.createdAt);
        setVersions(sorted);
        setVersion(sorted[0]?.version ?? '');
      },
      (err: Error) => setError(err.message),
    );
  }, [api, model]);
  useEffect(() => {
    if (!line && lines[0]) setLine(lines[0]);
  }, [lines, line]);

  const setStage = (i: number, patch: Partial<StageDraft>) => setStages((all) => all.map((s, j) => (j === i ? { ...s, ...patch } : s)));
  const setGate = (i: number, g: GateName, patch: Partial<GateDraft>) => setStages((all) => all.map((s, j) => (j === i ? { ...s, gates: { ...s.gates, [g]: { ...s.gates[g], ...patch } } } : s)));

  const submit = (ev: Event) => {
    ev.preventDefault();
    setError(null);
    const body = {
      model,
      version,
      target: targetKind === 'line' ? { lines: [line] } : targetKind === 'edges' ? { edges } : { all: true as const },
      stages: stages.map((s) => {
        const gates: Partial<Record<GateName, number | boolean>> = {};
        for (const g of Object.keys(s.gates) as GateName[]) {
          const d = s.gates[g];
          if (!d.on || (g === 'minAgreement' && s.mode === 'live')) continue;
          if (SWITCH_GATES.includes(g)) {
            gates[g] = true;
            continue;
          }
          const v = Number(d.value);
          gates[g] = g === 'maxErrorRate' || g === 'minAgreement' || g === 'maxDefectRateChange' ? v / 100 : v;
        }
        return {
          name: s.name,
          mode: s.mode,
          ...(s.percent.trim() !== '' && Number(s.percent) < 100 && { select: { percent: Number(s.percent) } }),
          gates,
          soakSeconds: Number(s.soakSeconds || 0),
          promotion: s.promotion,
        };
      }),
      onFailure,
      silenceTimeoutSeconds: Number(silence),
      minSample: Number(minSample),
    };
    setBusy(true);
    api.post<RolloutView>('/api/rollouts', body).then(
      (r) => {
        location.hash = `#/rollouts/${encodeURIComponent(r.id)}`;
      },
      (err: Error) => {
        setBusy(false);
        setError(err.message);
      },
    );
  };

  const allEdges = [...(fleet.edges?.values() ?? [])].map((e) => e.id).sort();
  return (
    <form class="rollout-new" onSubmit={submit}>
      <p class="crumbs">
        <a href="#/rollouts">Rollouts</a> › new
      </p>
      <h1>New rollout</h1>
      <fieldset class="ro-panel">
        <legend>What</legend>
        <label>
          Model
          <select value={model} onChange={(e) => setModel((e.target as HTMLSelectElement).value)} disabled={!models || models.length === 0}>
            {(models ?? []).map((m) => (
              <option key={m.name} value={m.name}>
                {m.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          Version
          <select value={version} onChange={(e) => setVersion((e.target as HTMLSelectElement).value)}>
            {versions.map((v) => (
              <option key={v.version} value={v.version}>
                {v.version} — registered {clock(v.createdAt)}
              </option>
            ))}
          </select>
        </label>
        {models?.length === 0 && <p class="muted">No model in the registry yet: register one first.</p>}
      </fieldset>

      <fieldset class="ro-panel" data-part="target">
        <legend>Where</legend>
        <div class="ro-choices">
          <label>
            <input type="radio" name="target" checked={targetKind === 'line'} onChange={() => setTargetKind('line')} /> One line
          </label>
          <label>
            <input type="radio" name="target" checked={targetKind === 'edges'} onChange={() => setTargetKind('edges')} /> Chosen edges
          </label>
          <label>
            <input type="radio" name="target" checked={targetKind === 'all'} onChange={() => setTargetKind('all')} /> Every edge
          </label>
        </div>
        {targetKind === 'line' && (
          <label>
            Line
            <select value={line} onChange={(e) => setLine((e.target as HTMLSelectElement).value)}>
              {lines.map((l) => (
                <option key={l} value={l}>
                  {l}
                </option>
              ))}
            </select>
          </label>
        )}
        {targetKind === 'edges' && (
          <div class="ro-choices">
            {allEdges.map((id) => (
              <label key={id}>
                <input type="checkbox" checked={edges.includes(id)} onChange={(e) => setEdges((all) => ((e.target as HTMLInputElement).checked ? [...all, id] : all.filter((x) => x !== id)))} /> {id}
              </label>
            ))}
          </div>
        )}
        <p class="help">Edges that join the target later (a new edge on the line) join the stage the rollout is in.</p>
      </fieldset>

      {stages.map((s, i) => (
        <fieldset class="ro-panel ro-stage-form" key={i} data-stage-form={i}>
          <legend>
            Stage {i + 1}
            {stages.length > 1 && (
              <button type="button" class="link" onClick={() => setStages((all) => all.filter((_, j) => j !== i))}>
                Remove stage {i + 1}
              </button>
            )}
          </legend>
          <div class="ro-grid">
            <label>
              Name
              <input value={s.name} onInput={(e) => setStage(i, { name: (e.target as HTMLInputElement).value })} />
            </label>
            <label>
              Mode
              <select value={s.mode} onChange={(e) => setStage(i, { mode: (e.target as HTMLSelectElement).value as 'shadow' | 'live' })}>
                <option value="shadow">shadow</option>
                <option value="live">live</option>
              </select>
              <span class="help">
                {s.mode === 'shadow'
                  ? 'Shadow: the new version runs beside the current one on the same frames; only the current one decides. Safe: it measures agreement without touching a verdict.'
                  : 'Live: the new version decides the verdicts on these edges; the old one stays loaded for a fast roll back.'}
              </span>
            </label>
            <label>
              Share of the target (%)
              <input inputMode="decimal" value={s.percent} placeholder="100" onInput={(e) => setStage(i, { percent: (e.target as HTMLInputElement).value })} />
              <span class="help">Empty or 100: every target edge. 10 picks at least one edge, the same ones on every stage (10 % then 50 % are nested).</span>
            </label>
            <label>
              Soak (seconds)
              <input inputMode="numeric" value={s.soakSeconds} onInput={(e) => setStage(i, { soakSeconds: (e.target as HTMLInputElement).value })} />
              <span class="help">Once every gate passes, the stage keeps watching this long before it counts as passed (default 0).</span>
            </label>
            <label>
              After it passes
              <select value={s.promotion} onChange={(e) => setStage(i, { promotion: (e.target as HTMLSelectElement).value as 'auto' | 'manual' })}>
                <option value="auto">go on automatically</option>
                <option value="manual">wait for a person to promote</option>
              </select>
              <span class="help">Default: automatically. "Wait" holds the stage (still watched) until someone presses Promote.</span>
            </label>
          </div>
          <table class="ro-gate-form">
            <tbody>
              {(Object.keys(GATE_HELP) as GateName[])
                .filter((g) => g !== 'minAgreement' || s.mode === 'shadow')
                .map((g) => (
                  <tr key={g} data-gate={g}>
                    <td>
                      <label>
                        <input type="checkbox" checked={s.gates[g].on} onChange={(e) => setGate(i, g, { on: (e.target as HTMLInputElement).checked })} /> {GATE_HELP[g].label}
                      </label>
                    </td>
                    <td>
                      {!SWITCH_GATES.includes(g) && (
                      <input
                        class="short"
                        aria-label={`${GATE_HELP[g].label}, stage ${i + 1}`}
                        inputMode="decimal"
                        value={s.gates[g].value}
                        disabled={!s.gates[g].on}
                        onInput={(e) => setGate(i, g, { value: (e.target as HTMLInputElement).value })}
                      />
                      )}{' '}
                      {GATE_HELP[g].unit}
                    </td>
                    <td class="help">{GATE_HELP[g].help}</td>
                  </tr>
                ))}
            </tbody>
          </table>
        </fieldset>
      ))}
      <p>
        <button
          type="button"
          class="secondary"
          onClick={() => setStages((all) => [...all, { name: `stage-${all.length + 1}`, mode: 'live', percent: '', gates: gatesDraft({ maxErrorRate: '1' }), soakSeconds: '0', promotion: 'auto' }])}
        >
          Add a stage
        </button>
      </p>

      <fieldset class="ro-panel">
        <legend>When something goes wrong</legend>
        <div class="ro-grid">
          <label>
            A failed stage
            <select value={onFailure} onChange={(e) => setOnFailure((e.target as HTMLSelectElement).value as 'rollback' | 'pause')}>
              <option value="rollback">rolls back automatically</option>
              <option value="pause">pauses for a person</option>
            </select>
            <span class="help">Default: roll back — every edge returns to the version it ran before. Pause leaves edges as they are.</span>
          </label>
          <label>
            Silence limit (seconds)
            <input inputMode="numeric" value={silence} onInput={(e) => setSilence((e.target as HTMLInputElement).value)} />
            <span class="help">An edge not heard from, or not running the new version, this long fails the stage (default 300).</span>
          </label>
          <label>
            Edges that must report
            <input inputMode="numeric" value={minSample} onInput={(e) => setMinSample((e.target as HTMLInputElement).value)} />
            <span class="help">Gates are judged once this many edges of a stage run the new version (default 1, at most the stage's size).</span>
          </label>
        </div>
      </fieldset>
      {error && <p class="error">{error}</p>}
      <p class="ro-submit">
        <button type="submit" disabled={busy || !version}>
          {busy ? 'Starting…' : 'Start rollout'}
        </button>{' '}
        <a href="#/rollouts">Cancel</a>
      </p>
    </form>
  );
}
