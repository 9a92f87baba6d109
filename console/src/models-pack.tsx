/**
 * The pack wizard: a bare ONNX file uploaded (`POST /api/models/propose`), the fleet's proposal
 * and the graph's inputs and outputs shown, the declarations edited, a smoke test on a sample
 * image, then registration (refused without a publisher signature unless the fleet allows
 * fleet-packed models).
 */
import { useState } from 'preact/hooks';
import type { Api } from './api.js';
import { bytes, num } from './format.js';
import { enc, Problem, signatureText, type Json, type VersionView } from './models-shared.js';

interface Proposal { draft: string; file: string; sha256: string; size: number; convention: string; inputs: Json[]; outputs: Json[]; proposedManifest: Json | null; proposalError?: string }

/** The editable declarations of the wizard, as form strings. */
interface Form { name: string; version: string; task: string; labels: string; defectLabels: string; width: string; height: string; color: string; resize: string; scale: string; mean: string; std: string; threshold: string; normMin: string; normMax: string; normThreshold: string }

function formFrom(p: Proposal): Form {
  const m = p.proposedManifest;
  const norm = m?.outputs?.anomaly?.normalization;
  // Without a proposal, what the graph's first input says for sure: NCHW [1, C, H, W] of fixed size.
  const shape = p.inputs[0]?.shape as unknown[] | undefined;
  const fixed = !m && shape?.length === 4 && shape.every((d) => typeof d === 'number') && (shape[1] === 1 || shape[1] === 3) ? (shape as number[]) : null;
  return {
    name: m?.name ?? p.file.replace(/\.onnx$/i, '').replace(/[^A-Za-z0-9._-]/g, '-'),
    version: m?.version ?? '1.0.0',
    task: m?.task ?? '',
    labels: (m?.labels ?? []).join(', '),
    defectLabels: (m?.defectLabels ?? []).join(', '),
    width: String(m?.input?.width ?? fixed?.[3] ?? ''),
    height: String(m?.input?.height ?? fixed?.[2] ?? ''),
    color: m?.input?.color ?? (fixed?.[1] === 1 ? 'gray' : ''),
    resize: m?.input?.resize ?? '',
    scale: m?.input?.scale !== undefined ? String(m.input.scale) : '',
    mean: (m?.input?.mean ?? []).join(', '),
    std: (m?.input?.std ?? []).join(', '),
    threshold: m?.thresholds?.default !== undefined ? String(m.thresholds.default) : '',
    normMin: norm ? String(norm.min) : '',
    normMax: norm ? String(norm.max) : '',
    normThreshold: norm ? String(norm.threshold) : '',
  };
}

/** The form as the API's declarations: only what is filled in. */
function declarationsOf(f: Form): Json {
  const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
  const nums = (s: string) => list(s).map(Number);
  const d: Json = {};
  if (f.name) d.name = f.name;
  if (f.version) d.version = f.version;
  if (f.task) d.task = f.task;
  if (list(f.labels).length) d.labels = list(f.labels);
  if (list(f.defectLabels).length) d.defectLabels = list(f.defectLabels);
  if (f.width && f.height) d.size = { width: Number(f.width), height: Number(f.height) };
  if (f.color) d.color = f.color;
  if (f.resize) d.resize = f.resize;
  if (f.scale) d.scale = Number(f.scale);
  if (list(f.mean).length) d.mean = nums(f.mean);
  if (list(f.std).length) d.std = nums(f.std);
  if (f.threshold) d.threshold = Number(f.threshold);
  if (f.normMin && f.normMax && f.normThreshold) d.normalization = { min: Number(f.normMin), max: Number(f.normMax), threshold: Number(f.normThreshold) };
  return d;
}

function readBase64(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
    r.onerror = () => reject(new Error(`cannot read ${file.name}`));
    r.readAsDataURL(file);
  });
}

export function PackWizard({ api, onAdded }: { api: Api; onAdded: () => void }) {
  const [proposal, setProposal] = useState<Proposal | null>(null);
  const [form, setForm] = useState<Form | null>(null);
  const [sample, setSample] = useState<File | null>(null);
  const [signature, setSignature] = useState<File | null>(null);
  const [smoke, setSmoke] = useState<Json | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<VersionView | null>(null);
  const run = async (what: string, fn: () => Promise<void>) => {
    setBusy(what);
    setError(null);
    try {
      await fn();
    } catch (err) {
      setError((err as Error).message);
    } finally {
      setBusy(null);
    }
  };
  const propose = (file: File) =>
    run('Reading the model…', async () => {
      setProposal(null);
      setSmoke(null);
      setDone(null);
      const p = await api.upload<Proposal>(`/api/models/propose?file=${enc(file.name)}`, new Blob([file], { type: 'application/octet-stream' }));
      setProposal(p);
      setForm(formFrom(p));
    });
  const field = (key: keyof Form, label: string, opts: { options?: string[]; wide?: boolean } = {}) => (
    <label class={opts.wide ? 'wide' : ''}>
      {label}
      {opts.options ? (
        <select name={key} value={form![key]} onChange={(e) => (setForm({ ...form!, [key]: (e.target as HTMLSelectElement).value }), setSmoke(null))}>
          <option value="">(as the model says)</option>
          {opts.options.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      ) : (
        <input name={key} value={form![key]} onInput={(e) => (setForm({ ...form!, [key]: (e.target as HTMLInputElement).value }), setSmoke(null))} />
      )}
    </label>
  );
  return (
    <section class="panel wizard">
      <h2>Pack an ONNX file</h2>
      <ol class="steps">
        <li class={proposal || done ? 'done' : 'now'}>1. Upload the ONNX file</li>
        <li class={smoke || done ? 'done' : proposal ? 'now' : ''}>2. Check the proposal, test it on a sample image</li>
        <li class={done ? 'done' : smoke ? 'now' : ''}>3. Register</li>
      </ol>
      <label class="onnx">
        ONNX file <input type="file" name="onnx" accept=".onnx" onChange={(e) => {
          const f = (e.target as HTMLInputElement).files?.[0];
          if (f) void propose(f);
        }} />
      </label>
      {proposal && form && (
        <div class="proposal" data-draft={proposal.draft}>
          <p class="muted">
            {proposal.file}: {bytes(proposal.size)}, convention <strong>{proposal.convention}</strong>, sha256 {proposal.sha256.slice(0, 12)}…
          </p>
          <table class="tensors">
            <thead>
              <tr>
                <th>Graph</th>
                <th>Name</th>
                <th>Type</th>
                <th>Shape</th>
              </tr>
            </thead>
            <tbody>
              {[...proposal.inputs.map((t) => ['input', t] as const), ...proposal.outputs.map((t) => ['output', t] as const)].map(([kind, t]) => (
                <tr key={`${kind}-${t.name}`}>
                  <td>{kind}</td>
                  <td>{t.name}</td>
                  <td>{t.dtype}</td>
                  <td>[{(t.shape as unknown[]).map((d) => (d === null ? '?' : String(d))).join(', ')}]</td>
                </tr>
              ))}
            </tbody>
          </table>
          {proposal.proposalError && <p class="warn">The fleet cannot propose everything: {proposal.proposalError}. Fill in what is missing below.</p>}
          <div class="grid">
            {field('name', 'Name')}
            {field('version', 'Version')}
            {field('task', 'Task', { options: ['classification', 'anomaly', 'detection'] })}
            {field('labels', 'Labels (comma-separated)', { wide: true })}
            {field('defectLabels', 'Defect labels')}
            {field('width', 'Input width')}
            {field('height', 'Input height')}
            {field('color', 'Colour', { options: ['rgb', 'bgr', 'gray'] })}
            {field('resize', 'Resize', { options: ['stretch', 'letterbox', 'center-crop'] })}
            {field('scale', 'Scale')}
            {field('mean', 'Mean')}
            {field('std', 'Std')}
            {field('threshold', 'Default threshold')}
            {field('normMin', 'Anomaly score min')}
            {field('normMax', 'Anomaly score max')}
            {field('normThreshold', 'Anomaly raw threshold')}
          </div>
          <div class="row">
            <label>
              Sample image <input type="file" name="sample" accept="image/*" onChange={(e) => (setSample((e.target as HTMLInputElement).files?.[0] ?? null), setSmoke(null))} />
            </label>
            <button
              type="button"
              disabled={!sample || busy !== null}
              onClick={() =>
                run('Testing…', async () => {
                  setSmoke(await api.post<Json>(`/api/models/propose/${proposal.draft}/smoke-test`, { declarations: declarationsOf(form), image: await readBase64(sample!) }));
                })
              }
            >
              Smoke test
            </button>
          </div>
          {smoke && (
            <dl class="facts smoke" data-testid="smoke-result">
              <dt>Verdict</dt>
              <dd class={`verdict ${smoke.inspection.verdict}`}>{smoke.inspection.verdict}</dd>
              <dt>Label</dt>
              <dd>{smoke.inspection.label}</dd>
              <dt>Score</dt>
              <dd>
                {num(smoke.inspection.score, 3)} (threshold {num(smoke.inspection.threshold, 3)})
              </dd>
              <dt>Time</dt>
              <dd>{num(smoke.inspection.timings?.totalMs)} ms</dd>
              <dt>Input</dt>
              <dd>
                {smoke.manifest.input.width}×{smoke.manifest.input.height} {smoke.manifest.input.color}, {smoke.manifest.input.resize}
              </dd>
            </dl>
          )}
          <div class="row">
            <label>
              Publisher signature.json (optional) <input type="file" name="signature" accept=".json" onChange={(e) => setSignature((e.target as HTMLInputElement).files?.[0] ?? null)} />
            </label>
            <button
              type="button"
              disabled={!smoke || busy !== null}
              onClick={() =>
                run('Registering…', async () => {
                  const body: Json = { declarations: declarationsOf(form) };
                  if (signature) body.signature = JSON.parse(await signature.text());
                  const v = await api.post<VersionView>(`/api/models/propose/${proposal.draft}/register`, body);
                  setDone(v);
                  setProposal(null);
                  setSmoke(null);
                  onAdded();
                })
              }
            >
              Register
            </button>
          </div>
        </div>
      )}
      {busy && <p class="muted">{busy}</p>}
      <Problem text={error} />
      {done && (
        <p class="ok">
          Registered <a href={`#/models/${enc(done.name)}/${enc(done.version)}`}>{`${done.name}@${done.version}`}</a> ({signatureText(done)}).
        </p>
      )}
    </section>
  );
}
